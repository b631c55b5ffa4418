/**
 * Leader election for the tabs of one browser profile: exactly one tab (the leader)
 * long-polls, the others follow its relay.
 *
 * Two strategies share the leader record kept here: Web Locks where the browser has
 * them (`leader-locks.js`, secure contexts only: https or localhost) and a localStorage
 * lease with heartbeats otherwise (`leader-lease.js`). Both write the same record,
 * `{tabId, epoch, beatAt, visible, released}`, whose `epoch` is a fencing number: it
 * grows with every change of leader, and a tab only acts as leader while the record
 * still names it with its own epoch. That check is synchronous and shared, so a tab
 * that was frozen or replaced notices before it polls or relays anything.
 *
 * @module leader
 */
import { createLockElector } from "./leader-locks.js";
import { createLeaseElector } from "./leader-lease.js";

/**
 * @typedef {{tabId: string, epoch: number, beatAt: number, visible: boolean,
 *            released?: boolean}} LeaderRecord
 * @typedef {{takeover: boolean, latencyMs: number, strategy: string}} LeadInfo
 *   `latencyMs`: time since the previous leader's last beat (or release).
 * @typedef {{
 *   name: string, tabId: string,
 *   onLead: (epoch: number, info: LeadInfo) => void,
 *   onFollow: (reason: string) => void,
 *   beatMs?: number, staleAfterMs?: number, checkMs?: number,
 * }} ElectorOptions
 * @typedef {{
 *   strategy: "web-locks" | "local-storage-lease",
 *   start(): void, stop(): void,
 *   isLeader(): boolean, stillLeads(): boolean, confirmLeads(): Promise<boolean>,
 *   leader(): LeaderRecord | null,
 * }} Elector
 *   `stillLeads` is the synchronous check of this tab's own copy of the record;
 *   `confirmLeads`, asked before each poll, first lets what other tabs wrote meanwhile
 *   arrive (and, with Web Locks, asks the browser who holds the lock).
 */

/** How often a leader proves it is alive, and when a silent one counts as gone. */
export const BEAT_MS = 1000;
export const STALE_AFTER_MS = 3000;
export const CHECK_MS = 500;

/** True when this browser offers the Web Locks API (absent outside secure contexts). */
export function hasWebLocks() {
  return (
    typeof navigator !== "undefined" && typeof navigator.locks?.request === "function"
  );
}

/**
 * Pick the strategy by feature check and create its elector.
 * @param {ElectorOptions & {forceLease?: boolean}} options
 * @returns {Elector}
 */
export function createLeaderElector(options) {
  if (hasWebLocks() && !options.forceLease) return createLockElector(options);
  return createLeaseElector(options);
}

/**
 * Tells whether this tab's own timers ran late, i.e. its main thread was blocked.
 *
 * Other tabs' localStorage writes reach a tab as queued tasks: right after a long
 * task, its copy of the leader record can be seconds old, and a beat that did happen
 * looks missing. A tab that just woke from such a stall decides nothing on that copy.
 * @param {number} everyMs how often the caller means to run
 */
export function stallDetector(everyMs) {
  let lastAt = performance.now();
  return {
    /** Call once per run; true when this run came much later than planned. */
    stalled() {
      const now = performance.now();
      const late = now - lastAt > everyMs * 3 + 200;
      lastAt = now;
      return late;
    },
  };
}

/** Let the tasks queued before this one run (storage updates from other tabs). */
export function afterQueuedTasks() {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** True when the page is on screen; a hidden leader hands over to a visible tab. */
export function pageVisible() {
  return typeof document === "undefined" || document.visibilityState !== "hidden";
}

/**
 * The shared leader record under `<name>:leader` in localStorage.
 * @param {string} name
 */
export function leaderRecord(name) {
  const key = `${name}:leader`;
  return {
    key,
    /** @returns {LeaderRecord | null} */
    read() {
      try {
        const raw = localStorage.getItem(key);
        return raw ? JSON.parse(raw) : null;
      } catch {
        return null;
      }
    },
    /**
     * Name `tabId` leader with the next epoch; returns that epoch.
     * @param {string} tabId
     */
    claim(tabId) {
      const epoch = (this.read()?.epoch ?? 0) + 1;
      this.write({ tabId, epoch, beatAt: Date.now(), visible: pageVisible() });
      return epoch;
    },
    /** @param {string} tabId @param {number} epoch */
    beat(tabId, epoch) {
      this.write({ tabId, epoch, beatAt: Date.now(), visible: pageVisible() });
    },
    /** @param {string} tabId @param {number} epoch */
    release(tabId, epoch) {
      const current = this.read();
      if (current && current.tabId === tabId && current.epoch === epoch) {
        this.write({ ...current, beatAt: Date.now(), released: true });
      }
    },
    /** @param {string} tabId @param {number} epoch */
    names(tabId, epoch) {
      const current = this.read();
      return Boolean(
        current &&
        current.tabId === tabId &&
        current.epoch === epoch &&
        !current.released,
      );
    },
    /** @param {LeaderRecord} record */
    write(record) {
      localStorage.setItem(key, JSON.stringify(record));
    },
  };
}

/**
 * Listen on `target` and remember it, so `removeAll` can undo every listener.
 */
export function listenerBag() {
  /** @type {Array<() => void>} */
  const removers = [];
  return {
    /**
     * @param {EventTarget} target @param {string} type
     * @param {EventListener} listener @param {AddEventListenerOptions} [options]
     */
    on(target, type, listener, options) {
      target.addEventListener(type, listener, options);
      removers.push(() => target.removeEventListener(type, listener, options));
    },
    removeAll() {
      while (removers.length) removers.pop()?.();
    },
  };
}
