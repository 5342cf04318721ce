// The service worker: shows the server's Web Push notifications while the app is in the
// background (the socket is gone then). A message is the event envelope trimmed for display:
// {id, type, version, occurredAt, familyId, title, body, tag, url}.

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
    // A newer notification about the same thing replaces the older one on screen.
    tag,
    renotify: true,
    data: { url: message.url || "/", id: message.id, type: message.type },
  }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = new URL(event.notification.data?.url || "/", self.location.origin).href;
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    const open = windows.find((client) => client.url.startsWith(self.location.origin));
    // The app catches up over its socket (replay from lastSeq) as soon as it is in front.
    if (open) return open.focus();
    return self.clients.openWindow(url);
  })());
});
