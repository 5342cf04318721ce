// The service worker and Web Push. The worker is registered whatever push does: it also keeps
// the app shell for offline starts. A hidden app gets Web Push instead of socket events: the
// server pushes only to users with no visible app (the realtime module reports visibility).

import { api } from "./api.js";

export async function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) return null;
  try {
    return await navigator.serviceWorker.register("/sw.js");
  } catch (error) {
    console.warn("service worker unavailable", error);  // the app works without it
    return null;
  }
}

function base64UrlToBytes(text) {
  const base64 = (text + "=".repeat((4 - (text.length % 4)) % 4)).replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

export async function setUpPush() {
  if (!("serviceWorker" in navigator && "PushManager" in window && "Notification" in window)) return;
  try {
    const { publicKey } = await api("GET", "/push/vapid-public-key");  // 404: push is off
    const registration = await navigator.serviceWorker.ready;
    const existing = await registration.pushManager.getSubscription();
    // Re-sent on every start: idempotent, and it moves the device to whoever is logged in.
    if (existing) await api("POST", "/push/subscriptions", existing.toJSON());
    else if (Notification.permission !== "denied") showPushButton(registration, publicKey);
  } catch (error) {
    console.warn("web push unavailable", error);
  }
}

function showPushButton(registration, publicKey) {
  if (document.getElementById("enable-push")) return;
  const button = document.createElement("button");
  button.id = "enable-push";
  button.type = "button";
  button.className = "secondary";
  button.textContent = "Notify me";
  button.title = "Show notifications on this device when the app is in the background";
  button.addEventListener("click", async () => {
    try {
      if (await Notification.requestPermission() !== "granted") return;
      const subscription = await registration.pushManager.subscribe({
        userVisibleOnly: true, applicationServerKey: base64UrlToBytes(publicKey),
      });
      await api("POST", "/push/subscriptions", subscription.toJSON());
      button.remove();
    } catch (error) {
      console.warn("could not enable notifications", error);
    }
  });
  document.getElementById("logout").before(button);
}

export function forgetPushSubscription(token) {
  // The device stops receiving this user's notifications once they log out.
  document.getElementById("enable-push")?.remove();
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
}
