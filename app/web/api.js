// REST and the session: tokens in localStorage (shared by the tabs of a profile), renewed
// before they expire, one tab at a time.

const SESSION_KEY = "family.session";
const REFRESH_LOCK = "family.refresh";
// An access token is renewed this long before it expires.
const RENEW_MARGIN_MS = 60_000;
const LIST_PAGE_LIMIT = 500;  // rows per page of a list endpoint (the most the API gives)

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export const session = {
  current: loadSession(),  // {accessToken, expiresAt, refreshToken, sessionId, user}
  renewTimer: null,
  // Called when the session ends (refused, revoked): the app goes back to the log-in form.
  onEnded: (notice) => {},
  // Called with the new access token, for the open socket.
  onRenewed: (token) => {},
};

function loadSession() {
  try {
    return JSON.parse(localStorage.getItem(SESSION_KEY) || "null");
  } catch {
    return null;
  }
}

export function saveSession(tokenResponse) {
  session.current = {
    accessToken: tokenResponse.accessToken,
    expiresAt: Date.now() + tokenResponse.expiresIn * 1000,
    refreshToken: tokenResponse.refreshToken,
    sessionId: tokenResponse.sessionId,
    user: tokenResponse.user,
  };
  localStorage.setItem(SESSION_KEY, JSON.stringify(session.current));
  scheduleRenewal();
}

export function clearSession() {
  clearTimeout(session.renewTimer);
  session.current = null;
  localStorage.removeItem(SESSION_KEY);
}

export function scheduleRenewal() {
  clearTimeout(session.renewTimer);
  const due = Math.max(session.current.expiresAt - Date.now() - RENEW_MARGIN_MS, 1000);
  session.renewTimer = setTimeout(renewTokens, due);
}

// New tokens for this session; false when it has ended. A refresh token is good for one use
// (a second use ends the session), so this browser's tabs take turns, and a tab adopts what
// another tab renewed in the meantime instead of spending the token again.
export async function renewTokens() {
  const sessionId = session.current?.sessionId;
  if (!sessionId) return false;
  const renewed = await navigator.locks.request(REFRESH_LOCK, async () => {
    const stored = loadSession();
    if (stored?.sessionId !== sessionId) return null;
    if (stored.accessToken !== session.current.accessToken
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
  if (session.current?.sessionId !== sessionId) return false;  // logged out meanwhile
  if (!renewed) {
    if (navigator.onLine) session.onEnded("Your session has ended. Please log in again.");
    return false;
  }
  saveSession(renewed);
  session.onRenewed(renewed.accessToken);
  return true;
}

// `onResponse` sees the raw response first (e.g. for its headers). An expired access token is
// renewed once and the request sent again; any other 401 ends the session here.
export async function api(method, path, body, onResponse, renewed = false) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const token = session.current?.accessToken;
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
    session.onEnded("Your session has ended. Please log in again.");
  }
  throw new ApiError(response.status, error.code ?? "http_error", describeError(error, response),
    error.details);
}

// Every row of a list endpoint: its pages in order, following X-Next-Cursor to the last one.
export async function apiList(path) {
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
