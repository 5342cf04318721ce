// The service worker: keeps the app shell so the app opens offline (it then says so), and
// shows the server's Web Push notifications while the app is in the background. A push
// message is the event envelope trimmed for display:
// {id, type, version, occurredAt, familyId, title, body, tag, url}, `url` pointing at what the
// notification is about (`/#tasks/<id>`, `/#claims/<id>`, `/#chat/<id>`).

// A new name whenever the shell's files change, so an update replaces the old copies.
const SHELL_CACHE = "family-shell-v1";
const SHELL = [
  "/",
  "/index.html",
  "/style.css",
  "/app.js",
  "/api.js",
  "/realtime.js",
  "/push.js",
  "/manifest.webmanifest",
  "/vendor/socket.io.min.js",
  "/icons/icon-192.png",
  "/icons/icon-512.png",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL_CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name !== SHELL_CACHE) await caches.delete(name);
    await self.clients.claim();
  })());
});

// The shell: network first (a deploy shows at once), the cached copy when offline. The API
// and the socket are never cached: stale state would pass for current.
self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin
      || url.pathname.startsWith("/v1/") || url.pathname.startsWith("/socket.io/")) {
    return;
  }
  event.respondWith((async () => {
    try {
      const response = await fetch(event.request);
      if (response.ok && SHELL.includes(url.pathname)) {
        const copy = response.clone();
        caches.open(SHELL_CACHE).then((cache) => cache.put(event.request, copy));
      }
      return response;
    } catch (error) {
      const cached = await caches.match(event.request, { ignoreSearch: true })
        ?? (event.request.mode === "navigate" ? await caches.match("/index.html") : undefined);
      if (cached) return cached;
      throw error;
    }
  })());
});

self.addEventListener("push", (event) => {
  let message = {};
  try {
    message = event.data ? event.data.json() : {};
  } catch {
    message = {};  // not ours, or unreadable: still show something, browsers require it
  }
  const tag = message.tag || message.id || "family";
  event.waitUntil(self.registration.showNotification(message.title || "Family", {
    body: message.body || "",
    icon: "/icons/icon-192.png",
    // A newer notification about the same thing replaces the older one on screen.
    tag,
    renotify: true,
    data: { url: message.url || "/", id: message.id, type: message.type },
  }));
});

// Opens the app at what the notification is about: an open window navigates there (the page
// follows its hash), else a new one opens.
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = new URL(event.notification.data?.url || "/", self.location.origin).href;
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    const open = windows.find((client) => client.url.startsWith(self.location.origin));
    if (open) {
      await open.focus();
      return open.navigate(url);
    }
    return self.clients.openWindow(url);
  })());
});
