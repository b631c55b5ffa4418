/**
 * The demo page: a guest check-in screen on top of the realtime client.
 *
 * Sign-in asks the API for a local development token (only offered in local mode) and
 * keeps it in localStorage, so every tab of this browser shares the session; signing
 * out in one tab signs out all of them. `window.__realtime` exposes the client's state
 * for tests and curious operators.
 */
import { createGuestCheckInRealtime } from "./src/index.js";

const SESSION_KEY = "checkin-demo:session";
const PROPERTY_NAMES = {
  1: "Harbor View",
  2: "Old Town Lodge",
  3: "Lakeside Inn",
  4: "Airport Suites",
  5: "Mountain Retreat",
};
const params = new URLSearchParams(location.search);
const $ = (/** @type {string} */ id) =>
  /** @type {HTMLElement} */ (document.getElementById(id));

/** @type {ReturnType<typeof createGuestCheckInRealtime> | null} */
let client = null;
/** @type {Set<number>} */
let shownIds = new Set();
let uploadFor = 0;

/** @returns {{token: string, orgId: number, role: string, propertyIds: number[] | null} | null} */
function readSession() {
  try {
    return JSON.parse(localStorage.getItem(SESSION_KEY) ?? "null");
  } catch {
    return null;
  }
}

const propertyName = (/** @type {number} */ id) =>
  `${PROPERTY_NAMES[/** @type {1} */ (id)] ?? "Property"} · ${id}`;

function show(/** @type {"login" | "app" | "signed-out"} */ view) {
  $("login-view").hidden = view !== "login";
  $("app-view").hidden = view !== "app";
  $("signed-out").hidden = view !== "signed-out";
  $("user").hidden = view !== "app";
}

