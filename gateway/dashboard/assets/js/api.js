// The documented HTTP API (docs/http-api.md), from the page's own origin.

const store = window.sessionStorage;
const KEY = 'herald.apiKey';

/** The API key of this tab, or "". */
export function apiKey() { return store.getItem(KEY) || ''; }

/** Remembers the key for this tab only (sessionStorage). */
export function setApiKey(k) { if (k) store.setItem(KEY, k); else store.removeItem(KEY); }

/** An error answer of the API: status, code and the server's message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A path segment, percent-encoded ('/' in topic names becomes %2F). */
export const seg = (s) => encodeURIComponent(s);

/**
 * Calls the API and returns the decoded JSON answer; throws ApiError on
 * 4xx/5xx. The key goes in the Authorization header.
 */
export async function api(path, { method = 'GET', body, contentType, accept = 'application/json', text = false } = {}) {
  const headers = { Accept: accept };
  const k = apiKey();
  if (k) headers.Authorization = 'Bearer ' + k;
  if (body !== undefined && typeof body !== 'string') {
    body = JSON.stringify(body);
    contentType = contentType || 'application/json';
  }
  if (contentType) headers['Content-Type'] = contentType;
  let res;
  try {
    res = await fetch(path, { method, headers, body, cache: 'no-store', credentials: 'omit', redirect: 'error' });
  } catch (e) {
    throw new ApiError(0, 'network', 'the server did not answer (' + e.message + '); is herald serve running?');
  }
  const raw = await res.text();
  if (!res.ok) {
    let code = 'http_' + res.status, msg = res.statusText || 'error ' + res.status;
    try { const j = JSON.parse(raw); code = j.error.code; msg = j.error.message; } catch { /* not JSON */ }
    throw new ApiError(res.status, code, msg);
  }
  if (text) return raw;
  return raw ? JSON.parse(raw) : null;
}

/**
 * Opens an SSE stream. EventSource cannot send headers, so the key goes in
 * the documented access_token query parameter (GET only).
 */
export function stream(path, params = {}) {
  const u = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '' && v !== false) u.searchParams.set(k, v);
  const k = apiKey();
  if (k) u.searchParams.set('access_token', k);
  return new EventSource(u.pathname + u.search);
}

/**
 * What the key may do, found by asking the API: {auth: "off"|"key"|"none",
 * admin, global, error}. "none": the server wants a key and none (or a wrong
 * one) was given.
 */
export async function probe() {
  const a = { auth: apiKey() ? 'key' : 'off', admin: false, global: false, error: null };
  try {
    await api('/v1/topics');
    a.admin = true;
  } catch (e) {
    if (e.status === 401) { a.auth = 'none'; a.error = e.message; return a; }
    if (e.status !== 403) { a.error = e.message; return a; }
  }
  if (a.admin) {
    try { await api('/v1/health'); a.global = true; } catch (e) { if (e.status !== 403) a.error = e.message; }
  }
  return a;
}
