// The family web client: REST for state, Socket.IO for "something changed" (refetch on event).
// Plain ES module; `io` is the global from vendor/socket.io.min.js.

// The session (refresh token, access token, user) outlives the tab: a device stays logged in
// while it is used within the refresh token's lifetime.
const SESSION_KEY = "family.session";
const REFRESH_LOCK = "family.refresh";
// An access token is renewed this long before it expires.
const RENEW_MARGIN_MS = 60_000;
const TOAST_MS = 6000;
const SEEN_LIMIT = 500;
const GAP_WAIT_MS = 500;  // how long a gap in our stream may stay open before we ask about it
const LIST_PAGE_LIMIT = 500;  // rows per page of a list endpoint (the most the API gives)

const $ = (id) => document.getElementById(id);

const state = {
  session: loadSession(),  // {accessToken, expiresAt, refreshToken, sessionId, user}
  renewTimer: null,
  members: [],
  tasks: [],
  socket: null,
  // Our position in our own stream: the highest seq up to which we have every event (the gap
  // contract, docs/delivery.md). Sent on reconnect; events after a gap wait in `ahead`.
  lastSeq: null,
  ahead: new Set(),
  gapTimer: null,
  seenEventIds: new Set(),  // insertion-ordered, trimmed to SEEN_LIMIT
  tasksGeneration: 0,
};

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// ---- REST ----------------------------------------------------------------------------------

