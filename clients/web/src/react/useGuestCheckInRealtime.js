/**
 * React hook over the framework-free client: the live list and the status of one tab.
 *
 * Needs React from the host app's bundler (the core in ../index.js needs no build).
 *
 * @module react/useGuestCheckInRealtime
 */
import { useEffect, useRef, useState } from "react";
import { createGuestCheckInRealtime } from "../index.js";

/**
 * @param {{getToken: import("../index.js").RealtimeOptions["getToken"],
 *          propertyId?: number | null, baseUrl?: string,
 *          telemetrySampleRate?: number}} options
 */
export function useGuestCheckInRealtime(options) {
  const [items, setItems] = useState(
    /** @type {import("../store.js").GuestCheckIn[]} */ ([]),
  );
  const [status, setStatus] = useState(
    /** @type {import("../index.js").RealtimeStatus | null} */ (null),
  );
  // The latest getToken without restarting the client each render.
  const getTokenRef = useRef(options.getToken);
  getTokenRef.current = options.getToken;
  const clientRef = useRef(
    /** @type {ReturnType<typeof createGuestCheckInRealtime> | null} */ (null),
  );
  const propertyId = options.propertyId ?? null;

  useEffect(() => {
    const client = createGuestCheckInRealtime({
      getToken: (how) => getTokenRef.current(how),
      propertyId,
      baseUrl: options.baseUrl,
      telemetrySampleRate: options.telemetrySampleRate,
      onChange: (next) => setItems(next),
      onStatus: (next) => setStatus(next),
    });
    clientRef.current = client;
    void client.start();
    return () => {
      clientRef.current = null;
      client.close();
    };
  }, [propertyId, options.baseUrl, options.telemetrySampleRate]);

  return {
    items,
    status,
    logout: () => clientRef.current?.logout(),
    refresh: () => clientRef.current?.refresh(),
  };
}
