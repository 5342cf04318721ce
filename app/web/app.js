// The family web client: REST for state, one Socket.IO connection for what changed. Events
// carry the objects they are about, so a view applies them; it loads its state over REST
// when an event does not say enough, and every view does when a catch-up could not recover.
// Plain ES modules, no build step.

import { api, apiList, ApiError, clearSession, renewTokens, saveSession, scheduleRenewal, session } from "./api.js";
import { createRealtimeConnection } from "./realtime.js";
import { forgetPushSubscription, registerServiceWorker, setUpPush } from "./push.js";

const TOAST_MS = 6000;
const TOASTS_SHOWN = 3;  // older toasts give way rather than cover the page
const TYPING_IDLE_MS = 2500;  // a typist who stopped this long is no longer typing
const VIEWS = ["tasks", "karma", "rewards", "claims", "chat", "family"];
const WEEK = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

const $ = (id) => document.getElementById(id);

const state = {
  realtime: null,
  members: [],
  tasks: [],
  rewards: [],
  claims: [],
  karma: { balance: 0, history: [] },
  balances: new Map(),  // userId -> balance (parents see the family's)
  templates: [],
  chat: null,
  messages: [],
  typists: new Map(),  // userId -> timer that forgets them
  online: new Set(),
  loads: new Map(),  // view -> {generation, running}
  focus: null,  // {view, id}: what a deep link points at
};

const me = () => session.current?.user;
const isParent = () => me()?.role === "parent";
const familyPath = (rest) => `/families/${me().familyId}${rest}`;

// ---- loading views -------------------------------------------------------------------------

const loaders = {
  members: async () => {
    state.members = await apiList(familyPath("/members"));
    renderMembers();
  },
  tasks: async () => {
    state.tasks = await apiList(familyPath("/tasks"));
    renderTasks();
  },
  karma: async () => {
    const own = await api("GET", `/users/${me().id}/karma`);
    state.karma = { balance: own.balance, history: own.history };
    if (isParent()) {
      const others = state.members.filter((m) => m.role === "child");
      const balances = await Promise.all(others.map((m) => api("GET", `/users/${m.id}/karma?limit=1`)));
      state.balances = new Map(balances.map((k) => [k.userId, k.balance]));
    }
    renderKarma();
    renderRewards();  // what a child can afford
  },
  rewards: async () => {
    state.rewards = await apiList(familyPath("/rewards"));
    renderRewards();
  },
  claims: async () => {
    state.claims = await apiList(familyPath("/claims"));
    renderClaims();
  },
  templates: async () => {
    state.templates = await apiList(familyPath("/task-templates"));
    renderTemplates();
  },
  chat: async () => {
    const chats = await api("GET", familyPath("/chats"));
    state.chat = chats.find((c) => c.name === "Family") ?? chats[0] ?? null;
    if (state.chat) {
      const joined = await state.realtime?.joinChat(state.chat.id);
      if (!joined) await loadMessages();
    }
    renderChat();
  },
};

async function loadMessages() {
  const page = await api("GET", `/chats/${state.chat.id}/messages?limit=100`);
  state.messages = page.items.reverse();
}

// Loads a view's state; overlapping loads of one view collapse into one more after the
// running one, so the newest answer always lands last.
async function load(view) {
  const entry = state.loads.get(view) ?? { running: null, again: false };
  state.loads.set(view, entry);
  if (entry.running) {
    entry.again = true;
    return entry.running;
  }
  entry.running = (async () => {
    do {
      entry.again = false;
      try {
        await loaders[view]();
      } catch (error) {
        if (session.current && !(error instanceof TypeError)) toast(`Could not load ${view}: ${error.message}`, "error");
      }
    } while (entry.again && session.current);
    entry.running = null;
  })();
  return entry.running;
}

async function loadAll() {
  await load("members");
  await Promise.all(["tasks", "karma", "rewards", "claims", "templates", "chat"].map(load));
}

// ---- session -------------------------------------------------------------------------------

session.onEnded = (notice) => logOut(notice);
session.onRenewed = (token) => state.realtime?.renew(token);

function logIn(tokenResponse) {
  saveSession(tokenResponse);
  start();
}

