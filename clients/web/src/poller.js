/**
 * The leader's long-poll loop against the fanout.
 *
 * One request at a time, from the cursor the store holds. The pauses between polls:
 * - an answer with events, or an empty one that was held: the next poll at once;
 * - an empty answer much faster than the hold (< FAST_EMPTY_MS): a jittered 2-5 s
 *   pause, doubled for each further fast empty in a row (up to 8x), so a server that
 *   keeps answering at once is not hammered;
 * - an error or a refused connection: exponential backoff with full jitter, up to 60 s;
 *   the cursor is kept, so nothing is missed when it comes back (a 504 of a proxy whose
 *   read timeout is shorter than the hold counts as such an error);
 * - 429: the server's `Retry-After`;
 * - a hidden page: a few seconds more after each answer (the fanout buffers meanwhile);
 * - offline: no poll until the browser is online again.
 * A 401 asks the host page for a fresh token once, then stops and reports.
 *
 * @module poller
 */

export const FAST_EMPTY_MS = 1500;
export const BACKOFF_CAP_MS = 60_000;

/**
 * @typedef {{events: Array<Record<string, any>>, lastEventId: string | number,
 *            resync: boolean}} PollAnswer
 * @typedef {"idle" | "polling" | "paused" | "backoff" | "offline" | "stopped" |
 *           "unauthorized"} PollState
 * @typedef {{
 *   baseUrl: string,
 *   getToken: (options: {refresh: boolean}) => Promise<string | null> | string | null,
 *   cursor: () => Promise<number>,
 *   mayPoll: () => boolean,
 *   confirmPoll?: () => Promise<boolean>,
 *   onAnswer: (answer: PollAnswer) => Promise<void> | void,
 *   onState?: (state: PollState, detail?: Record<string, unknown>) => void,
 *   onUnauthorized?: () => void,
 *   telemetry?: {record: (type: string, attrs?: Record<string, unknown>) => void},
 *   random?: () => number,
 * }} PollerOptions
 */

/** A pause that `wake()` or `abort` ends early. */
function pause(/** @type {number} */ ms, /** @type {AbortSignal} */ signal) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve(undefined);
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * Create the loop; `start()` runs it until `stop()`.
 * @param {PollerOptions} options
 */
