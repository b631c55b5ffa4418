/**
 * The tab's copy of the guest check-in list: a snapshot from the API plus the events
 * after it.
 *
 * The snapshot comes with `position`, the org's event sequence number it reflects;
 * events are applied only when their `seq` is past it, and never twice (by `seq` and
 * by `eventId`). Events carry ids and field names, not personal data, so a created or
 * edited record is fetched: those fetches are collected for REFETCH_DEBOUNCE_MS and
 * made once per record; too many at once, or `resync: true`, refetch the snapshot.
 *
 * @module store
 */

export const REFETCH_DEBOUNCE_MS = 500;
const REFETCH_SNAPSHOT_ABOVE = 25;
const SNAPSHOT_PAGE = 100;
const SNAPSHOT_MAX_PAGES = 10;
const REMEMBERED_EVENT_IDS = 2000;

/**
 * @typedef {Record<string, any> & {id: number, propertyId: number}} GuestCheckIn
 * @typedef {{eventId: string, eventType: string, seq: number, propertyId: number,
 *            entityId: number, timestamp: string, metadata?: Record<string, any>}} GuestEvent
 * @typedef {{kind: "snapshot" | "event" | "refetch", event?: GuestEvent}} Change
 * @typedef {{
 *   baseUrl: string,
 *   propertyId: number | null,
 *   authorizedFetch: (path: string) => Promise<Response | null>,
 *   onChange: (change: Change) => void,
 * }} StoreOptions
 */

/** @param {StoreOptions} options */
export function createStore(options) {
  /** @type {Map<number, GuestCheckIn>} */
  const items = new Map();
  /** @type {Set<number>} */
  const dirty = new Set();
  /** Ids deleted since the snapshot: a late fetch must not bring them back. */
  /** @type {Set<number>} */
  const deleted = new Set();
  /** @type {Set<string>} */
  const seenIds = new Set();
  /** @type {import("./poller.js").PollAnswer[]} */
  let pending = [];
  let propertyId = options.propertyId;
  let position = 0;
  let generation = 0;
  let closed = false;
  /** @type {Promise<void> | null} */
  let loading = null;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let flushTimer;
  /** @type {GuestEvent | null} */
  let lastEvent = null;

  async function fetchSnapshot() {
    const mine = ++generation;
    const query = new URLSearchParams({ limit: String(SNAPSHOT_PAGE) });
    if (propertyId !== null) query.set("propertyId", String(propertyId));
    /** @type {GuestCheckIn[]} */
    const collected = [];
    let snapshotPosition = null;
    for (let page = 0; page < SNAPSHOT_MAX_PAGES; page++) {
      const response = await options.authorizedFetch(`/v1/guest-checkins?${query}`);
      if (!response || !response.ok)
        throw new Error(`snapshot status ${response?.status}`);
      const body = await response.json();
      // The first page's position is the oldest; replaying the events after it over
      // later pages is harmless, as every apply is idempotent.
      snapshotPosition ??= Number(body.position);
      collected.push(...body.items);
      if (!body.nextCursor) break;
      query.set("cursor", body.nextCursor);
    }
    if (closed || mine !== generation) return;
    items.clear();
    dirty.clear();
    deleted.clear();
    for (const item of collected) items.set(item.id, item);
    position = snapshotPosition ?? 0;
    options.onChange({ kind: "snapshot" });
  }

  /** Load (or reload) the snapshot; answers that arrive meanwhile wait for it. */
  function load() {
    const run = fetchSnapshot().finally(() => {
      if (loading !== run) return;
      loading = null;
      const waiting = pending;
      pending = [];
      for (const answer of waiting) apply(answer);
    });
    loading = run;
    return run;
  }

  /** @param {import("./poller.js").PollAnswer} answer */
  function apply(answer) {
    if (closed) return;
    if (loading) {
      pending.push(answer);
      return;
    }
    if (answer.resync) {
      void load().catch(() => undefined);
      return;
    }
    for (const event of answer.events) applyEvent(event);
    const cursor = Number(answer.lastEventId);
    if (Number.isFinite(cursor) && cursor > position) position = cursor;
  }

  /** @param {GuestEvent} event */
  function applyEvent(event) {
    if (event.seq <= position || seenIds.has(event.eventId)) return;
    remember(event.eventId);
    position = event.seq;
    if (propertyId !== null && event.propertyId !== propertyId) return;
    lastEvent = event;
    const id = event.entityId;
    switch (event.eventType) {
      case "guest_deleted":
        items.delete(id);
        dirty.delete(id);
        deleted.add(id);
        break;
      case "guest_checked_out": {
        const item = items.get(id);
        if (item)
          items.set(id, {
            ...item,
            status: "checked_out",
            checkedOutAt: event.timestamp,
          });
        else markDirty(id);
        break;
      }
      default:
        markDirty(id);
    }
    options.onChange({ kind: "event", event });
  }

  function remember(/** @type {string} */ eventId) {
    seenIds.add(eventId);
    if (seenIds.size > REMEMBERED_EVENT_IDS) {
      const oldest = seenIds.values().next().value;
      if (oldest !== undefined) seenIds.delete(oldest);
    }
  }

  function markDirty(/** @type {number} */ id) {
    dirty.add(id);
    // Not reset by later events: a busy stream still shows changes within the window.
    flushTimer ??= setTimeout(flush, REFETCH_DEBOUNCE_MS);
  }

  async function flush() {
    flushTimer = undefined;
    if (closed) return;
    const ids = [...dirty];
    dirty.clear();
    if (ids.length > REFETCH_SNAPSHOT_ABOVE) {
      await load().catch(() => undefined);
      return;
    }
    const mine = generation;
    const records = await Promise.all(ids.map(fetchRecord));
    if (closed || mine !== generation) return;
    ids.forEach((id, index) => {
      const record = records[index];
      if (record === undefined || deleted.has(id)) return;
      if (
        record === null ||
        (propertyId !== null && record.propertyId !== propertyId)
      ) {
        items.delete(id);
      } else {
        items.set(id, record);
      }
    });
    options.onChange({ kind: "refetch" });
  }

  /** The record, null when it is gone, undefined when the fetch failed. */
  async function fetchRecord(/** @type {number} */ id) {
    try {
      const response = await options.authorizedFetch(`/v1/guest-checkins/${id}`);
      if (!response) return undefined;
      if (response.status === 404) return null;
      return response.ok
        ? /** @type {Promise<GuestCheckIn>} */ (response.json())
        : undefined;
    } catch {
      return undefined;
    }
  }

  return {
    load,
    apply,
    /** Resolves once no snapshot is loading. */
    async ready() {
      while (loading) await loading.catch(() => undefined);
    },
    /** @param {number | null} next */
    setPropertyId(next) {
      propertyId = next;
      return load();
    },
    close() {
      closed = true;
      clearTimeout(flushTimer);
      flushTimer = undefined;
      items.clear();
      pending = [];
    },
    /** The records, newest check-in first. */
    list() {
      return [...items.values()].sort(
        (a, b) => String(b.createdAt).localeCompare(String(a.createdAt)) || b.id - a.id,
      );
    },
    get position() {
      return position;
    },
    get propertyId() {
      return propertyId;
    },
    get lastEvent() {
      return lastEvent;
    },
  };
}
