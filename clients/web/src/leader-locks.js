/**
 * Leader election with the Web Locks API: the tab that holds the exclusive lock leads;
 * the others wait in the lock's queue, so a leader that closes hands over at once.
 *
 * A lock alone is not enough: a frozen tab (a background tab the browser suspended)
 * keeps its lock while its timers stand still, and nobody polls. So the leader also
 * beats into the shared record, and a follower that sees no beat for STALE_AFTER_MS
 * steals the lock. A hidden leader is likewise taken over by a visible tab.
 *
 * @module leader-locks
 */
import {
  BEAT_MS,
  CHECK_MS,
  STALE_AFTER_MS,
  afterQueuedTasks,
  leaderRecord,
  listenerBag,
  pageVisible,
  stallDetector,
} from "./leader.js";

/**
 * @param {import("./leader.js").ElectorOptions} options
 * @returns {import("./leader.js").Elector}
 */
export function createLockElector(options) {
  const { name, tabId, onLead, onFollow } = options;
  const beatMs = options.beatMs ?? BEAT_MS;
  const staleAfterMs = options.staleAfterMs ?? STALE_AFTER_MS;
  const checkMs = options.checkMs ?? CHECK_MS;
  const lockName = `${name}:lock`;
  const record = leaderRecord(name);
  const listeners = listenerBag();

  let stopped = true;
  let frozen = false;
  let leading = false;
  let epoch = 0;
  /** Id of the newest lock request; answers of older ones are ignored. */
  let requestId = 0;
  /** @type {AbortController | null} */
  let queued = null;
  /** @type {(() => void) | null} */
  let release = null;
  /** @type {ReturnType<typeof setInterval> | undefined} */
  let beatTimer;
  /** @type {ReturnType<typeof setInterval> | undefined} */
  let checkTimer;
  /** The browser's id of this tab as a lock holder, learnt once it holds the lock. */
  /** @type {string | undefined} */
  let holderId;
  const checks = stallDetector(checkMs);

  /** @param {boolean} steal */
  function request(steal) {
    queued?.abort();
    queued = null;
    const id = ++requestId;
    /** @type {LockOptions} */
    let lockOptions;
    if (steal) {
      lockOptions = { steal: true };
    } else {
      queued = new AbortController();
      lockOptions = { signal: queued.signal };
    }
    navigator.locks
      .request(lockName, lockOptions, () => hold(id, steal))
      .then(
        () => settled(id),
        () => settled(id),
      );
  }

  /** The lock is ours: lead until `release` is called or the lock is stolen. */
  function hold(/** @type {number} */ id, /** @type {boolean} */ steal) {
    if (stopped || frozen || id !== requestId) return undefined;
    queued = null;
    const previous = record.read();
    // A takeover replaces a leader that did not hand over (frozen, hidden, crashed).
    const takeover = steal || Boolean(previous && !previous.released);
    epoch = record.claim(tabId);
    leading = true;
    beatTimer = setInterval(beat, beatMs);
    holderId = undefined;
    const claimed = epoch;
    navigator.locks.query().then(
      ({ held = [] }) => {
        if (leading && epoch === claimed)
          holderId = held.find((lock) => lock.name === lockName)?.clientId;
      },
      () => undefined,
    );
    const latencyMs = previous ? Math.max(0, Date.now() - previous.beatAt) : 0;
    onLead(epoch, { takeover, latencyMs, strategy: "web-locks" });
    return new Promise((resolve) => {
      release = () => resolve(undefined);
    });
  }

  /** The request ended: we released, it was aborted while queued, or stolen. */
  function settled(/** @type {number} */ id) {
    if (id !== requestId) return;
    // Still leading here means the lock was stolen from under us.
    if (leading) stepDown("stolen");
    if (!stopped && !frozen) request(false);
  }

  function stepDown(/** @type {string} */ reason) {
    if (!leading) return;
    leading = false;
    clearInterval(beatTimer);
    record.release(tabId, epoch);
    const done = release;
    release = null;
    onFollow(reason);
    done?.();
  }

  function beat() {
    if (!leading) return;
    if (!record.names(tabId, epoch)) {
      // Someone else claimed the record (a steal whose rejection we have not seen yet).
      stepDown("replaced");
      return;
    }
    record.beat(tabId, epoch);
  }

  function check() {
    // After a stall the record may not show the beats the leader did make.
    if (checks.stalled() || stopped || frozen || leading) return;
    const current = record.read();
    if (!current) return;
    // A released record normally means the lock queue is handing over right now; if
    // nobody claimed it for a while, the releasing tab froze before letting go.
    const silent = Date.now() - current.beatAt > staleAfterMs;
    if (current.released && !silent) return;
    const hiddenLeader = current.visible === false && pageVisible();
    if (silent || hiddenLeader) request(true);
  }

  return {
    strategy: "web-locks",
    start() {
      if (!stopped) return;
      stopped = false;
      listeners.on(document, "visibilitychange", () => (leading ? beat() : check()));
      // The browser is about to freeze this tab: hand over now instead of making the
      // others wait for the silence to count as stale.
      listeners.on(document, "freeze", () => {
        frozen = true;
        queued?.abort();
        requestId++;
        stepDown("frozen");
      });
      listeners.on(document, "resume", () => {
        frozen = false;
        if (!stopped) request(false);
      });
      listeners.on(window, "pagehide", () => this.stop());
      checkTimer = setInterval(check, checkMs + Math.random() * 100);
      request(false);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      requestId++;
      queued?.abort();
      queued = null;
      clearInterval(checkTimer);
      listeners.removeAll();
      stepDown("stopped");
    },
    isLeader: () => leading,
    stillLeads: () => leading && record.names(tabId, epoch),
    async confirmLeads() {
      await afterQueuedTasks();
      if (!leading || !record.names(tabId, epoch)) return false;
      if (holderId === undefined) return true;
      // The browser's lock manager is the one authority no stall can make stale: a
      // steal completed there while this tab was blocked shows here at once.
      try {
        const { held = [] } = await navigator.locks.query();
        const holder = held.find((lock) => lock.name === lockName);
        if (holder?.clientId === holderId) return leading;
        stepDown("replaced"); // the steal's own notice is still on its way
        return false;
      } catch {
        return leading;
      }
    },
    leader: () => record.read(),
  };
}
