/**
 * The browser client of the guest check-in realtime layer.
 *
 * `createGuestCheckInRealtime({getToken, propertyId, onChange})` keeps a live list of
 * guest check-ins in this tab. Across the tabs of one browser profile, one leader tab
 * long-polls the fanout and relays every answer to the others; the others never poll.
 * Each tab filters the org's events to its own property, so tabs on different
 * properties still share the one poll.
 *
 * @module index
 */
import { openChannel } from "./channel.js";
import { createLeaderElector } from "./leader.js";
import { createPoller } from "./poller.js";
import { createStore } from "./store.js";
import { createTelemetry, randomId } from "./telemetry.js";

export { hasWebLocks } from "./leader.js";

/**
 * @typedef {{
 *   getToken: (options: {refresh: boolean}) => Promise<string | null> | string | null,
 *   propertyId?: number | null,
 *   onChange?: (items: import("./store.js").GuestCheckIn[], change: import("./store.js").Change) => void,
 *   onStatus?: (status: RealtimeStatus) => void,
 *   onSignedOut?: (reason: "logout" | "unauthorized") => void,
 *   baseUrl?: string,
 *   name?: string,
 *   telemetrySampleRate?: number,
 *   forceLease?: boolean,
 *   forceStorageChannel?: boolean,
 * }} RealtimeOptions
 * @typedef {{
 *   tabId: string, role: "leader" | "follower" | "stopped",
 *   strategy: string, channel: string, connection: string,
 *   leaderTabId: string | null, epoch: number, position: number, polls: number,
 *   lastEvent: {type: string, seq: number, at: number} | null,
 *   signedOutAt: number | null, pollAbortedAt: number | null, takeovers: number,
 *   telemetrySampled: boolean,
 * }} RealtimeStatus
 */

/**
 * Start following the guest check-ins of the org the token belongs to.
 * @param {RealtimeOptions} options
 */