// `onResponse` sees the raw response first (e.g. for its headers). An expired access token is
// renewed once and the request sent again; any other 401 ends the session here.
async function api(method, path, body, onResponse, renewed = false) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const token = state.session?.accessToken;
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(`/v1${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  onResponse?.(response);
  if (response.status === 204) return null;
  const payload = await response.json().catch(() => null);
  if (response.ok) return payload;
  const error = payload?.error ?? {};
  if (response.status === 401 && token) {
    if (error.code === "token_expired" && !renewed && await renewTokens()) {
      return api(method, path, body, onResponse, true);
    }
    logOut("Your session has ended. Please log in again.");
  }
  throw new ApiError(response.status, error.code ?? "http_error", describeError(error, response));
}

// Every row of a list endpoint: its pages in order, following X-Next-Cursor to the last one.
async function apiList(path) {
  const rows = [];
  let cursor = null;
  do {
    const query = new URLSearchParams({ limit: String(LIST_PAGE_LIMIT) });
    if (cursor) query.set("cursor", cursor);
    const page = await api("GET", `${path}${path.includes("?") ? "&" : "?"}${query}`, undefined,
      (response) => { cursor = response.headers.get("X-Next-Cursor"); });
    rows.push(...page);
  } while (cursor);
  return rows;
}

function describeError(error, response) {
  const fields = error.details?.errors;
  if (Array.isArray(fields) && fields.length) {
    return fields.map((e) => `${e.loc?.slice(1).join(".") || "request"}: ${e.msg}`).join("; ");
  }
  return error.message ?? `request failed (${response.status})`;
}

// ---- session -------------------------------------------------------------------------------

function loadSession() {
  try {
    return JSON.parse(localStorage.getItem(SESSION_KEY) || "null");
  } catch {
    return null;
  }
}

function saveSession(tokenResponse) {
  state.session = {
    accessToken: tokenResponse.accessToken,
    expiresAt: Date.now() + tokenResponse.expiresIn * 1000,
    refreshToken: tokenResponse.refreshToken,
    sessionId: tokenResponse.sessionId,
    user: tokenResponse.user,
  };
  localStorage.setItem(SESSION_KEY, JSON.stringify(state.session));
  scheduleRenewal();
}

function scheduleRenewal() {
  clearTimeout(state.renewTimer);
  const due = Math.max(state.session.expiresAt - Date.now() - RENEW_MARGIN_MS, 1000);
  state.renewTimer = setTimeout(renewTokens, due);
}

// New tokens for this session; false when it has ended. A refresh token is good for one use
// (a second use ends the session), so this browser's tabs take turns, and a tab adopts what
// another tab renewed in the meantime instead of spending the token again.
async function renewTokens() {
  const sessionId = state.session?.sessionId;
  if (!sessionId) return false;
  const renewed = await navigator.locks.request(REFRESH_LOCK, async () => {
    const stored = loadSession();
    if (stored?.sessionId !== sessionId) return null;
    if (stored.accessToken !== state.session.accessToken
        && stored.expiresAt - Date.now() > RENEW_MARGIN_MS) {
      return { ...stored, expiresIn: (stored.expiresAt - Date.now()) / 1000 };
    }
    const response = await fetch("/v1/auth/refresh", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ refreshToken: stored.refreshToken }),
    });
    return response.ok ? response.json() : null;
  }).catch(() => null);
  if (state.session?.sessionId !== sessionId) return false;  // logged out meanwhile
  if (!renewed) {
    logOut("Your session has ended. Please log in again.");
    return false;
  }
  saveSession(renewed);
  // An open socket goes on with the new token; a closed one presents it when it reconnects.
  if (state.socket?.connected) state.socket.emit("auth.renew", { token: renewed.accessToken });
  return true;
}

function logIn(tokenResponse) {
  saveSession(tokenResponse);
  start();
}

async function logOutHere() {
  // Ends the session on the server first: its tokens are refused from then on. Offline, it
  // still ends here, and on the server when its refresh token expires.
  await api("POST", "/auth/logout").catch(() => {});
  logOut("");
}

function logOut(notice) {
  forgetPushSubscription(state.session?.accessToken);
  clearTimeout(state.renewTimer);
  state.socket?.disconnect();
  state.socket = null;
  state.session = null;
  state.members = [];
  state.tasks = [];
  state.lastSeq = null;
  state.ahead.clear();
  localStorage.removeItem(SESSION_KEY);
  setStatus("offline", "offline");
  showText($("auth-notice"), notice);
  $("app-view").hidden = true;
  $("auth-view").hidden = false;
  $("logout").hidden = true;
  $("current-user").textContent = "";
}

async function start() {
  const { user } = state.session;
  scheduleRenewal();
  $("auth-view").hidden = true;
  $("app-view").hidden = false;
  $("logout").hidden = false;
  showText($("auth-notice"), "");
  $("current-user").textContent = `${user.displayName} (${user.role})`;
  $("task-form").hidden = user.role !== "parent";
  try {
    state.members = await apiList(`/families/${user.familyId}/members`);
  } catch (error) {
    if (state.session) toast(`Could not load the family: ${error.message}`, "error");
    return;
  }
  renderAssigneeChoices();
  await refreshTasks();
  connectSocket();
  setUpPush();
}

// ---- realtime ------------------------------------------------------------------------------

function connectSocket() {
  setStatus("connecting", "connecting…");
  // On every (re)connect the server replays what we missed after lastSeq, then says "sync".
  const auth = (send) => send(state.lastSeq === null
    ? { token: state.session?.accessToken }
    : { token: state.session?.accessToken, lastSeq: state.lastSeq });
  const socket = io({ auth, transports: ["websocket"] });
  state.socket = socket;
  socket.on("connect", () => {
    setStatus("connected", "connected");
    reportVisibility();
  });
  socket.on("sync", ({ recovered, lastSeq }) => {
    if (!recovered) {
      // Missed more than a replay can give (or a first connect): refetch the state.
      if (lastSeq !== null) state.lastSeq = lastSeq;
      refreshTasks();
    } else if (lastSeq !== null) {
      state.lastSeq = Math.max(state.lastSeq ?? 0, lastSeq);
    }
    absorbAhead();
  });
  // The server may have lost live events on their way to us: ask for what follows our position.
  socket.on("resync", requestSync);
  socket.on("disconnect", (reason) => {
    if (socket.active) setStatus("reconnecting", "reconnecting…");
    else if (state.socket === socket) setStatus("offline", `disconnected: ${reason}`);
  });
  socket.on("connect_error", async (error) => {
    if (socket.active) {
      setStatus("reconnecting", "reconnecting…");  // the network: retried by the client
    } else if (error.message === "token_expired" && await renewTokens()) {
      socket.connect();  // from our position, with the renewed token
    } else {
      setStatus("refused", `refused: ${error.message}`);  // unauthorized, session_revoked
    }
  });
  // The token ran out before it was renewed (a sleeping laptop): renew, and reconnect from our
  // position, missing nothing.
  socket.on("session.expired", async () => {
    if (await renewTokens()) socket.connect();
  });
  socket.onAny((eventName, envelope) => {
    if (!acceptEnvelope(envelope)) return;
    if (eventName.startsWith("task.")) handleTaskEvent(envelope);
    if (eventName === "session.revoked"
        && envelope.data.sessionIds.includes(state.session?.sessionId)) {
      logOut("You were logged out.");
    }
  });
}

// Whether an outbox event is new to us; moves our position along the stream.
function acceptEnvelope(envelope) {
  // Delivery is at-least-once: the same event may arrive twice (after a retry or a replay).
  if (!envelope?.id || typeof envelope.seq !== "number" || state.seenEventIds.has(envelope.id)) {
    return false;
  }
  state.seenEventIds.add(envelope.id);
  if (state.seenEventIds.size > SEEN_LIMIT) {
    state.seenEventIds.delete(state.seenEventIds.values().next().value);
  }
  // Our position is in our own user stream (chat streams would keep positions of their own).
  if (envelope.stream !== `user:${state.session?.user.id}`) return true;
  if (state.lastSeq === null || envelope.seq > state.lastSeq) {
    state.ahead.add(envelope.seq);
    absorbAhead();
  }
  return true;
}

function absorbAhead() {
  if (state.lastSeq === null) return;
  while (state.ahead.delete(state.lastSeq + 1)) state.lastSeq += 1;
  for (const seq of state.ahead) if (seq <= state.lastSeq) state.ahead.delete(seq);
  if (state.ahead.size && !state.gapTimer) {
    // Something between our position and what we have is missing: if it does not arrive
    // shortly, the server replays it or tells us it is gone.
    state.gapTimer = setTimeout(() => {
      state.gapTimer = null;
      if (state.ahead.size) requestSync();
    }, GAP_WAIT_MS);
  }
}

function requestSync() {
  if (state.lastSeq !== null && state.socket?.connected) {
    state.socket.emit("sync.request", { lastSeq: state.lastSeq });
  }
}

// ---- web push --------------------------------------------------------------------------------
// A hidden app gets Web Push instead of nothing: the server pushes only to users with no
// visible app, so the socket says whether this one is in front of its user.

function reportVisibility() {
  state.socket?.emit("app.visibility", { visible: document.visibilityState === "visible" });
}

document.addEventListener("visibilitychange", () => {
  if (state.socket?.connected) reportVisibility();
});

function base64UrlToBytes(text) {
  const base64 = (text + "=".repeat((4 - (text.length % 4)) % 4)).replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

async function setUpPush() {
  if (!("serviceWorker" in navigator && "PushManager" in window && "Notification" in window)) return;
  try {
    const { publicKey } = await api("GET", "/push/vapid-public-key");  // 404: push is off
    const registration = await navigator.serviceWorker.register("/sw.js");
    const existing = await registration.pushManager.getSubscription();
    // Re-sent on every start: idempotent, and it moves the device to whoever is logged in.
    if (existing) await api("POST", "/push/subscriptions", existing.toJSON());
    else if (Notification.permission !== "denied") showPushButton(registration, publicKey);
  } catch (error) {
    console.warn("web push unavailable", error);  // the app works without it
  }
}

function showPushButton(registration, publicKey) {
  if ($("enable-push")) return;
  const button = document.createElement("button");
  button.id = "enable-push";
  button.type = "button";
  button.textContent = "Enable notifications";
  button.addEventListener("click", async () => {
    try {
      if (await Notification.requestPermission() !== "granted") return;
      const subscription = await registration.pushManager.subscribe({
        userVisibleOnly: true, applicationServerKey: base64UrlToBytes(publicKey),
      });
      await api("POST", "/push/subscriptions", subscription.toJSON());
      button.remove();
      toast("Notifications are on for this device.");
    } catch (error) {
      toast(`Could not enable notifications: ${error.message}`, "error");
    }
  });
  $("logout").before(button);
}

function forgetPushSubscription(token) {
  // The device stops receiving this user's notifications once they log out.
  if (!token || !("serviceWorker" in navigator)) return;
  navigator.serviceWorker.getRegistration()
    .then((registration) => registration?.pushManager.getSubscription())
    .then((subscription) => subscription && fetch("/v1/push/subscriptions", {
      // In the body: the endpoint is a capability URL, and query strings end up in access logs.
      method: "DELETE",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ endpoint: subscription.endpoint }),
    }))
    .catch(() => {});
  $("enable-push")?.remove();
}

function handleTaskEvent(envelope) {
  toast(describeEvent(envelope), "event", envelope.type);
  refreshTasks();
}

function describeEvent({ type, data }) {
  const title = data.task?.title ?? state.tasks.find((t) => t.id === data.taskId)?.title ?? "a task";
  switch (type) {
    case "task.created": return `New task assigned: ${title}`;
    case "task.assigned": return `Task assigned to you: ${title}`;
    case "task.completed": return `Task completed: ${title} (by ${memberName(data.completedBy)})`;
    case "task.deleted": return `Task deleted: ${title}`;
    default: return `${type}: ${title}`;
  }
}

// ---- tasks ---------------------------------------------------------------------------------

async function refreshTasks() {
  if (!state.session?.user) return;
  // Only the latest of overlapping refetches may render, whatever order they answer in.
  const generation = ++state.tasksGeneration;
  try {
    const tasks = await apiList(`/families/${state.session?.user.familyId}/tasks`);
    if (generation !== state.tasksGeneration || !state.session?.user) return;
    state.tasks = tasks;
    renderTasks();
  } catch (error) {
    if (state.session?.user) toast(`Could not load tasks: ${error.message}`, "error");
  }
}

function memberName(id) {
  if (id === state.session?.user?.id) return "you";
  return state.members.find((m) => m.id === id)?.displayName ?? "someone";
}

function renderTasks() {
  const list = $("task-list");
  const isParent = state.session?.user.role === "parent";
  list.replaceChildren(...state.tasks.map((task) => {
    const done = task.completedAt !== null;
    const item = element("li", { className: "task", "data-testid": "task", "data-task-id": task.id,
      "data-status": done ? "completed" : "open" });
    const text = element("div", { className: "task-text" });
    text.append(element("span", { className: "task-title", "data-testid": "task-title" }, task.title));
    if (task.description) text.append(element("p", { className: "task-description" }, task.description));
    const facts = [`for ${task.assignedTo.map(memberName).join(", ") || "nobody"}`];
    if (task.karmaReward) facts.push(`${task.karmaReward} karma`);
    if (task.dueAt) facts.push(`due ${new Date(task.dueAt).toLocaleString()}`);
    text.append(element("p", { className: "task-meta" }, facts.join(" · ")));
    item.append(text);
    const status = done ? `Done by ${memberName(task.completedBy)}` : "Open";
    item.append(element("span", { className: "task-status", "data-testid": "task-status" }, status));
    const actions = element("div", { className: "task-actions" });
    if (!done && (isParent || task.assignedTo.includes(state.session?.user.id))) {
      actions.append(actionButton("Complete", "complete", () => api("POST", `/tasks/${task.id}/complete`)));
    }
    if (isParent) {
      actions.append(actionButton("Delete", "delete", () => api("DELETE", `/tasks/${task.id}`)));
    }
    item.append(actions);
    return item;
  }));
  $("task-list-empty").hidden = state.tasks.length > 0;
}

function actionButton(label, action, run) {
  const button = element("button", { type: "button", "data-action": action, "data-testid": `task-${action}` }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await run();
    } catch (error) {
      toast(error.message, "error");
    }
    await refreshTasks();  // the actor is not always among the event's recipients
  });
  return button;
}

function renderAssigneeChoices() {
  const fieldset = $("task-assignees");
  const choices = state.members.map((member) => {
    const label = element("label", { className: "choice" });
    label.append(
      element("input", { type: "checkbox", name: "assignedTo", value: member.id,
        "data-testid": `assignee-${member.id}` }),
      ` ${member.displayName} (${member.role})`,
    );
    return label;
  });
  fieldset.replaceChildren(element("legend", {}, "Assign to"), ...choices);
}

async function createTask(form) {
  const fields = new FormData(form);
  const dueAt = fields.get("dueAt");
  await api("POST", `/families/${state.session?.user.familyId}/tasks`, {
    title: fields.get("title"),
    description: fields.get("description"),
    karmaReward: Number(fields.get("karmaReward") || 0),
    dueAt: dueAt ? new Date(dueAt).toISOString() : null,
    assignedTo: fields.getAll("assignedTo"),
  });
  form.reset();
  await refreshTasks();
}

// ---- small DOM helpers ---------------------------------------------------------------------

function element(tag, attributes = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "className") node.className = value;
    else node.setAttribute(name, value);
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

function showText(node, text) {
  node.textContent = text ?? "";
  node.hidden = !text;
}

function setStatus(stateName, text) {
  const indicator = $("connection-status");
  indicator.dataset.state = stateName;
  indicator.textContent = text;
}

function toast(message, kind = "event", eventType = "") {
  const node = element("div", { className: `toast toast-${kind}`, role: "status",
    "data-testid": "toast", "data-event-type": eventType }, message);
  $("toasts").append(node);
  setTimeout(() => node.remove(), TOAST_MS);
}

// Runs a form's submit handler, showing its failure in the form's error line.
function onSubmit(form, errorLine, handler) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showText(errorLine, "");
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      await handler(form);
    } catch (error) {
      showText(errorLine, error.message);
    } finally {
      submit.disabled = false;
    }
  });
}

onSubmit($("login-form"), $("login-error"), async (form) => {
  const fields = new FormData(form);
  logIn(await api("POST", "/auth/login", { email: fields.get("email"), password: fields.get("password") }));
  form.reset();
});
onSubmit($("signup-form"), $("signup-error"), async (form) => {
  logIn(await api("POST", "/auth/signup", Object.fromEntries(new FormData(form))));
  form.reset();
});
onSubmit($("task-form"), $("task-error"), createTask);
$("logout").addEventListener("click", logOutHere);

if (state.session) start();