async function logOutHere() {
  // Ends the session on the server first: its tokens are refused from then on.
  await api("POST", "/auth/logout").catch(() => {});
  logOut("");
}

function logOut(notice) {
  forgetPushSubscription(session.current?.accessToken);
  state.realtime?.forgetPositions();
  state.realtime?.close();
  state.realtime = null;
  clearSession();
  Object.assign(state, { members: [], tasks: [], rewards: [], claims: [], templates: [], chat: null, messages: [] });
  state.online.clear();
  setStatus("offline", "offline");
  showText($("auth-notice"), notice);
  $("app-view").hidden = true;
  $("tabs").hidden = true;
  $("auth-view").hidden = false;
  $("logout").hidden = true;
  $("current-user").textContent = "";
}

async function start() {
  const user = me();
  scheduleRenewal();
  $("auth-view").hidden = true;
  $("app-view").hidden = false;
  $("tabs").hidden = false;
  $("logout").hidden = false;
  showText($("auth-notice"), "");
  $("current-user").textContent = `${user.displayName} (${user.role})`;
  for (const id of ["task-form", "grant-form", "family-balances-card", "reward-form", "member-form", "template-form"]) {
    $(id).hidden = user.role !== "parent";
  }
  showView();
  connectRealtime();
  await loadAll();
  setUpPush();
}

// ---- realtime ------------------------------------------------------------------------------

function connectRealtime() {
  setStatus("connecting", "connecting…");
  const realtime = createRealtimeConnection({
    userId: me().id,
    token: () => session.current?.accessToken,
    renewTokens,
    // Without a network the socket keeps retrying; "offline" says why better than "reconnecting".
    onStatus: (name, text) => (navigator.onLine ? setStatus(name, text) : setStatus("offline", "offline")),
    onRefetch: (stream) => (stream === "user" ? loadAll() : load("chat")),
  });
  state.realtime = realtime;
  realtime.onTaskEvents(onTaskEvent);
  realtime.onKarmaEvents(onKarmaEvent);
  realtime.onRewardEvents(onRewardEvent);
  realtime.onChatEvents(onChatEvent);
  realtime.onPresence(onPresence);
  realtime.onMemberEvents(onMemberEvent);
  realtime.onSessionEvents((_, { data }) => {
    if (data.sessionIds.includes(session.current?.sessionId)) logOut("You were logged out.");
  });
  window.familyRealtime = realtime;  // for the browser tests and the curious
}

function onTaskEvent(type, { data }) {
  const title = data.task?.title ?? state.tasks.find((t) => t.id === data.taskId)?.title ?? "a task";
  if (type === "task.deleted") {
    state.tasks = state.tasks.filter((t) => t.id !== data.taskId);
  } else {
    upsert(state.tasks, data.task);
  }
  renderTasks();
  const mine = data.task?.assignedTo.includes(me().id);
  if (type === "task.created") {
    toast(data.task.claimId ? `Approval needed: ${title}` : `New task assigned: ${title}`, "event", type);
    if (data.task.claimId) load("claims");  // a child's new claim, which the task is about
  } else if (type === "task.assigned") {
    toast(mine ? `Task assigned to you: ${title}` : `Task reassigned: ${title}`, "event", type);
  } else if (type === "task.completed") {
    if (data.completedBy !== me().id) toast(`Task completed: ${title} (by ${memberName(data.completedBy)})`, "event", type);
    // The event does not carry balances or claims: those views load what changed.
    if (data.task.claimId) load("claims");
    if (isParent() && data.task.karmaReward) load("karma");
  } else if (type === "task.deleted") {
    toast(`Task deleted: ${title}`, "event", type);
  }
}

function onKarmaEvent(type, { data, occurredAt }) {
  state.karma.balance = data.newBalance;
  // The history may have been fetched after this entry was made: add it once.
  if (!state.karma.history.some((e) => e.id === data.entryId)) {
    state.karma.history.unshift({ id: data.entryId, amount: data.amount, reason: data.reason, source: data.source, balanceAfter: data.newBalance, createdAt: occurredAt });
  }
  renderKarma();
  renderRewards();
  toast(`+${data.amount} karma: ${data.reason}`, "event", type);
}

