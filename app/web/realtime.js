// The one realtime connection of a tab (the seed's useRealtimeConnection): one Socket.IO socket,
// per-domain subscriptions the views register, duplicates dropped by event id, and a position
// per stream that is the highest *contiguous* seq (the gap contract, docs/delivery.md), kept
// across reloads so a reconnect or a reload catches up instead of refetching.
// `io` is the global from vendor/socket.io.min.js.

const SEEN_LIMIT = 1000;
const GAP_WAIT_MS = 500;  // how long a gap in a stream may stay open before we ask about it

// Which subscription an event or signal belongs to, by its name.
const DOMAINS = {
  task: ["task."],
  karma: ["karma."],
  reward: ["reward.", "claim."],
  chat: ["chat.message.", "chat.typing"],
  presence: ["presence."],
  member: ["member."],
  session: ["session.revoked"],
};

export function createRealtimeConnection({ userId, token, renewTokens, onStatus, onRefetch }) {
  const positionsKey = `family.positions.${userId}`;
  const streams = new Map();  // stream -> {lastSeq, ahead: Set, gapTimer}
  const seenEventIds = new Set();  // insertion-ordered, trimmed to SEEN_LIMIT
  const subscribers = Object.fromEntries(Object.keys(DOMAINS).map((domain) => [domain, new Set()]));
  const joinedChats = new Set();
  const ownStream = `user:${userId}`;

  for (const [stream, lastSeq] of Object.entries(loadPositions())) {
    streams.set(stream, { lastSeq, ahead: new Set(), gapTimer: null });
  }

  function loadPositions() {
    try {
      return JSON.parse(localStorage.getItem(positionsKey) || "{}");
    } catch {
      return {};
    }
  }

  function savePositions() {
    const positions = {};
    for (const [stream, follower] of streams) {
      if (follower.lastSeq !== null) positions[stream] = follower.lastSeq;
    }
    localStorage.setItem(positionsKey, JSON.stringify(positions));
  }

  function follower(stream) {
    if (!streams.has(stream)) streams.set(stream, { lastSeq: null, ahead: new Set(), gapTimer: null });
    return streams.get(stream);
  }

  // On every (re)connect the server sends what we missed after our position, then "sync".
  const socket = io({
    auth: (send) => {
      const lastSeq = streams.get(ownStream)?.lastSeq ?? null;
      send(lastSeq === null ? { token: token() } : { token: token(), lastSeq });
    },
    transports: ["websocket"],
  });

  function publish(name, payload) {
    for (const [domain, prefixes] of Object.entries(DOMAINS)) {
      if (prefixes.some((prefix) => name.startsWith(prefix))) {
        for (const handler of subscribers[domain]) handler(name, payload);
      }
    }
  }

  // Whether an outbox event is new to us; moves our position along its stream.
  function accept(envelope) {
    // Delivery is at least once: the same event may come again (a retry, a replay).
    if (!envelope?.id || typeof envelope.seq !== "number" || seenEventIds.has(envelope.id)) {
      return false;
    }
    const stream = follower(envelope.stream);
    if (stream.lastSeq !== null && envelope.seq <= stream.lastSeq) return false;  // had it
    seenEventIds.add(envelope.id);
    if (seenEventIds.size > SEEN_LIMIT) seenEventIds.delete(seenEventIds.values().next().value);
    if (stream.lastSeq === null) {
      // No position yet (a chat just loaded over REST): everything before this event is in
      // the state we fetched after joining, so the stream starts here.
      stream.lastSeq = envelope.seq;
    } else {
      stream.ahead.add(envelope.seq);
    }
    absorb(envelope.stream);
    return true;
  }

  function absorb(name) {
    const stream = follower(name);
    if (stream.lastSeq === null) return;
    while (stream.ahead.delete(stream.lastSeq + 1)) stream.lastSeq += 1;
    for (const seq of stream.ahead) if (seq <= stream.lastSeq) stream.ahead.delete(seq);
    savePositions();
    if (stream.ahead.size && !stream.gapTimer) {
      // Something between our position and what we have is missing: if it does not arrive
      // shortly, the server sends it or tells us it is gone.
      stream.gapTimer = setTimeout(() => {
        stream.gapTimer = null;
        if (stream.ahead.size) requestSync(name);
      }, GAP_WAIT_MS);
    }
  }

  function requestSync(name) {
    const lastSeq = streams.get(name)?.lastSeq ?? null;
    if (lastSeq === null || !socket.connected) return;
    socket.emit("sync.request", name === ownStream ? { lastSeq } : { lastSeq, stream: name });
  }

  socket.on("connect", () => {
    onStatus("connected", "connected");
    reportVisibility();
    // Rooms do not outlive a socket: join the chats again, and catch them up.
    for (const chatId of joinedChats) joinChat(chatId);
  });
  socket.on("sync", ({ stream: name, recovered, lastSeq }) => {
    const stream = follower(name);
    if (!recovered) {
      // A first connect, more missed than a catch-up gives, or events that are gone: what we
      // hold may be stale, so the views of this stream load their state again.
      stream.lastSeq = lastSeq;
      stream.ahead.clear();
      onRefetch(name === ownStream ? "user" : name);
    } else if (lastSeq !== null) {
      stream.lastSeq = Math.max(stream.lastSeq ?? 0, lastSeq);
    }
    absorb(name);
  });
  // Live events may have been lost on their way to us: ask for what follows our position.
  socket.on("resync", ({ stream }) => requestSync(stream));
  socket.on("disconnect", () => {
    if (socket.active) onStatus("reconnecting", "reconnecting…");
    else onStatus("offline", "disconnected");
  });
  socket.on("connect_error", async (error) => {
    if (socket.active) {
      onStatus("reconnecting", "reconnecting…");  // the network: retried by the client
    } else if (error.message === "token_expired" && await renewTokens()) {
      socket.connect();  // from our position, with the renewed token
    } else {
      onStatus("refused", `refused: ${error.message}`);  // unauthorized, session_revoked
    }
  });
  // The token ran out before it was renewed (a sleeping laptop): renew, and reconnect from our
  // position, missing nothing.
  socket.on("session.expired", async () => {
    if (await renewTokens()) socket.connect();
  });
  socket.onAny((name, payload) => {
    if (name === "sync" || name === "resync" || name === "session.expired") return;
    // Ephemeral signals (presence, typing) have no envelope and no seq.
    if (typeof payload?.seq === "number" && !accept(payload)) return;
    publish(name, payload);
  });

  function reportVisibility() {
    if (socket.connected) {
      socket.emit("app.visibility", { visible: document.visibilityState === "visible" });
    }
  }
  document.addEventListener("visibilitychange", reportVisibility);

  // Joins a chat's room; false when the chat has no position yet (the caller loads it over
  // REST). With a position, what was missed since is caught up like the user stream.
  async function joinChat(chatId) {
    joinedChats.add(chatId);
    if (!socket.connected) return false;  // joined on connect
    const ack = await socket.timeout(10_000).emitWithAck("chat.join", { chatId }).catch(() => null);
    if (!ack?.ok) return false;
    const name = `chat:${chatId}`;
    if (streams.get(name)?.lastSeq == null) return false;
    requestSync(name);
    return true;
  }

  function subscribe(domain) {
    return (handler) => {
      subscribers[domain].add(handler);
      return () => subscribers[domain].delete(handler);
    };
  }

  return {
    onTaskEvents: subscribe("task"),
    onKarmaEvents: subscribe("karma"),
    onRewardEvents: subscribe("reward"),
    onChatEvents: subscribe("chat"),
    onPresence: subscribe("presence"),
    onMemberEvents: subscribe("member"),
    onSessionEvents: subscribe("session"),
    joinChat,
    typing(chatId, isTyping) {
      if (socket.connected) socket.emit("chat.typing", { chatId, typing: isTyping });
    },
    renew(accessToken) {
      if (socket.connected) socket.emit("auth.renew", { token: accessToken });
    },
    close() {
      document.removeEventListener("visibilitychange", reportVisibility);
      for (const stream of streams.values()) clearTimeout(stream.gapTimer);
      socket.disconnect();
    },
    forgetPositions() {
      localStorage.removeItem(positionsKey);
    },
    get socket() { return socket; },
  };
}