function toast(/** @type {string} */ text) {
  const box = $("toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(Number(box.dataset.timer));
  box.dataset.timer = String(setTimeout(() => (box.hidden = true), 3500));
}

/** A fetch to the API as the signed-in user. */
async function api(/** @type {string} */ path, /** @type {RequestInit} */ init = {}) {
  const session = readSession();
  if (!session) throw new Error("signed out");
  const response = await fetch(path, {
    ...init,
    headers: { Authorization: `Bearer ${session.token}`, ...(init.headers ?? {}) },
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.detail ?? body.error ?? `HTTP ${response.status}`);
  }
  return response.status === 204 ? null : response.json();
}

function propertyChoices(
  /** @type {NonNullable<ReturnType<typeof readSession>>} */ session,
) {
  return session.propertyIds?.length ? session.propertyIds : [1, 2, 3, 4, 5];
}

function fillPropertySelects(
  /** @type {NonNullable<ReturnType<typeof readSession>>} */ session,
  /** @type {number | null} */ selected,
) {
  const picker = /** @type {HTMLSelectElement} */ ($("property"));
  const formPicker = /** @type {HTMLSelectElement} */ ($("checkin-property"));
  picker.replaceChildren(new Option("All properties", ""));
  formPicker.replaceChildren();
  for (const id of propertyChoices(session)) {
    picker.append(new Option(propertyName(id), String(id)));
    formPicker.append(new Option(propertyName(id), String(id)));
  }
  picker.value = selected === null ? "" : String(selected);
  if (selected !== null) formPicker.value = String(selected);
}

function selectedProperty() {
  const stored =
    sessionStorage.getItem("checkin-demo:property") ?? params.get("property") ?? "";
  return stored === "" ? null : Number(stored);
}

/** "2026-12-03" → "Dec 3", in the reader's locale (the date itself, no time zone shift). */
function shortDate(/** @type {string} */ isoDate) {
  const [year, month, day] = isoDate.split("-").map(Number);
  return new Date(year, month - 1, day).toLocaleDateString(undefined, {
    month: "short",
    day: "numeric",
  });
}

function cell(/** @type {string} */ text, /** @type {string} */ className = "") {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function button(
  /** @type {string} */ label,
  /** @type {string} */ testId,
  /** @type {() => void} */ onClick,
  danger = false,
) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = danger ? "small danger" : "small";
  element.textContent = label;
  element.dataset.testid = testId;
  element.addEventListener("click", onClick);
  return element;
}

/** The newest list not drawn yet; `null` when the table is up to date. */
/** @type {import("./src/store.js").GuestCheckIn[] | null} */
let undrawn = null;

/**
 * Draw the list once for all the changes of one task: an answer with many events
 * calls `onChange` once per event, and redrawing the whole table each time would
 * block the tab (and its part in leader election) for seconds during a burst.
 * @param {import("./src/store.js").GuestCheckIn[]} items
 */
function scheduleRender(items) {
  const scheduled = undrawn !== null;
  undrawn = items;
  if (scheduled) return;
  setTimeout(() => {
    const latest = undrawn;
    undrawn = null;
    if (latest) render(latest);
  }, 0);
}

function render(/** @type {import("./src/store.js").GuestCheckIn[]} */ items) {
  const rows = items.map((guest) => {
    const row = document.createElement("tr");
    row.dataset.testid = "guest-row";
    row.dataset.guestId = String(guest.id);
    row.dataset.status = guest.status;
    if (!shownIds.has(guest.id) && shownIds.size > 0) row.className = "fresh";
    const name = document.createElement("td");
    name.innerHTML = '<div class="name"></div><div class="sub"></div>';
    /** @type {HTMLElement} */ (name.firstChild).textContent = guest.fullName;
    /** @type {HTMLElement} */ (name.lastChild).textContent =
      `${guest.numberOfGuests} ${guest.numberOfGuests === 1 ? "guest" : "guests"} · ${guest.nationality}`;
    name.dataset.testid = "guest-name";
    const status = document.createElement("td");
    const badge = document.createElement("span");
    badge.className = `badge ${guest.status}`;
    badge.textContent = guest.status === "checked_in" ? "In house" : "Checked out";
    status.append(badge);
    const actions = document.createElement("td");
    const box = document.createElement("div");
    box.className = "actions";
    if (guest.status === "checked_in")
      box.append(button("Check out", "checkout", () => void checkOut(guest.id)));
    box.append(button("Upload ID", "upload", () => chooseDocument(guest.id)));
    box.append(button("Delete", "delete", () => void remove(guest.id), true));
    actions.append(box);
    row.append(
      name,
      cell(guest.roomNumber),
      cell(
        PROPERTY_NAMES[/** @type {1} */ (guest.propertyId)] ??
          `Property ${guest.propertyId}`,
        "muted nowrap",
      ),
      cell(
        `${shortDate(guest.checkInDate)} → ${shortDate(guest.expectedCheckoutDate)}`,
        "nowrap",
      ),
      status,
      cell(String(guest.documentCount ?? 0)),
      actions,
    );
    return row;
  });
  $("guest-rows").replaceChildren(...rows);
  shownIds = new Set(items.map((guest) => guest.id));
  $("empty").hidden = items.length > 0;
  const inHouse = items.filter((guest) => guest.status === "checked_in").length;
  $("counts").textContent =
    `${inHouse} in house · ${items.length - inHouse} checked out`;
}

function renderStatus(/** @type {import("./src/index.js").RealtimeStatus} */ status) {
  const role = $("status-role");
  const strategy = status.strategy === "web-locks" ? "Web Locks" : "storage lease";
  role.innerHTML = '<span class="dot"></span>';
  role.append(
    status.role === "leader"
      ? `Leader tab (${strategy})`
      : status.role === "follower"
        ? "Follower tab"
        : "Stopped",
  );
  /** @type {HTMLElement} */ (role.firstChild).className =
    `dot ${status.role === "stopped" ? "bad" : "live"}`;
  role.dataset.role = status.role;
  const labels = {
    polling: "Live",
    following: "Live (via leader)",
    paused: "Live (idle pause)",
    backoff: "Reconnecting…",
    offline: "Offline",
    stopped: "Stopped",
    "signed-out": "Signed out",
    idle: "Connecting…",
    unauthorized: "Session expired",
  };
  const connection = $("status-connection");
  connection.textContent =
    labels[/** @type {"polling"} */ (status.connection)] ?? status.connection;
  connection.dataset.state = status.connection;
  const last = status.lastEvent;
  $("status-last-event").textContent = last
    ? `Last event: ${last.type.replaceAll("_", " ")} #${last.seq} at ${new Date(last.at).toLocaleTimeString()}`
    : "No events yet";
  $("status-position").textContent = `position ${status.position}`;
}

async function checkOut(/** @type {number} */ id) {
  try {
    await api(`/v1/guest-checkins/${id}/checkout`, { method: "POST" });
  } catch (error) {
    toast(`Check-out failed: ${/** @type {Error} */ (error).message}`);
  }
}

async function remove(/** @type {number} */ id) {
  try {
    await api(`/v1/guest-checkins/${id}`, { method: "DELETE" });
  } catch (error) {
    toast(`Delete failed: ${/** @type {Error} */ (error).message}`);
  }
}

function chooseDocument(/** @type {number} */ id) {
  uploadFor = id;
  $("document-file").click();
}

async function upload(/** @type {File} */ file) {
  const form = new FormData();
  form.append("documentType", "passport");
  form.append("file", file, file.name);
  try {
    await api(`/v1/guest-checkins/${uploadFor}/documents`, {
      method: "POST",
      body: form,
    });
    toast("Document uploaded");
  } catch (error) {
    toast(`Upload failed: ${/** @type {Error} */ (error).message}`);
  }
}

async function checkIn(/** @type {HTMLFormElement} */ form) {
  const data = Object.fromEntries(new FormData(form));
  const body = {
    ...data,
    propertyId: Number(data.propertyId),
    numberOfGuests: Number(data.numberOfGuests),
  };
  try {
    await api("/v1/guest-checkins", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    /** @type {HTMLInputElement} */ (form.elements.namedItem("fullName")).value = "";
    toast(`${body.fullName} checked in`);
  } catch (error) {
    toast(`Check-in failed: ${/** @type {Error} */ (error).message}`);
  }
}

function startClient() {
  const session = readSession();
  if (!session) return show("login");
  const propertyId = selectedProperty();
  fillPropertySelects(session, propertyId);
  $("user-badge").textContent = `Org ${session.orgId} · ${session.role}`;
  show("app");
  shownIds = new Set();
  const created = createGuestCheckInRealtime({
    // A refresh re-reads the shared session: another tab may have signed in again.
    getToken: () => readSession()?.token ?? null,
    propertyId,
    telemetrySampleRate: params.has("telemetry")
      ? Number(params.get("telemetry"))
      : undefined,
    forceStorageChannel: params.get("channel") === "storage",
    onChange: scheduleRender,
    onStatus: renderStatus,
    onSignedOut: (reason) => {
      client = null;
      $("signed-out-reason").textContent =
        reason === "logout"
          ? "You signed out in this or another tab."
          : "Your session expired. Sign in again to continue.";
      undrawn = null;
      $("guest-rows").replaceChildren();
      show("signed-out");
    },
  });
  client = created;
  // Kept after sign-out too, so the signed-out state can be inspected.
  window.__realtime = {
    status: () => created.status(),
    items: () => created.items(),
    client: created,
  };
  void created.start();
}

function wire() {
  const today = new Date();
  const inThree = new Date(today.getTime() + 3 * 86_400_000);
  const form = /** @type {HTMLFormElement} */ ($("checkin-form"));
  /** @type {HTMLInputElement} */ (form.elements.namedItem("checkInDate")).value = today
    .toISOString()
    .slice(0, 10);
  /** @type {HTMLInputElement} */ (
    form.elements.namedItem("expectedCheckoutDate")
  ).value = inThree.toISOString().slice(0, 10);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void checkIn(form);
  });

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(/** @type {HTMLFormElement} */ (event.target));
    const propertyIds = String(data.get("propertyIds") ?? "")
      .split(",")
      .map((part) => Number(part.trim()))
      .filter(Boolean);
    const body = {
      orgId: Number(data.get("orgId")),
      role: data.get("role"),
      ...(propertyIds.length ? { propertyIds } : {}),
    };
    try {
      const response = await fetch("/v1/dev/token", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      if (!response.ok)
        throw new Error(
          response.status === 404
            ? "Local sign-in is off (LOCAL_MODE)"
            : `HTTP ${response.status}`,
        );
      const { token } = await response.json();
      localStorage.setItem(
        SESSION_KEY,
        JSON.stringify({
          token,
          orgId: body.orgId,
          role: body.role,
          propertyIds: propertyIds.length ? propertyIds : null,
        }),
      );
      $("login-error").textContent = "";
      startClient();
    } catch (error) {
      $("login-error").textContent = /** @type {Error} */ (error).message;
    }
  });

  $("logout").addEventListener("click", () => {
    localStorage.removeItem(SESSION_KEY);
    if (client) client.logout();
    else show("signed-out");
  });
  $("sign-in-again").addEventListener("click", () => show("login"));

  $("property").addEventListener("change", (event) => {
    const value = /** @type {HTMLSelectElement} */ (event.target).value;
    sessionStorage.setItem("checkin-demo:property", value);
    if (value) /** @type {HTMLSelectElement} */ ($("checkin-property")).value = value;
    shownIds = new Set();
    void client?.setPropertyId(value === "" ? null : Number(value));
  });

  $("document-file").addEventListener("change", (event) => {
    const input = /** @type {HTMLInputElement} */ (event.target);
    const file = input.files?.[0];
    if (file) void upload(file);
    input.value = "";
  });

  // Another tab signed in: follow it into the new session.
  window.addEventListener("storage", (event) => {
    if (event.key === SESSION_KEY && event.newValue && !client) startClient();
  });
}

wire();
startClient();
