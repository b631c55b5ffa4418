/**
 * The relay between the tabs of one browser profile: a tiny message protocol over
 * BroadcastChannel, with localStorage `storage` events as the fallback where
 * BroadcastChannel is missing.
 *
 * Messages (all carry `from`, the sending tab's id):
 *   {type: "events", epoch, answer: {events, lastEventId, resync}}  a poll answer
 *   {type: "auth", action: "logout" | "login"}                       auth control
 *   {type: "hello", epoch, visible}                                  a leader speaks
 *
 * @module channel
 */

/**
 * @typedef {{type: string, from?: string, [key: string]: unknown}} RelayMessage
 * @typedef {{post(message: RelayMessage): void,
 *            subscribe(listener: (message: RelayMessage) => void): () => void,
 *            close(): void, kind: "broadcast" | "storage"}} Channel
 */

/**
 * Open the relay named `name` for the tab `tabId`.
 * @param {string} name
 * @param {string} tabId
 * @param {{forceStorage?: boolean}} [options]
 * @returns {Channel}
 */
export function openChannel(name, tabId, options = {}) {
  /** @type {Set<(message: RelayMessage) => void>} */
  const listeners = new Set();
  const deliver = (/** @type {RelayMessage} */ message) => {
    // A tab never reacts to its own message (the storage fallback would echo nothing,
    // but BroadcastChannel in a second instance of the same tab would).
    if (!message || message.from === tabId) return;
    for (const listener of [...listeners]) listener(message);
  };

  if (typeof BroadcastChannel === "function" && !options.forceStorage) {
    const channel = new BroadcastChannel(name);
    const onMessage = (/** @type {MessageEvent} */ event) => deliver(event.data);
    channel.addEventListener("message", onMessage);
    return {
      kind: "broadcast",
      post: (message) => channel.postMessage({ ...message, from: tabId }),
      subscribe: (listener) => {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
      close: () => {
        listeners.clear();
        channel.removeEventListener("message", onMessage);
        channel.close();
      },
    };
  }

  // Fallback: a `storage` event fires in every other tab of the profile when a key
  // changes. A nonce makes two equal messages in a row still count as a change.
  const key = `${name}:relay`;
  const onStorage = (/** @type {StorageEvent} */ event) => {
    if (event.key !== key || !event.newValue) return;
    try {
      deliver(JSON.parse(event.newValue).message);
    } catch {
      // Another version of the page wrote something we do not understand: ignore it.
    }
  };
  window.addEventListener("storage", onStorage);
  return {
    kind: "storage",
    post: (message) => {
      const nonce = `${Date.now()}-${Math.random()}`;
      localStorage.setItem(
        key,
        JSON.stringify({ nonce, message: { ...message, from: tabId } }),
      );
    },
    subscribe: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close: () => {
      listeners.clear();
      window.removeEventListener("storage", onStorage);
    },
  };
}
