// Sign-in: GET /api/v1/auth says how ("none", "token" or "oidc"); a pasted JWT or the OIDC authorization
// code flow with PKCE (S256) gives a bearer token, kept in sessionStorage; GET /api/v1/me says who it is.
// Nothing else of the page runs (no WebSocket, no data) until start's ready callback is called.
// Invariants: the PKCE verifier and state live in sessionStorage only for the round trip to the identity
// provider and are removed on return; the authorization code leaves the address bar (history.replaceState)
// before anything else happens.

import { $ } from './ui.js';
import { session, request, getToken, setToken, clearToken, onUnauthorized, problemText } from './api.js';

const VERIFIER_KEY = 'floodgate-oidc-verifier';
const STATE_KEY = 'floodgate-oidc-state';
const RETURN_KEY = 'floodgate-oidc-return'; // the hash (pane) to come back to
const REASON_KEY = 'floodgate-signin-reason'; // why the last session ended, shown once on the sign-in panel

let readyCallback = null;
let expiryTimer = null;

function b64url(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const randomString = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));

function httpURL(s) {
  try {
    const u = new URL(s);
    return u.protocol === 'https:' || u.protocol === 'http:' ? u : null;
  } catch {
    return null;
  }
}

// ---------- the sign-in panel ----------

function showSignIn(reason) {
  for (const id of ['boot', 'panes', 'nav', 'conn', 'session']) $(id).hidden = true;
  $('signin').hidden = false;
  const r = $('signin-reason');
  r.textContent = reason || '';
  r.classList.toggle('hidden', !reason);
  const oidc = session.mode === 'oidc' && session.oidc;
  $('signin-oidc-wrap').classList.toggle('hidden', !oidc);
  if (oidc) {
    const u = httpURL(session.oidc.issuer);
    $('signin-oidc').textContent = `Sign in with ${u ? u.host : session.oidc.issuer}`;
  }
  $('signin-token').value = '';
  const submit = $('signin-submit');
  submit.disabled = false;
  submit.className = oidc ? 'btn' : 'btn btn-primary'; // single sign-on is the main way when offered
}

function showApp() {
  for (const id of ['boot', 'signin']) $(id).hidden = true;
  for (const id of ['panes', 'nav', 'conn', 'session']) $(id).hidden = false;
  $('auth-none').hidden = session.mode !== 'none';
  const signedIn = session.mode === 'token' || session.mode === 'oidc';
  $('session-user').hidden = !signedIn;
  $('sign-out').hidden = !signedIn;
  $('session-subject').textContent = session.subject;
  $('session-subject').title = session.subject;
  const role = $('session-role');
  role.textContent = session.role;
  role.className = `badge ${session.role === 'admin' ? 'badge-admin' : 'badge-viewer'}`;
}

// expire ends the session (the token was refused): back to the sign-in panel with the reason. The page is
// reloaded so that nothing of the previous session stays in memory or in the DOM.
export function expire(reason) {
  clearToken();
  try { sessionStorage.setItem(REASON_KEY, reason); } catch { /* ignore */ }
  location.reload();
}

function signOut() {
  try { sessionStorage.clear(); } catch { /* ignore */ }
  location.reload();
}

// ---------- verifying a token ----------

function scheduleExpiry() {
  clearTimeout(expiryTimer);
  const at = Date.parse(session.expiresAt);
  if (!Number.isFinite(at)) return;
  const ms = Math.min(Math.max(at - Date.now() + 1000, 1000), 2 ** 31 - 1);
  // Ends when it fires (once) or the page unloads.
  expiryTimer = setTimeout(checkSession, ms);
}

// checkSession asks /api/v1/me whether the token is still good; a 401 ends the session.
export async function checkSession() {
  if (!getToken()) return true;
  const r = await request('GET', '/api/v1/me', { expire: false });
  if (r.status === 401) {
    expire(`Your session ended: ${problemText(r.problem)}`);
    return false;
  }
  if (r.ok) scheduleExpiry();
  return true;
}

async function verify() {
  const r = await request('GET', '/api/v1/me', { expire: false });
  if (!r.ok) {
    clearToken();
    if (r.status === 401) showSignIn(`The server refused the token: ${problemText(r.problem)}`);
    else if (r.status === 403) showSignIn('This token grants no Floodgate role (it needs viewer or admin).');
    else showSignIn(`Could not check the token: ${problemText(r.problem)}`);
    return;
  }
  session.subject = String(r.data?.subject || '');
  session.role = r.data?.role === 'admin' ? 'admin' : 'viewer';
  session.expiresAt = r.data?.expires_at || '';
  onUnauthorized((p) => expire(`Your session ended: ${problemText(p)}`));
  scheduleExpiry();
  ready();
}

function ready() {
  showApp();
  const cb = readyCallback;
  readyCallback = null;
  if (cb) cb(session);
}

// ---------- OIDC authorization code + PKCE ----------