function onRewardEvent(type, { data, occurredAt }) {
  if (type === "reward.created" || type === "reward.updated") {
    const isNew = !state.rewards.some((r) => r.id === data.reward.id);
    upsert(state.rewards, data.reward);
    if (type === "reward.created" && isNew && data.reward.createdBy !== me().id) toast(`New reward: ${data.reward.name}`, "event", type);
  } else if (type === "reward.deleted") {
    state.rewards = state.rewards.filter((r) => r.id !== data.rewardId);
  } else {
    // claim.* reaches the claiming child, with the claim's state and the child's balance.
    const existing = state.claims.find((c) => c.id === data.claimId);
    const claim = {
      ...existing, id: data.claimId, rewardId: data.rewardId, memberId: data.memberId, reward: data.reward,
      karmaCost: data.karmaCost, status: data.status, decidedBy: data.decidedBy ?? null,
      decidedAt: data.decidedAt ?? null, createdAt: data.createdAt ?? existing?.createdAt ?? occurredAt,
    };
    if (existing) Object.assign(existing, claim);
    else state.claims.unshift(claim);
    if (data.newBalance !== undefined) state.karma.balance = data.newBalance;
    renderClaims();
    renderKarma();
    if (type === "claim.approved") toast(`Reward approved: ${data.reward.name}`, "event", type);
    if (type === "claim.rejected") toast(`Reward not approved: ${data.reward.name} (${data.refundedKarma} karma back)`, "event", type);
  }
  renderRewards();
}

function onChatEvent(type, payload) {
  if (type === "chat.typing") {
    if (payload.chatId !== state.chat?.id) return;
    clearTimeout(state.typists.get(payload.userId));
    if (payload.typing) {
      state.typists.set(payload.userId, setTimeout(() => {
        state.typists.delete(payload.userId);
        renderTyping();
      }, TYPING_IDLE_MS * 2));
    } else {
      state.typists.delete(payload.userId);
    }
    renderTyping();
    return;
  }
  const { message } = payload.data;
  if (message.chatId !== state.chat?.id || state.messages.some((m) => m.id === message.id)) return;
  state.messages.push(message);
  clearTimeout(state.typists.get(message.senderId));
  state.typists.delete(message.senderId);
  renderChat();
  if (message.senderId !== me().id && currentView() !== "chat") {
    toast(`${memberName(message.senderId)}: ${message.body}`, "event", type);
  }
}

function onPresence(type, payload) {
  if (type === "presence.snapshot") state.online = new Set(payload.online);
  else if (payload.online) state.online.add(payload.userId);
  else state.online.delete(payload.userId);
  renderOnline();
}

function onMemberEvent(type, { data }) {
  if (type === "member.added") {
    upsert(state.members, data.member);
    toast(`${data.member.displayName} joined the family`, "event", type);
  } else {
    state.members = state.members.filter((m) => m.id !== data.userId);
  }
  renderMembers();
}

function upsert(list, item) {
  const index = list.findIndex((x) => x.id === item.id);
  if (index === -1) list.push(item);
  else list[index] = item;
}

// ---- views and routing ---------------------------------------------------------------------

// `#tasks`, or a deep link to one thing: `#tasks/<id>`, `#claims/<id>`, `#chat/<id>`.
function currentView() {
  const [view] = location.hash.slice(1).split("/");
  return VIEWS.includes(view) ? view : "tasks";
}

