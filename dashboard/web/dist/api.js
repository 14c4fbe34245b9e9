// The admin API client (/api/v1, see dashboard/API.md) and the signed-in session.
// Invariants: the bearer token lives in sessionStorage under TOKEN_KEY only (never a cookie, never
// localStorage) and is sent only as an Authorization header to this origin (or, for the WebSocket, as the
// "bearer.<token>" subprotocol).

export const TOKEN_KEY = 'floodgate-token';

// session is who the page acts as. mode: "none" | "token" | "oidc" | "legacy" (a server without /api/v1).
export const session = {
  mode: 'unknown',
  subject: '',
  role: '', // "admin" | "viewer"
  expiresAt: '',
  oidc: null,
  get api() { return this.mode !== 'legacy' && this.mode !== 'unknown'; },
  get admin() { return this.role === 'admin'; },
};

export function getToken() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

export function setToken(t) {
  try { sessionStorage.setItem(TOKEN_KEY, t); } catch { /* storage disabled: the sign-in cannot last */ }
}

export function clearToken() {
  try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* ignore */ }
}

let unauthorized = null;

// onUnauthorized sets what happens when an API call answers 401 (the session expired or was revoked).
export function onUnauthorized(fn) { unauthorized = fn; }

// problemOf turns a failed response body into a problem object ({title, status, detail, errors, ...}).
function problemOf(status, data, text) {
  if (data && typeof data === 'object' && !Array.isArray(data)) return { status, ...data };
  const detail = (text || '').trim().slice(0, 300);
  return { status, title: status ? `HTTP ${status}` : 'network error', detail };
}

// slug is the last part of a problem's type URI ("precondition-failed").
export const slug = (p) => (p && typeof p.type === 'string' ? p.type.slice(p.type.lastIndexOf('/') + 1) : '');

// problemText is one human line for a problem.
export function problemText(p) {
  if (!p) return 'unknown error';
  const head = p.title || (p.status ? `HTTP ${p.status}` : 'error');
  return p.detail && p.detail !== head ? `${head}: ${p.detail}` : head;
}

// request calls the admin API. opts: json (a value sent as JSON), text + contentType (a raw body),
// ifMatch (a version, sent as a quoted ETag), query (an object), auth (default true: send the token and
// report a 401 to onUnauthorized unless expire is false). It never throws: the result is {ok, status, data, problem, etag}.
export async function request(method, path, opts = {}) {
  const headers = { Accept: 'application/json' };
  const token = opts.auth === false ? '' : getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  let body;
  if (opts.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.json);
  } else if (opts.text !== undefined) {
    headers['Content-Type'] = opts.contentType || 'text/plain';
    body = opts.text;
  }
  if (opts.ifMatch !== undefined && opts.ifMatch !== null && opts.ifMatch !== '') headers['If-Match'] = `"${opts.ifMatch}"`;
  let url = path;
  if (opts.query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
    const s = q.toString();
    if (s) url += `?${s}`;
  }
  let res;
  try {
    res = await fetch(url, { method, headers, body, cache: 'no-store', credentials: 'omit', redirect: 'error' });
  } catch (e) {
    return { ok: false, status: 0, data: null, problem: { status: 0, title: 'network error', detail: String(e && e.message || e) } };
  }
  const ctype = res.headers.get('Content-Type') || '';
  let data = null;
  let text = '';
  try {
    if (ctype.includes('json')) data = await res.json();
    else text = await res.text();
  } catch { /* an empty or broken body: status says enough */ }
  const out = { ok: res.ok, status: res.status, data: res.ok ? data : null, etag: res.headers.get('ETag') || '' };
  if (!res.ok) {
    out.problem = problemOf(res.status, data, text);
    if (res.status === 401 && opts.auth !== false && opts.expire !== false && token && unauthorized) unauthorized(out.problem);
  }
  return out;
}