async function beginOIDC() {
  const o = session.oidc || {};
  const authz = httpURL(o.authorization_endpoint);
  if (!authz) { showSignIn('The server gave no usable authorization endpoint.'); return; }
  if (!window.crypto || !crypto.subtle) {
    showSignIn('Single sign-on needs a secure page (https, or http on localhost).');
    return;
  }
  const verifier = randomString(32);
  const state = randomString(16);
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  try {
    sessionStorage.setItem(VERIFIER_KEY, verifier);
    sessionStorage.setItem(STATE_KEY, state);
    sessionStorage.setItem(RETURN_KEY, location.hash);
  } catch {
    showSignIn('Single sign-on needs session storage, which this browser refuses.');
    return;
  }
  const q = authz.searchParams;
  q.set('response_type', 'code');
  q.set('client_id', o.client_id || '');
  q.set('redirect_uri', location.origin + location.pathname);
  q.set('scope', o.scope || 'openid');
  q.set('state', state);
  q.set('code_challenge', b64url(new Uint8Array(digest)));
  q.set('code_challenge_method', 'S256');
  location.assign(authz.toString());
}

// completeOIDC handles the return from the identity provider (?code&state or ?error); it returns an error
// text for the sign-in panel, or '' when a token was stored.
async function completeOIDC(q) {
  const take = (k) => { let v = null; try { v = sessionStorage.getItem(k); sessionStorage.removeItem(k); } catch { /* ignore */ } return v; };
  const verifier = take(VERIFIER_KEY);
  const wantState = take(STATE_KEY);
  const back = take(RETURN_KEY) || location.hash;
  history.replaceState(null, '', location.pathname + back); // the code must not stay in the address bar
  if (q.get('error')) {
    const d = q.get('error_description');
    return `The identity provider refused the sign-in: ${q.get('error')}${d ? ` (${d})` : ''}`;
  }
  if (!wantState || !verifier || q.get('state') !== wantState) {
    return 'The sign-in answer does not belong to this tab (state mismatch). Try again.';
  }
  const o = session.oidc || {};
  const tokenURL = httpURL(o.token_endpoint);
  if (!tokenURL) return 'The server gave no usable token endpoint.';
  const form = new URLSearchParams({
    grant_type: 'authorization_code',
    code: q.get('code') || '',
    redirect_uri: location.origin + location.pathname,
    client_id: o.client_id || '',
    code_verifier: verifier,
  });
  let res;
  let body = null;
  try {
    res = await fetch(tokenURL.toString(), {
      method: 'POST', body: form, credentials: 'omit', cache: 'no-store',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
    });
    body = await res.json().catch(() => null);
  } catch (e) {
    return `Could not reach the identity provider's token endpoint: ${e && e.message || e}`;
  }
  if (!res.ok || !body || typeof body.access_token !== 'string' || !body.access_token) {
    const why = body && (body.error_description || body.error);
    return `The identity provider issued no token (HTTP ${res.status}${why ? `: ${why}` : ''}).`;
  }
  setToken(body.access_token);
  return '';
}

// ---------- start ----------

function wire() {
  $('signin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const t = $('signin-token').value.trim().replace(/^bearer\s+/i, '');
    if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/.test(t)) {
      showSignIn('That is not a JWT: three base64url parts separated by dots (header.payload.signature).');
      return;
    }
    $('signin-submit').disabled = true;
    setToken(t);
    await verify();
  });
  $('signin-oidc').addEventListener('click', () => { beginOIDC(); });
  $('sign-out').addEventListener('click', signOut);
}

// start finds out how to sign in and calls ready(session) once the page may load its data.
export async function start(onReady) {
  readyCallback = onReady;
  wire();
  let reason = '';
  try { reason = sessionStorage.getItem(REASON_KEY) || ''; sessionStorage.removeItem(REASON_KEY); } catch { /* ignore */ }

  const r = await request('GET', '/api/v1/auth', { auth: false });
  if (r.status === 404) { // a server without the admin API: the read-only /ws view only
    session.mode = 'legacy';
    session.role = 'viewer';
    ready();
    return;
  }
  if (!r.ok) {
    session.mode = 'token';
    showSignIn(`The server did not say how to sign in: ${problemText(r.problem)}. Reload to try again.`);
    return;
  }
  session.mode = ['none', 'token', 'oidc'].includes(r.data?.mode) ? r.data.mode : 'token';
  session.oidc = r.data?.oidc || null;
  if (session.mode === 'none') {
    const me = await request('GET', '/api/v1/me', { auth: false });
    session.subject = me.ok ? String(me.data?.subject || 'anonymous') : 'anonymous';
    session.role = me.ok && me.data?.role === 'admin' ? 'admin' : 'viewer';
    ready();
    return;
  }
  const q = new URLSearchParams(location.search);
  if (session.mode === 'oidc' && (q.has('code') || q.has('error'))) {
    reason = await completeOIDC(q) || reason;
  }
  if (!getToken()) {
    showSignIn(reason);
    return;
  }
  await verify();
}
