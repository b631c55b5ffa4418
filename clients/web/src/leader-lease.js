/**
 * Leader election without Web Locks (plain http outside localhost, old browsers): a
 * lease in localStorage that the leader renews with heartbeats.
 *
 * localStorage has no compare-and-set, and writes reach other tabs' processes with a
 * small delay. So a tab claims an expired lease by writing it, waits SETTLE_MS for
 * competing writes to land, and leads only if the lease still names it. The epoch in
 * the lease is a fencing number: the leader re-reads the lease before every poll and
 * relay (`stillLeads`), so even a tab that missed its replacement stops at once.
 *
 * @module leader-lease
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

const SETTLE_MS = 150;

/**
 * @param {import("./leader.js").ElectorOptions} options
 * @returns {import("./leader.js").Elector}
 */
export function createLeaseElector(options) {
  const { name, tabId, onLead, onFollow } = options;
  const beatMs = options.beatMs ?? BEAT_MS;
  const staleAfterMs = options.staleAfterMs ?? STALE_AFTER_MS;
  const checkMs = options.checkMs ?? CHECK_MS;
  const record = leaderRecord(name);
  const listeners = listenerBag();

  let stopped = true;
  let frozen = false;
  let leading = false;
  let epoch = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let settleTimer;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let tickTimer;
  let lastBeat = 0;
  const ticks = stallDetector(Math.min(checkMs, beatMs) + 100);

  function tick() {
    if (stopped) return;
    // After a stall the lease may not show the beats the leader did make: wait for
    // the next tick, by when other tabs' writes have arrived.
    if (!ticks.stalled() && !frozen) step();
    // Jitter keeps the followers from re-checking in lockstep after a handover.
    tickTimer = setTimeout(tick, Math.min(checkMs, beatMs) + Math.random() * 100);
  }

  function step() {
    const current = record.read();
    if (leading) {
      if (!record.names(tabId, epoch)) return stepDown("replaced");
      if (Date.now() - lastBeat >= beatMs) beat();
      return;
    }
    if (settleTimer !== undefined) return;
    const free = !current || current.released;
    const silent = current && Date.now() - current.beatAt > staleAfterMs;
    const hiddenLeader = current && current.visible === false && pageVisible();
    if (free || silent || hiddenLeader) claim(!free);
  }

  /** @param {boolean} takeover */
  function claim(takeover) {
    const lastBeatAt = record.read()?.beatAt ?? Date.now();
    const claimed = record.claim(tabId);
    settleTimer = setTimeout(() => {
      settleTimer = undefined;
      if (stopped || frozen || !record.names(tabId, claimed)) return;
      epoch = claimed;
      leading = true;
      beat();
      const latencyMs = Math.max(0, Date.now() - lastBeatAt);
      onLead(epoch, { takeover, latencyMs, strategy: "local-storage-lease" });
    }, SETTLE_MS);
  }

  function beat() {
    lastBeat = Date.now();
    record.beat(tabId, epoch);
  }

  function stepDown(/** @type {string} */ reason) {
    if (!leading) return;
    leading = false;
    record.release(tabId, epoch);
    onFollow(reason);
  }

  /** @param {StorageEvent} event */
  function onStorage(event) {
    if (event.key !== record.key || stopped || frozen) return;
    if (leading && !record.names(tabId, epoch)) {
      stepDown("replaced");
    } else if (!leading && record.read()?.released) {
      // The leader handed over (closed, logged out, froze): claim now, with a little
      // jitter so the followers do not all write at the same instant.
      setTimeout(step, Math.random() * 40);
    }
  }

  return {
    strategy: "local-storage-lease",
    start() {
      if (!stopped) return;
      stopped = false;
      listeners.on(window, "storage", /** @type {EventListener} */ (onStorage));
      listeners.on(document, "visibilitychange", () => step());
      listeners.on(document, "freeze", () => {
        frozen = true;
        stepDown("frozen");
      });
      listeners.on(document, "resume", () => {
        frozen = false;
      });
      listeners.on(window, "pagehide", () => this.stop());
      tick();
    },
    stop() {
      if (stopped) return;
      stopped = true;
      clearTimeout(tickTimer);
      clearTimeout(settleTimer);
      settleTimer = undefined;
      listeners.removeAll();
      stepDown("stopped");
    },
    isLeader: () => leading,
    stillLeads: () => leading && record.names(tabId, epoch),
    async confirmLeads() {
      await afterQueuedTasks();
      return leading && record.names(tabId, epoch);
    },
    leader: () => record.read(),
  };
}