export function createPoller(options) {
  const random = options.random ?? Math.random;
  let running = false;
  let failures = 0;
  let fastEmpties = 0;
  /** @type {AbortController | null} */
  let inFlight = null;
  /** @type {AbortController | null} */
  let sleeping = null;
  let generation = 0;
  let polls = 0;
  /** @type {PollState} */
  let state = "idle";

  const setState = (/** @type {PollState} */ next, detail = {}) => {
    state = next;
    options.onState?.(next, detail);
  };

  async function sleep(/** @type {number} */ ms, /** @type {PollState} */ why) {
    setState(why, { ms: Math.round(ms) });
    sleeping = new AbortController();
    await pause(ms, sleeping.signal);
    sleeping = null;
  }

  const jitter = (/** @type {number} */ low, /** @type {number} */ high) =>
    low + random() * (high - low);

  /** Full jitter: anywhere between 1 s and the exponential ceiling. */
  const errorBackoffMs = () =>
    Math.max(1000, random() * Math.min(BACKOFF_CAP_MS, 1000 * 2 ** failures));

  /** @param {string | null} token @param {number} cursor @param {AbortSignal} signal */
  function subscribe(token, cursor, signal) {
    const url = `${options.baseUrl}/v1/guest-checkin/realtime/subscribe?lastEventId=${cursor}`;
    return fetch(url, {
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      cache: "no-store",
      signal,
    });
  }

  async function loop(/** @type {number} */ mine) {
    let refreshed = false;
    const current = () => running && mine === generation;
    while (current()) {
      if (typeof navigator !== "undefined" && navigator.onLine === false) {
        setState("offline");
        return; // `online` calls start() again
      }
      if (!options.mayPoll()) return;
      const cursor = await options.cursor();
      const token = await options.getToken({ refresh: false });
      if (!current() || !options.mayPoll()) return;
      if (!token) return stopUnauthorized();
      // Asked just before each poll: a tab replaced while it was busy stops here.
      if (options.confirmPoll && !(await options.confirmPoll())) return;
      if (!current()) return;

      inFlight = new AbortController();
      const startedAt = performance.now();
      polls += 1;
      setState("polling", { cursor });
      /** @type {Response} */
      let response;
      try {
        response = await subscribe(token, cursor, inFlight.signal);
      } catch (error) {
        inFlight = null;
        // An abort is ours (logout, offline, lost leadership): nothing to report.
        if (!current() || /** @type {Error} */ (error).name === "AbortError") return;
        await failed(0);
        continue;
      }
      const elapsed = performance.now() - startedAt;

      if (response.status === 401) {
        inFlight = null;
        if (refreshed) return stopUnauthorized();
        refreshed = true;
        const fresh = await options.getToken({ refresh: true });
        if (!fresh || fresh === token) return stopUnauthorized();
        continue;
      }
      if (response.status === 429) {
        inFlight = null;
        const retryAfter = Number(response.headers.get("Retry-After"));
        const waitMs =
          (Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : 5) * 1000;
        options.telemetry?.record("poll_error", { status: 429, retryAfterMs: waitMs });
        await sleep(waitMs + jitter(0, 1000), "backoff");
        continue;
      }
      if (!response.ok) {
        inFlight = null;
        await failed(response.status);
        continue;
      }

      /** @type {PollAnswer} */
      let answer;
      try {
        answer = await response.json();
      } catch (error) {
        inFlight = null;
        if (!current() || /** @type {Error} */ (error).name === "AbortError") return;
        await failed(response.status);
        continue;
      }
      inFlight = null;
      refreshed = false;
      failures = 0;
      // Fencing: a tab that lost leadership while its poll was out must not relay.
      if (!current() || !options.mayPoll()) return;
      await options.onAnswer(answer);

      const empty = answer.events.length === 0 && !answer.resync;
      if (empty && elapsed < FAST_EMPTY_MS) {
        fastEmpties += 1;
        const ms = jitter(2000, 5000) * Math.min(8, 2 ** (fastEmpties - 1));
        options.telemetry?.record("fast_empty", {
          elapsedMs: Math.round(elapsed),
          pauseMs: Math.round(ms),
        });
        await sleep(ms, "paused");
      } else {
        if (!empty || elapsed >= FAST_EMPTY_MS) fastEmpties = 0;
        if (typeof document !== "undefined" && document.hidden)
          await sleep(jitter(3000, 6000), "paused");
      }
    }
  }

  async function failed(/** @type {number} */ status) {
    failures += 1;
    const ms = errorBackoffMs();
    options.telemetry?.record("poll_error", {
      status,
      failures,
      backoffMs: Math.round(ms),
    });
    await sleep(ms, "backoff");
  }

  function stopUnauthorized() {
    running = false;
    setState("unauthorized");
    options.onUnauthorized?.();
  }

  return {
    /** Run the loop (again); a running loop is left alone. */
    start() {
      if (running) return;
      running = true;
      const mine = ++generation;
      loop(mine).finally(() => {
        if (mine === generation && running && state !== "offline") setState("idle");
        if (mine === generation) running = false;
      });
    },
    /** Abort the poll in flight and any pause; the loop ends. */
    stop(/** @type {PollState} */ why = "stopped") {
      running = false;
      generation += 1;
      inFlight?.abort();
      inFlight = null;
      sleeping?.abort();
      setState(why);
    },
    /** End a pause early (e.g. the page became visible). */
    wake() {
      sleeping?.abort();
    },
    get running() {
      return running;
    },
    get polls() {
      return polls;
    },
    get state() {
      return state;
    },
  };
}