export function createGuestCheckInRealtime(options) {
  const baseUrl = options.baseUrl ?? "";
  const name = options.name ?? "guest-checkin-realtime";
  const tabId = randomId();
  const cleanups = /** @type {Array<() => void>} */ ([]);
  let started = false;
  let stopped = false;
  let epoch = 0;
  let takeovers = 0;
  /** @type {number | null} */
  let signedOutAt = null;
  /** @type {number | null} */
  let pollAbortedAt = null;
  /** @type {RealtimeStatus["lastEvent"]} */
  let lastEvent = null;

  const getToken = async (/** @type {{refresh: boolean}} */ how) =>
    stopped ? null : options.getToken(how);
  const telemetry = createTelemetry({
    baseUrl,
    tabId,
    sampleRate: options.telemetrySampleRate ?? 0.02,
    getToken: () => getToken({ refresh: false }),
  });
  const channel = openChannel(name, tabId, {
    forceStorage: options.forceStorageChannel,
  });

  /** A fetch to the API with the current token; null once signed out. */
  async function authorizedFetch(/** @type {string} */ path) {
    const send = (/** @type {string} */ token) =>
      fetch(`${baseUrl}${path}`, {
        headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
        cache: "no-store",
      });
    const token = await getToken({ refresh: false });
    if (!token) return null;
    const response = await send(token);
    if (response.status !== 401) return response;
    // Once: the host page may have a fresher token; a second 401 ends the session.
    const fresh = await getToken({ refresh: true });
    const retried = fresh && fresh !== token ? await send(fresh) : response;
    if (retried.status === 401) signOut("unauthorized", false);
    return retried;
  }

  const store = createStore({
    baseUrl,
    propertyId: options.propertyId ?? null,
    authorizedFetch,
    onChange: (change) => {
      const event = change.event;
      if (event) lastEvent = { type: event.eventType, seq: event.seq, at: Date.now() };
      options.onChange?.(store.list(), change);
      report();
    },
  });

  const poller = createPoller({
    baseUrl,
    getToken,
    cursor: async () => {
      await store.ready();
      return store.position;
    },
    mayPoll: () => !stopped && elector.stillLeads(),
    confirmPoll: async () => !stopped && (await elector.confirmLeads()),
    onAnswer: (answer) => {
      // Relay first: the followers' refetch debounce starts as early as ours.
      channel.post({ type: "events", epoch, answer });
      if (answer.resync) telemetry.record("resync", {});
      store.apply(answer);
      report();
    },
    onState: () => report(),
    onUnauthorized: () => signOut("unauthorized", false),
    telemetry,
  });

  const elector = createLeaderElector({
    name,
    tabId,
    forceLease: options.forceLease,
    onLead: (newEpoch, info) => {
      epoch = newEpoch;
      if (info.takeover) takeovers += 1;
      telemetry.record(info.takeover ? "leader_takeover" : "leader_acquired", {
        strategy: info.strategy,
        latencyMs: info.latencyMs,
      });
      channel.post({
        type: "hello",
        epoch,
        visible: document.visibilityState !== "hidden",
      });
      poller.start();
      report();
    },
    onFollow: (reason) => {
      if (poller.running || poller.state === "polling") pollAbortedAt = Date.now();
      poller.stop("stopped");
      telemetry.record("leader_lost", { reason });
      // Replaced without handing over (frozen, stalled): the relays of the new leader
      // may have reached this tab before it noticed, or not at all; the snapshot
      // tells for sure.
      if (!stopped && reason !== "stopped") void store.load().catch(() => undefined);
      report();
    },
  });

  /** @param {import("./channel.js").RelayMessage} message */
  function onRelay(message) {
    if (stopped) return;
    if (message.type === "events") {
      // Applied even while this tab still believes it leads: a tab that thaws after a
      // freeze reads the new leader's relays before it notices it was replaced, and
      // every answer is true of the org's stream (the store drops what it has seen).
      store.apply(/** @type {any} */ (message.answer));
    } else if (message.type === "auth" && message.action === "logout") {
      signOut("logout", false);
    }
    report();
  }

  /**
   * Stop everything in this tab: the poll in flight is aborted at once, leadership is
   * given up (no follower takes over: they are signing out too), nothing is sent with
   * the old token afterwards.
   */
  function signOut(
    /** @type {"logout" | "unauthorized"} */ reason,
    /** @type {boolean} */ tellOthers,
  ) {
    if (stopped) return;
    if (tellOthers) {
      telemetry.record("logout_propagated", {});
      void telemetry.flush();
      channel.post({ type: "auth", action: "logout" });
    }
    signedOutAt = Date.now();
    stopped = true;
    if (poller.state === "polling") pollAbortedAt = Date.now();
    poller.stop("stopped");
    elector.stop();
    store.close();
    telemetry.close();
    removeListeners();
    report();
    options.onSignedOut?.(reason);
  }

  /** Every listener and the relay, undone (messages already posted still arrive). */
  function removeListeners() {
    while (cleanups.length) cleanups.pop()?.();
    channel.close();
  }

  function listen(
    /** @type {EventTarget} */ target,
    /** @type {string} */ type,
    /** @type {EventListener} */ fn,
  ) {
    target.addEventListener(type, fn);
    cleanups.push(() => target.removeEventListener(type, fn));
  }

  function status() {
    const leader = elector.leader();
    /** @type {RealtimeStatus} */
    const current = {
      tabId,
      role: stopped ? "stopped" : elector.isLeader() ? "leader" : "follower",
      strategy: elector.strategy,
      channel: channel.kind,
      connection: stopped
        ? "signed-out"
        : elector.isLeader()
          ? poller.state
          : typeof navigator !== "undefined" && navigator.onLine === false
            ? "offline"
            : "following",
      leaderTabId: leader && !leader.released ? leader.tabId : null,
      epoch,
      position: store.position,
      polls: poller.polls,
      lastEvent,
      signedOutAt,
      pollAbortedAt,
      takeovers,
      telemetrySampled: telemetry.sampled,
    };
    return current;
  }

  function report() {
    options.onStatus?.(status());
  }

  return {
    tabId,
    /** Load the snapshot and join the election. */
    async start() {
      if (started || stopped) return;
      started = true;
      // Listen before loading: every answer relayed from now on is either in the
      // snapshot or after it, never lost between the two.
      cleanups.push(channel.subscribe(onRelay));
      listen(window, "offline", () => {
        if (poller.state === "polling") pollAbortedAt = Date.now();
        poller.stop("offline");
        report();
      });
      listen(window, "online", () => {
        void store
          .load()
          .catch(() => undefined)
          .then(report);
        if (elector.isLeader()) poller.start();
        report();
      });
      listen(document, "visibilitychange", () => {
        if (document.visibilityState === "visible") poller.wake();
      });
      try {
        await store.load();
      } catch (error) {
        // The list could not load (API away): the poll starts from 0 and the next
        // `resync` or `online` loads it again.
        report();
      }
      if (!stopped) elector.start();
      report();
    },
    /** Log out in every tab of this browser profile. */
    logout: () => signOut("logout", true),
    /** Show another property (null: all the token allows). */
    setPropertyId: (/** @type {number | null} */ propertyId) =>
      store.setPropertyId(propertyId).then(report),
    /** Reload the snapshot. */
    refresh: () => store.load().then(report),
    items: () => store.list(),
    status,
    /** Leave quietly (page teardown, React unmount): other tabs carry on. */
    close() {
      if (stopped) return;
      void telemetry.flush();
      stopped = true;
      poller.stop("stopped");
      elector.stop();
      store.close();
      telemetry.close();
      removeListeners();
    },
  };
}