function showView() {
  const view = currentView();
  const [, id] = location.hash.slice(1).split("/");
  state.focus = id ? { view, id } : null;
  for (const name of VIEWS) $(`view-${name}`).hidden = name !== view;
  for (const link of $("tabs").querySelectorAll("a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (view === "chat" && session.current && !state.chat) load("chat");
  highlightFocus();
}

window.addEventListener("hashchange", showView);

function highlightFocus() {
  for (const node of document.querySelectorAll(".focused")) node.classList.remove("focused");
  if (!state.focus) return;
  const node = document.querySelector(`[data-${state.focus.view === "claims" ? "claim" : "task"}-id="${state.focus.id}"]`);
  if (node) {
    node.classList.add("focused");
    node.scrollIntoView({ block: "center" });
  }
}

function memberName(id) {
  if (id === me()?.id) return "you";
  return state.members.find((m) => m.id === id)?.displayName ?? "someone";
}

function renderMembers() {
  const people = state.members.map((member) => {
    const item = element("li", { className: "member", "data-testid": "member", "data-member-id": member.id });
    item.append(
      element("span", { className: `dot ${state.online.has(member.id) ? "on" : ""}`, "aria-hidden": "true" }),
      element("span", { className: "grow" }, member.displayName),
      element("span", { className: "badge" }, member.role),
      element("span", { className: "muted", "data-testid": "member-online" }, state.online.has(member.id) ? "online" : "offline"),
    );
    return item;
  });
  $("member-list").replaceChildren(...people);
  renderChoices($("task-assignees"), "Assign to", "assignedTo", "assignee");
  renderChoices($("template-assignees"), "For", "assignedTo", "template-assignee");
  const grantable = state.members.filter((m) => m.id !== me().id);
  $("grant-member").replaceChildren(...grantable.map((m) => element("option", { value: m.id }, m.displayName)));
  renderOnline();
  renderTasks();
}

function renderChoices(fieldset, legend, name, testid) {
  const choices = state.members.map((member) => {
    const label = element("label", { className: "choice" });
    label.append(
      element("input", { type: "checkbox", name, value: member.id, "data-testid": `${testid}-${member.id}` }),
      ` ${member.displayName}`,
    );
    return label;
  });
  fieldset.replaceChildren(element("legend", {}, legend), ...choices);
}

function renderOnline() {
  const online = state.members.filter((m) => state.online.has(m.id));
  $("online-list").replaceChildren(...online.map((m) => element("li", { "data-testid": "online-member", "data-member-id": m.id }, m.displayName)));
  for (const item of $("member-list").children) {
    const on = state.online.has(item.dataset.memberId);
    item.querySelector(".dot").classList.toggle("on", on);
    item.querySelector("[data-testid=member-online]").textContent = on ? "online" : "offline";
  }
}

// ---- tasks ---------------------------------------------------------------------------------

function renderTasks() {
  const open = state.tasks.filter((t) => t.completedAt === null);
  const done = state.tasks.filter((t) => t.completedAt !== null);
  $("task-list").replaceChildren(...[...open, ...done].map(taskItem));
  $("task-list-empty").hidden = state.tasks.length > 0;
  if (state.focus?.view === "tasks") highlightFocus();
}

function taskItem(task) {
  const done = task.completedAt !== null;
  const item = element("li", { className: "task item", "data-testid": "task", "data-task-id": task.id,
    "data-status": done ? "completed" : "open" });
  const text = element("div", { className: "grow" });
  text.append(element("span", { className: "title", "data-testid": "task-title" }, task.title));
  if (task.description) text.append(element("p", { className: "muted small" }, task.description));
  const facts = [`for ${task.assignedTo.map(memberName).join(", ") || "nobody"}`];
  if (task.karmaReward) facts.push(`${task.karmaReward} karma`);
  if (task.dueAt) facts.push(`due ${new Date(task.dueAt).toLocaleString([], { dateStyle: "medium", timeStyle: "short" })}`);
  text.append(element("p", { className: "muted small" }, facts.join(" · ")));
  item.append(text);
  const status = done ? `Done by ${memberName(task.completedBy)}` : "Open";
  const side = element("div", { className: "side" });
  side.append(element("span", { className: "status", "data-testid": "task-status" }, status));
  const actions = element("div", { className: "actions" });
  if (!done && task.claimId && isParent()) {
    actions.append(
      actionButton("Approve", "approve", `task-approve`, () => decideClaim(task.claimId, "approve")),
      actionButton("Reject", "reject", `task-reject`, () => decideClaim(task.claimId, "reject")),
    );
  } else if (!done && !task.claimId && (isParent() || task.assignedTo.includes(me().id))) {
    actions.append(actionButton("Complete", "complete", "task-complete", async () => {
      upsert(state.tasks, await api("POST", `/tasks/${task.id}/complete`));
      renderTasks();
      if (task.karmaReward) load("karma");
    }));
  }
  if (isParent() && !task.claimId) {
    actions.append(actionButton("Edit", "edit", "task-edit", () => editTask(task)));
    actions.append(actionButton("Delete", "delete", "task-delete", async () => {
      await api("DELETE", `/tasks/${task.id}`);
      state.tasks = state.tasks.filter((t) => t.id !== task.id);
      renderTasks();
    }));
  }
  side.append(actions);
  item.append(side);
  return item;
}

function editTask(task) {
  const form = $("task-form");
  $("task-id").value = task.id;
  $("task-title").value = task.title;
  $("task-description").value = task.description;
  $("task-karma").value = String(task.karmaReward);
  $("task-due").value = task.dueAt ? toLocalInput(new Date(task.dueAt)) : "";
  for (const box of form.querySelectorAll("input[name=assignedTo]")) box.checked = task.assignedTo.includes(box.value);
  $("task-form-heading").textContent = "Edit task";
  $("task-submit").textContent = "Save task";
  $("task-cancel").hidden = false;
  $("task-title").focus();
  form.scrollIntoView({ block: "start" });
}

function resetTaskForm() {
  $("task-form").reset();
  $("task-id").value = "";
  $("task-form-heading").textContent = "New task";
  $("task-submit").textContent = "Create task";
  $("task-cancel").hidden = true;
}

function toLocalInput(date) {
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}

async function saveTask(form) {
  const fields = new FormData(form);
  const dueAt = fields.get("dueAt");
  const body = {
    title: fields.get("title"),
    description: fields.get("description"),
    karmaReward: Number(fields.get("karmaReward") || 0),
    dueAt: dueAt ? new Date(dueAt).toISOString() : null,
    assignedTo: fields.getAll("assignedTo"),
  };
  const taskId = fields.get("taskId");
  const saved = taskId
    ? await api("PATCH", `/tasks/${taskId}`, body)
    : await api("POST", familyPath("/tasks"), body);
  upsert(state.tasks, saved);  // the actor is not always among the event's recipients
  renderTasks();
  resetTaskForm();
}

async function decideClaim(claimId, decision) {
  const claim = await api("POST", `/claims/${claimId}/${decision}`);
  upsert(state.claims, claim);
  renderClaims();
  await Promise.all([load("tasks"), load("karma")]);
}

// ---- karma ---------------------------------------------------------------------------------

function renderKarma() {
  $("karma-balance").textContent = String(state.karma.balance);
  $("karma-history").replaceChildren(...state.karma.history.map((entry) => {
    const item = element("li", { className: "item", "data-testid": "karma-entry" });
    item.append(
      element("span", { className: `amount ${entry.amount < 0 ? "minus" : "plus"}` }, `${entry.amount > 0 ? "+" : ""}${entry.amount}`),
      element("span", { className: "grow" }, entry.reason),
      element("span", { className: "muted small" }, new Date(entry.createdAt).toLocaleDateString()),
    );
    return item;
  }));
  $("karma-history-empty").hidden = state.karma.history.length > 0;
  const children = state.members.filter((m) => m.role === "child");
  $("family-balances").replaceChildren(...children.map((member) => {
    const item = element("li", { className: "item", "data-testid": "member-balance", "data-member-id": member.id });
    item.append(element("span", { className: "grow" }, member.displayName),
      element("strong", { "data-testid": "balance" }, String(state.balances.get(member.id) ?? 0)));
    return item;
  }));
}

async function grantKarma(form) {
  const fields = new FormData(form);
  const member = fields.get("userId");
  await api("POST", "/karma/grant", { userId: member, amount: Number(fields.get("amount")), reason: fields.get("reason") });
  $("grant-reason").value = "";
  toast(`Granted ${fields.get("amount")} karma to ${memberName(member)}`);
  await load("karma");
}

// ---- rewards and claims --------------------------------------------------------------------

function renderRewards() {
  $("reward-list").replaceChildren(...state.rewards.map((reward) => {
    const item = element("li", { className: "item", "data-testid": "reward", "data-reward-id": reward.id });
    const text = element("div", { className: "grow" });
    text.append(element("span", { className: "title" }, reward.name));
    if (reward.description) text.append(element("p", { className: "muted small" }, reward.description));
    item.append(text, element("span", { className: "badge cost" }, `${reward.karmaCost} karma`));
    if (isParent()) {
      item.append(actionButton("Delete", "delete", "reward-delete", async () => {
        await api("DELETE", `/rewards/${reward.id}`);
        state.rewards = state.rewards.filter((r) => r.id !== reward.id);
        renderRewards();
      }));
    } else {
      const short = reward.karmaCost - state.karma.balance;
      const button = actionButton(short > 0 ? `Need ${short} more karma` : "Claim", "claim", "reward-claim", async () => {
        const claim = await api("POST", `/rewards/${reward.id}/claim`);
        upsert(state.claims, claim);
        renderClaims();
        toast(`Claimed ${reward.name}: waiting for a parent`);
        await load("karma");
      });
      button.disabled = short > 0;
      item.append(button);
    }
    return item;
  }));
  $("reward-list-empty").hidden = state.rewards.length > 0;
}

function renderClaims() {
  state.claims.sort((a, b) => (b.createdAt ?? "").localeCompare(a.createdAt ?? ""));
  $("claim-list").replaceChildren(...state.claims.map((claim) => {
    const item = element("li", { className: "item", "data-testid": "claim", "data-claim-id": claim.id, "data-status": claim.status });
    const text = element("div", { className: "grow" });
    text.append(element("span", { className: "title" }, claim.reward.name));
    text.append(element("p", { className: "muted small" }, `${memberName(claim.memberId)} · ${claim.karmaCost} karma`));
    item.append(text, element("span", { className: `badge state-${claim.status}`, "data-testid": "claim-status" }, claim.status));
    if (isParent() && claim.status === "pending") {
      const actions = element("div", { className: "actions" });
      actions.append(
        actionButton("Approve", "approve", "claim-approve", () => decideClaim(claim.id, "approve")),
        actionButton("Reject", "reject", "claim-reject", () => decideClaim(claim.id, "reject")),
      );
      item.append(actions);
    }
    return item;
  }));
  $("claim-list-empty").hidden = state.claims.length > 0;
  if (state.focus?.view === "claims") highlightFocus();
}

async function createReward(form) {
  const fields = new FormData(form);
  const reward = await api("POST", familyPath("/rewards"), {
    name: fields.get("name"), description: fields.get("description"), karmaCost: Number(fields.get("karmaCost")),
  });
  upsert(state.rewards, reward);
  renderRewards();
  form.reset();
}

// ---- chat ----------------------------------------------------------------------------------

function renderChat() {
  const chat = state.chat;
  $("chat-start").hidden = chat !== null;
  $("chat-form").hidden = chat === null;
  $("chat-name").textContent = chat ? `${chat.name} chat` : "Family chat";
  $("chat-messages").replaceChildren(...state.messages.map((message) => {
    const mine = message.senderId === me().id;
    const item = element("li", { className: `message ${mine ? "mine" : ""}`, "data-testid": "chat-message", "data-message-id": message.id });
    item.append(
      element("span", { className: "sender" }, mine ? "You" : memberName(message.senderId)),
      element("span", { className: "body" }, message.body),
      element("time", { className: "muted small", datetime: message.createdAt }, new Date(message.createdAt).toLocaleTimeString([], { timeStyle: "short" })),
    );
    return item;
  }));
  const list = $("chat-messages");
  list.scrollTop = list.scrollHeight;
  renderTyping();
}

function renderTyping() {
  const names = [...state.typists.keys()].map(memberName);
  $("typing-indicator").textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
}

async function startChat() {
  const memberIds = state.members.map((m) => m.id);
  state.chat = await api("POST", familyPath("/chats"), { name: "Family", memberIds });
  await state.realtime?.joinChat(state.chat.id);
  state.messages = [];
  renderChat();
}

let typingSince = null;
let typingTimer = null;

function noteTyping() {
  if (!state.chat) return;
  // One "typing" per burst, one "stopped" after a pause: the server rate-limits signals.
  if (typingSince === null) {
    typingSince = Date.now();
    state.realtime?.typing(state.chat.id, true);
  }
  clearTimeout(typingTimer);
  typingTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
}

function stopTyping() {
  clearTimeout(typingTimer);
  if (typingSince !== null && state.chat) state.realtime?.typing(state.chat.id, false);
  typingSince = null;
}

async function sendMessage(form) {
  const body = new FormData(form).get("body");
  stopTyping();
  const message = await api("POST", `/chats/${state.chat.id}/messages`, { body });
  if (!state.messages.some((m) => m.id === message.id)) state.messages.push(message);
  form.reset();
  renderChat();
  $("chat-input").focus();
}

// ---- family: members and recurring templates -----------------------------------------------

async function addMember(form) {
  const member = await api("POST", familyPath("/members"), Object.fromEntries(new FormData(form)));
  upsert(state.members, member);
  renderMembers();
  form.reset();
  toast(`${member.displayName} can now log in`);
}

function renderTemplates() {
  $("template-list").replaceChildren(...state.templates.map((template) => {
    const item = element("li", { className: "item", "data-testid": "template", "data-template-id": template.id });
    const text = element("div", { className: "grow" });
    text.append(element("span", { className: "title" }, template.title));
    const when = template.schedule.kind === "weekdays" ? template.schedule.days.join(", ") : `every ${template.schedule.n} days`;
    text.append(element("p", { className: "muted small" }, `${when} · for ${template.assignedTo.map(memberName).join(", ")}${template.karmaReward ? ` · ${template.karmaReward} karma` : ""}`));
    item.append(text);
    if (isParent()) {
      item.append(actionButton("Delete", "delete", "template-delete", async () => {
        await api("DELETE", `/task-templates/${template.id}`);
        state.templates = state.templates.filter((t) => t.id !== template.id);
        renderTemplates();
      }));
    }
    return item;
  }));
  $("template-list-empty").hidden = state.templates.length > 0;
}

async function createTemplate(form) {
  const fields = new FormData(form);
  const template = await api("POST", familyPath("/task-templates"), {
    title: fields.get("title"),
    karmaReward: Number(fields.get("karmaReward") || 0),
    assignedTo: fields.getAll("assignedTo"),
    schedule: { kind: "weekdays", days: fields.getAll("days") },
  });
  upsert(state.templates, template);
  renderTemplates();
  form.reset();
}

function renderDayChoices() {
  const days = WEEK.map((day) => {
    const label = element("label", { className: "choice" });
    label.append(element("input", { type: "checkbox", name: "days", value: day }), ` ${day}`);
    return label;
  });
  $("template-days").replaceChildren(element("legend", {}, "On"), ...days);
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
  while ($("toasts").children.length > TOASTS_SHOWN) $("toasts").firstElementChild.remove();
  setTimeout(() => node.remove(), TOAST_MS);
}

function actionButton(label, action, testid, run) {
  const button = element("button", { type: "button", "data-action": action, "data-testid": testid }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await run();
    } catch (error) {
      toast(error instanceof ApiError ? error.message : `Failed: ${error.message}`, "error");
      button.disabled = false;
    }
  });
  return button;
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

function showConnectivity() {
  $("offline-banner").hidden = navigator.onLine;
  if (!navigator.onLine) setStatus("offline", "offline");
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
onSubmit($("task-form"), $("task-error"), saveTask);
onSubmit($("grant-form"), $("grant-error"), grantKarma);
onSubmit($("reward-form"), $("reward-error"), createReward);
onSubmit($("member-form"), $("member-error"), addMember);
onSubmit($("template-form"), $("template-error"), createTemplate);
onSubmit($("chat-form"), $("chat-error"), sendMessage);
$("task-cancel").addEventListener("click", resetTaskForm);
$("chat-start").addEventListener("click", () => startChat().catch((error) => toast(error.message, "error")));
$("chat-input").addEventListener("input", noteTyping);
$("logout").addEventListener("click", logOutHere);
window.addEventListener("online", showConnectivity);
window.addEventListener("offline", showConnectivity);

renderDayChoices();
showConnectivity();
registerServiceWorker();
if (session.current) start();
