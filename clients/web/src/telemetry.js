/**
 * Sampled client telemetry: how leader election and the poll behave in real browsers.
 *
 * A session (this tab's page load, remembered in sessionStorage) is sampled at
 * `sampleRate` (2 % by default). Records are batched and sent same-origin through the
 * gateway with `fetch(..., {keepalive: true})`: a `sendBeacon` with a JSON body would
 * need a CORS preflight that beacons cannot make, and keepalive lets the last batch
 * leave while the page unloads.
 *
 * @module telemetry
 */

const FLUSH_EVERY_MS = 10_000;
const BATCH_MAX = 20;
const QUEUE_MAX = 200;

/**
 * @typedef {{type: string, ts: string, sessionId: string, tabId: string,
 *            attrs: Record<string, string | number | boolean>}} TelemetryRecord
 */

/**
 * @param {{baseUrl: string, tabId: string, sampleRate: number,
 *          getToken: () => Promise<string | null> | string | null}} options
 */
export function createTelemetry(options) {
  const sessionId = sessionValue("checkin-rt:telemetry-session", () => randomId());
  const sampled = decideSampling(options.sampleRate);
  /** @type {TelemetryRecord[]} */
  let queue = [];
  let closed = false;
  const timer = sampled
    ? setInterval(() => void flush(false), FLUSH_EVERY_MS)
    : undefined;
  const onHide = () => {
    if (document.visibilityState === "hidden") void flush(true);
  };
  if (sampled) document.addEventListener("visibilitychange", onHide);

  async function flush(/** @type {boolean} */ keepalive) {
    if (!sampled || closed || queue.length === 0) return;
    // Taken before the first await: a flush started just before a logout still sends
    // its batch, and close() right after it cannot drop what it already took.
    const batch = queue.splice(0, BATCH_MAX);
    const token = await options.getToken();
    if (!token) return;
    try {
      await fetch(`${options.baseUrl}/telemetry/client`, {
        method: "POST",
        keepalive,
        headers: {
          "Content-Type": "application/json",
          Authorization: `Bearer ${token}`,
        },
        body: JSON.stringify({ events: batch }),
      });
    } catch {
      // Telemetry is best effort: a lost batch must never disturb the page.
    }
  }

  return {
    sampled,
    sessionId,
    /**
     * Queue one record (dropped when the session is not sampled).
     * @param {string} type
     * @param {Record<string, unknown>} [attrs]
     */
    record(type, attrs = {}) {
      if (!sampled || closed) return;
      /** @type {Record<string, string | number | boolean>} */
      const clean = {};
      for (const [key, value] of Object.entries(attrs)) {
        if (["string", "number", "boolean"].includes(typeof value))
          clean[key] = /** @type {any} */ (value);
      }
      queue.push({
        type,
        ts: new Date().toISOString(),
        sessionId,
        tabId: options.tabId,
        attrs: clean,
      });
      if (queue.length > QUEUE_MAX) queue = queue.slice(-QUEUE_MAX);
      if (queue.length >= BATCH_MAX) void flush(false);
    },
    /** Send what is queued now (with keepalive, so it survives an unload). */
    flush: () => flush(true),
    /** Stop; what is still queued is dropped (after a logout it must not be sent). */
    close() {
      closed = true;
      queue = [];
      clearInterval(timer);
      document.removeEventListener("visibilitychange", onHide);
    },
  };
}

function decideSampling(/** @type {number} */ rate) {
  if (rate >= 1) return true;
  if (rate <= 0) return false;
  const key = `checkin-rt:telemetry-sampled:${rate}`;
  return sessionValue(key, () => (Math.random() < rate ? "yes" : "no")) === "yes";
}

function sessionValue(/** @type {string} */ key, /** @type {() => string} */ make) {
  try {
    const found = sessionStorage.getItem(key);
    if (found) return found;
    const value = make();
    sessionStorage.setItem(key, value);
    return value;
  } catch {
    return make();
  }
}

/** A random id for a tab or a session. */
export function randomId() {
  return typeof crypto?.randomUUID === "function"
    ? crypto.randomUUID()
    : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}
