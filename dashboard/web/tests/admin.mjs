// Browser test of the dashboard's sign-in and limits administration (playwright-core + Debian Chromium).
//
//   node tests/admin.mjs token <base-url> <screenshot-dir>   # HS256 tokens: admin edits, viewer, signed out
//   node tests/admin.mjs oidc  <base-url> <screenshot-dir>   # the OIDC authorization code + PKCE sign-in
//
// Run by cmd/floodgate/browser_admin_test.go against a real in-process Floodgate. Environment:
//   token: FLOODGATE_ADMIN_TOKEN, FLOODGATE_VIEWER_TOKEN, FLOODGATE_EXPIRED_TOKEN, FLOODGATE_ADMIN_SUBJECT
//   oidc:  FLOODGATE_OIDC_SUBJECT (who the test issuer logs in)
// Protocol on stdio: stdout carries one JSON object per line ({"step":..,"ok":true,..}); a line
// "ASK <json>" asks the driver to act ({"op":"rls","domain","key","value","want"}: send RLS requests until
// OVER_LIMIT), and the driver answers with one JSON line on stdin ({"ok_count":n,"over_limit":bool}).
// Exit status 0 means every assertion held; on failure the last line is {"step":..,"ok":false,"error":..}.

import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const [scenario, base, shotDir] = process.argv.slice(2);
if (!['token', 'oidc'].includes(scenario) || !base || !shotDir) {
  console.error('usage: node tests/admin.mjs token|oidc <base-url> <screenshot-dir>');
  process.exit(2);
}
mkdirSync(shotDir, { recursive: true });

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class Failure extends Error {}
function check(cond, msg) { if (!cond) throw new Failure(msg); }

// ---------- the driver (stdin answers) ----------

const answers = [];
let answerWaiter = null;
createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line.trim()) return;
  answers.push(line);
  if (answerWaiter) { answerWaiter(); answerWaiter = null; }
});
async function ask(req, timeoutMs = 20000) {
  process.stdout.write(`ASK ${JSON.stringify(req)}\n`);
  const deadline = Date.now() + timeoutMs;
  while (!answers.length) {
    check(Date.now() < deadline, `no answer from the driver for ${JSON.stringify(req)}`);
    await Promise.race([new Promise((r) => { answerWaiter = r; }), sleep(200)]);
  }
  return JSON.parse(answers.shift());
}

async function poll(what, fn, timeoutMs = 5000, everyMs = 50) {
  const start = Date.now();
  let last;
  while (Date.now() - start <= timeoutMs) {
    last = await fn();
    if (last) return last;
    await sleep(everyMs);
  }
  throw new Failure(`${what}: not within ${timeoutMs} ms (last: ${JSON.stringify(last)})`);
}

// ---------- pages ----------

// Expected refusals (a 401 for the expired token, 400/412 for the invalid and stale edits) are logged by
// Chromium as "Failed to load resource"; any other console error fails the test.
const EXPECTED_STATUS = /Failed to load resource: the server responded with a status of (400|401|403|409|412) /;
const consoleErrors = [];
let step = 'launch';
let browser;

async function newPage(opts = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1366, height: 900 }, colorScheme: 'light', acceptDownloads: true, ...opts });
  const page = await ctx.newPage();
  page.setDefaultTimeout(10000);
  page.on('console', (m) => { if (m.type() === 'error' && !EXPECTED_STATUS.test(m.text())) consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  const apiCalls = [];
  page.on('request', (r) => { const u = new URL(r.url()); if (u.pathname.startsWith('/api/')) apiCalls.push(`${r.method()} ${u.pathname}`); });
  return { ctx, page, sockets, apiCalls };
}

async function shot(page, name, fullPage = true) {
  const path = join(shotDir, `${name}.png`);
  await page.screenshot({ path, fullPage });
  emit({ step, screenshot: path });
}

// shotBoth takes a screenshot in the current theme and one in the other, then restores the theme.
// (A modal dialog blocks the toggle button: then the class is switched directly.)
async function shotBoth(page, name) {
  const dark = () => page.evaluate(() => document.documentElement.classList.contains('dark'));
  const toggle = async () => {
    if (await page.evaluate(() => !!document.querySelector('dialog[open]'))) {
      await page.evaluate(() => document.documentElement.classList.toggle('dark'));
    } else {
      await page.click('#theme-toggle');
    }
    await sleep(150);
  };
  const first = (await dark()) ? 'dark' : 'light';
  await shot(page, `${name}-${first}`);
  await toggle();
  await shot(page, `${name}-${first === 'dark' ? 'light' : 'dark'}`);
  await toggle();
}

const visible = (page, sel) => page.evaluate((s) => {
  const e = document.querySelector(s);
  return !!e && !e.closest('[hidden]') && !e.closest('.hidden') && e.getClientRects().length > 0;
}, sel);
const text = (page, sel) => page.evaluate((s) => document.querySelector(s)?.textContent ?? null, sel);
const count = (page, sel) => page.locator(sel).count();

async function showPane(page, name) {
  await page.click(`#tab-${name}`);
  await page.waitForSelector(`#pane-${name}:not(.hidden)`);
}

async function signInWithToken(page, token) {
  await page.waitForSelector('#signin:not([hidden])');
  await page.fill('#signin-token', token);
  await page.click('#signin-submit');
}

const connected = (page) => page.waitForSelector('#conn[data-state="connected"]', { timeout: 10000 });
const version = async (page) => Number(await text(page, '#cfg-version'));

async function waitToast(page, re) {
  return poll(`toast matching ${re}`, async () => {
    const toasts = await page.evaluate(() => [...document.querySelectorAll('#toasts .toast')].map((t) => t.textContent));
    return toasts.find((t) => re.test(t));
  }, 5000);
}

async function api(method, path, token, body) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await res.json(); } catch { /* no body */ }
  return { status: res.status, data };
}

// ruleCell is the text of one cell (by header name) of a descriptor rule's row.
const ruleCell = (page, rule, header) => page.evaluate(([r, h]) => {
  const tr = document.querySelector(`#cfg-domains tr[data-rule="${r}"]`);
  if (!tr) return null;
  const ths = [...tr.closest('table').querySelectorAll('thead th')].map((th) => th.textContent.trim().toLowerCase());
  return tr.children[ths.indexOf(h.toLowerCase())]?.textContent ?? null;
}, [rule, header]);

// ---------- scenario "token" ----------

async function tokenScenario() {
  const adminToken = process.env.FLOODGATE_ADMIN_TOKEN;
  const viewerToken = process.env.FLOODGATE_VIEWER_TOKEN;
  const expiredToken = process.env.FLOODGATE_EXPIRED_TOKEN;
  const adminSubject = process.env.FLOODGATE_ADMIN_SUBJECT;
  check(adminToken && viewerToken && expiredToken && adminSubject, 'FLOODGATE_{ADMIN,VIEWER,EXPIRED}_TOKEN and FLOODGATE_ADMIN_SUBJECT must be set');

  // (c) No token: the sign-in panel, and nothing else — no WebSocket, no data request, no data in the DOM.
  step = 'signed-out';
  let { ctx, page, sockets, apiCalls } = await newPage();
  const resp = await page.goto(`${base}/#config`);
  check(resp && resp.ok(), `GET / answered ${resp && resp.status()}`);
  await page.waitForSelector('#signin:not([hidden])');
  await sleep(800); // long enough for a stray WebSocket or fetch to show up
  check(await visible(page, '#signin-token'), 'no token field on the sign-in panel');
  check(!(await visible(page, '#pane-config')), 'the Configuration pane shows while signed out');
  check(!(await visible(page, '#signin-oidc')), 'an OIDC button shows in token mode');
  check((await count(page, '#cfg-domains section[data-domain]')) === 0, 'limits rendered while signed out');
  check((await count(page, '#audit-rows tr')) === 0, 'audit rows rendered while signed out');
  check((await text(page, '#cfg-version')) === '—', 'a version shows while signed out');
  check(sockets.length === 0, `WebSocket opened while signed out: ${sockets}`);
  check(apiCalls.every((c) => c === 'GET /api/v1/auth'), `API calls while signed out: ${apiCalls}`);
  await shotBoth(page, 'signin');

  step = 'signin-refused';
  await signInWithToken(page, 'not a token');
  check(/not a JWT/.test(await text(page, '#signin-reason')), `garbage token: reason ${await text(page, '#signin-reason')}`);
  await signInWithToken(page, expiredToken);
  await poll('expired token refused with a reason', async () => /refused/i.test(await text(page, '#signin-reason') || ''), 5000);
  check(await visible(page, '#signin'), 'sign-in panel gone after a refused token');
  check(sockets.length === 0, 'WebSocket opened with a refused token');
  check(!(await page.evaluate(() => sessionStorage.getItem('floodgate-token'))), 'refused token kept in sessionStorage');
  emit({ step, ok: true, reason: await text(page, '#signin-reason') });
  await shot(page, 'signin-refused-light');

  // (a) The admin signs in by pasting a token.
  step = 'admin-signin';
  await signInWithToken(page, adminToken);
  await page.waitForSelector('#panes:not([hidden])');
  await connected(page);
  check((await text(page, '#session-subject')) === adminSubject, `subject ${await text(page, '#session-subject')}, want ${adminSubject}`);
  check((await text(page, '#session-role')) === 'admin', `role ${await text(page, '#session-role')}, want admin`);
  check(await visible(page, '#sign-out'), 'no Sign out button');
  const storage = await page.evaluate(() => ({ session: sessionStorage.getItem('floodgate-token'), local: localStorage.getItem('floodgate-token'), cookie: document.cookie }));
  check(storage.session === adminToken && !storage.local && !storage.cookie, `token storage: ${JSON.stringify({ ...storage, session: !!storage.session })}`);
  check(sockets.length === 1, `got ${sockets.length} WebSockets, want 1`);
  emit({ step, ok: true });

  step = 'config-admin';
  await showPane(page, 'config');
  await page.waitForSelector('#cfg-domains tr[data-rule="e2e.user"] [data-action=edit]');
  const v0 = await version(page);
  check(Number.isInteger(v0) && v0 >= 1, `version ${v0}`);
  check((await text(page, '#cfg-source')) === 'api', `source ${await text(page, '#cfg-source')}, want api`);
  check((await ruleCell(page, 'e2e.user', 'limit')) === '3', `e2e.user limit ${await ruleCell(page, 'e2e.user', 'limit')}, want 3`);
  await page.waitForSelector(`#cfg-history li[data-version="${v0}"]`);
  emit({ step, ok: true, version: v0 });

  // Edit e2e.user: 3/hour → 5/hour. Preview shows the diff and stores nothing.
  step = 'edit-preview';
  await page.click('#cfg-domains tr[data-rule="e2e.user"] [data-action=edit]');
  await page.waitForSelector('#ed-requests_per_unit');
  check((await page.inputValue('#ed-requests_per_unit')) === '3', 'editor does not start from the current limit');
  check((await page.inputValue('#ed-unit')) === 'hour', `unit ${await page.inputValue('#ed-unit')}, want hour`);
  check((await page.inputValue('#ed-algorithm')) === 'fixed_window', 'algorithm is not fixed_window');
  check(!(await visible(page, '#ed-burst')), 'burst shows for a fixed window');
  await page.selectOption('#ed-algorithm', 'token_bucket');
  check(await visible(page, '#ed-burst'), 'burst hidden for a token bucket');
  await page.selectOption('#ed-algorithm', 'fixed_window');
  await page.fill('#ed-requests_per_unit', '5');
  await page.click('#ed-preview');
  await page.waitForSelector('#ed-diff:not(.hidden) .diff-item');
  const diff = await text(page, '#ed-diff');
  check(/e2e\.user/.test(diff) && /3/.test(diff) && /5/.test(diff) && /→/.test(diff), `diff text: ${diff}`);
  check((await version(page)) === v0, 'the preview changed the version');
  const stored = await api('GET', '/api/v1/limits', adminToken);
  check(stored.status === 200 && Number(stored.data.version) === v0, `after the preview GET /api/v1/limits: ${stored.status} version ${stored.data?.version}`);
  emit({ step, ok: true, diff });
  await shotBoth(page, 'edit-preview');

  step = 'edit-invalid';
  await page.fill('#ed-requests_per_unit', '2000000000000000'); // above the limiter's maximum: the server refuses
  await page.click('#ed-preview');
  await page.waitForSelector('#ed-requests_per_unit-error:not(.hidden)');
  const fieldErr = await text(page, '#ed-requests_per_unit-error');
  check(fieldErr.length > 0, 'empty field error');
  check((await page.getAttribute('#ed-requests_per_unit', 'aria-invalid')) === 'true', 'field not marked invalid');
  emit({ step, ok: true, error: fieldErr });
  await shotBoth(page, 'edit-error');

  step = 'edit-apply';
  await page.fill('#ed-requests_per_unit', '5');
  await page.click('#ed-apply');
  await waitToast(page, new RegExp(`^version ${v0 + 1} applied$`));
  await poll('version shown increments', async () => (await version(page)) === v0 + 1, 5000);
  await poll('e2e.user shows the new limit', async () => (await ruleCell(page, 'e2e.user', 'limit')) === '5', 5000);
  check(!(await visible(page, '#ed-requests_per_unit')), 'the editor stayed open after Apply');
  emit({ step, ok: true, version: v0 + 1 });

  step = 'rls-new-limit';
  const r1 = await ask({ op: 'rls', domain: 'e2e', key: 'user', value: 'carol', want: 5 });
  check(r1.ok_count === 5 && r1.over_limit, `RLS for carol: ${r1.ok_count} OK then over_limit=${r1.over_limit}, want 5 then OVER_LIMIT`);
  emit({ step, ok: true, ...r1 });

  // The Audit pane shows the change as its own row, the kind filter separates it, export includes it.
  step = 'audit-change';
  await showPane(page, 'audit');
  const changeRow = `#audit-rows tr[data-kind=config_change]`;
  await poll('config change row in the Audit pane', async () => {
    const rows = await page.evaluate((s) => [...document.querySelectorAll(s)].map((tr) => tr.textContent), changeRow);
    return rows.find((t) => t.includes(adminSubject) && t.includes(`v${v0} → v${v0 + 1}`));
  }, 5000);
  await poll('carol\'s denial in the Audit pane', async () => (await count(page, '#audit-rows tr[data-kind=denial]')) >= 1, 3000);
  await page.selectOption('#f-kind', 'config_change');
  const kinds = await page.evaluate(() => [...document.querySelectorAll('#audit-rows tr')].map((tr) => tr.dataset.kind));
  check(kinds.length >= 1 && kinds.every((k) => k === 'config_change'), `kind filter config_change shows ${kinds}`);
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#export-ndjson')]);
  const nd = readFileSync(await dl.path(), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  check(nd.length === kinds.length && nd.every((e) => e.kind === 'config_change' && e.change && e.change.actor === adminSubject),
    `NDJSON export of config changes: ${JSON.stringify(nd).slice(0, 300)}`);
  const [dlc] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
  const csv = readFileSync(await dlc.path(), 'utf8');
  check(/,kind,actor,action,version_before,version_after,summary\r\n/.test(csv) && csv.includes(adminSubject), 'CSV export lacks the change columns');
  await shotBoth(page, 'audit-change');
  await page.selectOption('#f-kind', 'denial');
  const dk = await page.evaluate(() => [...document.querySelectorAll('#audit-rows tr')].map((tr) => tr.dataset.kind));
  check(dk.length >= 1 && dk.every((k) => k === 'denial'), `kind filter denial shows ${dk}`);
  await page.selectOption('#f-kind', '');
  emit({ step, ok: true });

  // A change made elsewhere while the editor is open: the editor says so and offers a reload.
  step = 'conflict';
  await showPane(page, 'config');
  await page.click('#cfg-domains tr[data-rule="e2e.user"] [data-action=edit]');
  await page.waitForSelector('#ed-requests_per_unit');
  const other = await api('PATCH', '/api/v1/limits/e2e/rules/per_client', adminToken, { requests_per_unit: 4 });
  check(other.status === 200, `concurrent PATCH per_client: ${other.status} ${JSON.stringify(other.data)}`);
  await page.fill('#ed-requests_per_unit', '6');
  await page.click('#ed-preview');
  await page.waitForSelector('#ed-msg[data-kind=conflict]');
  const note = await text(page, '#ed-msg');
  check(new RegExp(`changed meanwhile \\(now version ${v0 + 2}\\)`).test(note), `conflict note: ${note}`);
  await shot(page, 'edit-conflict-light');
  await page.click('#ed-msg [data-action=reload]');
  await poll('reload shows the newer version', async () => (await version(page)) === v0 + 2, 5000);
  check(!(await visible(page, '#ed-requests_per_unit')), 'the editor stayed open after Reload');
  check((await ruleCell(page, 'e2e.user', 'limit')) === '5', 'the stale edit was applied');
  emit({ step, ok: true, note });

  // Edit YAML: preview a change, see a validation error with its line, apply.
  step = 'yaml';
  await page.click('#cfg-domains section[data-domain=e2e] [data-action=edit-yaml]');
  await page.waitForSelector('#yaml-text');
  const yaml = await page.inputValue('#yaml-text');
  check(/domain: e2e/.test(yaml) && /requests_per_unit: 4/.test(yaml), `YAML of e2e: ${yaml}`);
  await page.fill('#yaml-text', yaml.replace('unit: hour', 'unit: fortnight'));
  await page.click('#yaml-preview');
  await page.waitForSelector('#yaml-msg:not(.hidden) .error-item');
  const yerr = await text(page, '#yaml-msg');
  check(/line \d+/.test(yerr) && /unit/.test(yerr), `YAML error list: ${yerr}`);
  await shotBoth(page, 'yaml-error');
  await page.fill('#yaml-text', yaml.replace('requests_per_unit: 4', 'requests_per_unit: 7'));
  await page.click('#yaml-preview');
  await page.waitForSelector('#yaml-diff:not(.hidden) .diff-item');
  const ydiff = await text(page, '#yaml-diff');
  check(/per_client/.test(ydiff) && /7/.test(ydiff), `YAML diff: ${ydiff}`);
  check((await version(page)) === v0 + 2, 'the YAML preview changed the version');
  await shot(page, 'yaml-preview-light');
  await page.click('#yaml-apply');
  await waitToast(page, new RegExp(`^version ${v0 + 3} applied$`));
  await poll('version after the YAML apply', async () => (await version(page)) === v0 + 3, 5000);
  emit({ step, ok: true });

  // History and rollback to the first version: the confirm dialog shows the diff.
  step = 'rollback';
  await page.waitForSelector(`#cfg-history li[data-version="${v0 + 3}"]`);
  const hist = await page.evaluate(() => [...document.querySelectorAll('#cfg-history li[data-version]')].map((li) => li.dataset.version));
  check(hist[0] === String(v0 + 3) && hist.includes(String(v0)), `history ${hist}`);
  check(/e2e\.user/.test(await text(page, `#cfg-history li[data-version="${v0 + 1}"]`)), 'history entry lacks its summary');
  check((await count(page, `#cfg-history li[data-version="${v0 + 3}"] [data-action=rollback]`)) === 0, 'rollback offered for the current version');
  await page.click(`#cfg-history li[data-version="${v0}"] [data-action=rollback]`);
  await page.waitForSelector('#dialog[open] .diff-item');
  const rdiff = await text(page, '#dialog-body');
  check(/e2e\.user/.test(rdiff) && /per_client/.test(rdiff), `rollback diff: ${rdiff}`);
  check((await version(page)) === v0 + 3, 'the rollback preview changed the version');
  await shotBoth(page, 'rollback-dialog');
  await page.click('#dialog-ok');
  await waitToast(page, new RegExp(`^version ${v0 + 4} applied \\(rollback to ${v0}\\)$`));
  await poll('version after the rollback', async () => (await version(page)) === v0 + 4, 5000);
  await poll('e2e.user back to 3', async () => (await ruleCell(page, 'e2e.user', 'limit')) === '3', 5000);
  emit({ step, ok: true });

  step = 'rls-rolled-back';
  const r2 = await ask({ op: 'rls', domain: 'e2e', key: 'user', value: 'dave', want: 3 });
  check(r2.ok_count === 3 && r2.over_limit, `RLS for dave: ${r2.ok_count} OK then over_limit=${r2.over_limit}, want 3 then OVER_LIMIT`);
  emit({ step, ok: true, ...r2 });

  step = 'replicas';
  await poll('a replica in sync on the current version', async () => page.evaluate((v) => [...document.querySelectorAll('#cfg-replicas tr[data-replica]')]
    .some((tr) => tr.textContent.includes('in sync') && tr.children[1].textContent === String(v)), v0 + 4), 8000, 250);
  emit({ step, ok: true });
  await shotBoth(page, 'config-admin');

  step = 'mobile';
  await page.setViewportSize({ width: 390, height: 844 });
  await page.click('#cfg-domains tr[data-rule="e2e.user"] [data-action=edit]');
  await page.waitForSelector('#ed-requests_per_unit');
  await sleep(200);
  const sw = await page.evaluate(() => document.documentElement.scrollWidth);
  const wide = await page.evaluate(() => [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > 391)
    .filter((e) => !e.closest('.overflow-x-auto')).slice(0, 5).map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`));
  check(sw <= 390, `Configuration with the editor open at 390 px: scrollWidth ${sw} > 390; wide: ${wide}`);
  check(await page.locator('#ed-apply').isVisible(), 'Apply not visible at 390 px');
  await shotBoth(page, 'edit-390');
  await page.click('#ed-cancel');
  await showPane(page, 'audit');
  await page.waitForSelector('#audit-rows tr[data-kind=config_change]');
  const swa = await page.evaluate(() => document.documentElement.scrollWidth);
  check(swa <= 390, `Audit pane with configuration changes at 390 px: scrollWidth ${swa} > 390`);
  await shotBoth(page, 'audit-390');
  await showPane(page, 'config');
  await page.setViewportSize({ width: 1366, height: 900 });
  emit({ step, ok: true });

  step = 'sign-out';
  await page.click('#sign-out');
  await page.waitForSelector('#signin:not([hidden])');
  check(!(await page.evaluate(() => sessionStorage.getItem('floodgate-token'))), 'token left in sessionStorage after Sign out');
  check((await count(page, '#cfg-domains section[data-domain]')) === 0, 'limits still rendered after Sign out');
  emit({ step, ok: true });

  // A token the server stops accepting mid-session (here: replaced by an expired one) ends the session at
  // the next API call: back to the sign-in panel with the reason.
  step = 'session-ends';
  await signInWithToken(page, adminToken);
  await page.waitForSelector('#cfg-domains section[data-domain=e2e] [data-action=edit-yaml]');
  await page.evaluate((t) => sessionStorage.setItem('floodgate-token', t), expiredToken);
  await page.click('#cfg-domains section[data-domain=e2e] [data-action=edit-yaml]');
  await page.waitForSelector('#signin:not([hidden])');
  await poll('the sign-in panel says why', async () => /session ended/i.test(await text(page, '#signin-reason') || ''), 5000);
  check(!(await page.evaluate(() => sessionStorage.getItem('floodgate-token'))), 'the refused token stayed in sessionStorage');
  check((await count(page, '#cfg-domains section[data-domain]')) === 0, 'limits still rendered after the session ended');
  emit({ step, ok: true, reason: await text(page, '#signin-reason') });
  await ctx.close();

  // (b) A viewer sees everything read-only: no edit, apply or rollback controls at all.
  step = 'viewer';
  ({ ctx, page, sockets } = await newPage({ colorScheme: 'dark' }));
  await page.goto(`${base}/#config`);
  await signInWithToken(page, viewerToken);
  await page.waitForSelector('#panes:not([hidden])');
  await connected(page);
  check((await text(page, '#session-role')) === 'viewer', `role ${await text(page, '#session-role')}, want viewer`);
  await page.waitForSelector('#cfg-domains tr[data-rule="e2e.user"]');
  await page.waitForSelector(`#cfg-history li[data-version="${v0 + 4}"]`);
  for (const sel of ['[data-action=edit]', '[data-action=edit-yaml]', '[data-action=rollback]', '#ed-apply', '#yaml-apply']) {
    check((await count(page, sel)) === 0, `viewer sees ${sel}`);
  }
  check(/viewer/.test(await text(page, '#cfg-mode')), `mode note for a viewer: ${await text(page, '#cfg-mode')}`);
  const denied = await api('PATCH', '/api/v1/limits/e2e/rules/e2e.user', viewerToken, { requests_per_unit: 9 });
  check(denied.status === 403, `viewer PATCH answered ${denied.status}, want 403`);
  await shotBoth(page, 'config-viewer');
  emit({ step, ok: true });
  await ctx.close();
}

// ---------- scenario "oidc" ----------

async function oidcScenario() {
  const subject = process.env.FLOODGATE_OIDC_SUBJECT;
  check(subject, 'FLOODGATE_OIDC_SUBJECT must be set');
  step = 'oidc-signin-panel';
  const { ctx, page, sockets } = await newPage();
  await page.goto(`${base}/#config`);
  await page.waitForSelector('#signin:not([hidden])');
  await page.waitForSelector('#signin-oidc');
  check(await visible(page, '#signin-oidc'), 'no OIDC sign-in button');
  const label = await text(page, '#signin-oidc');
  check(/^Sign in with 127\.0\.0\.1:\d+$/.test(label), `OIDC button: ${label}`);
  check(await visible(page, '#signin-token'), 'no token field beside the OIDC button');
  check(sockets.length === 0, 'WebSocket opened before the sign-in');
  await shotBoth(page, 'oidc-signin');
  emit({ step, ok: true, label });

  step = 'oidc-flow';
  await page.click('#signin-oidc');
  await page.waitForSelector('#panes:not([hidden])', { timeout: 15000 }).catch(async () => {
    throw new Failure(`not signed in after the OIDC round trip; sign-in reason: ${await text(page, '#signin-reason')}; url ${page.url()}`);
  });
  await poll('subject shown', async () => (await text(page, '#session-subject')) === subject, 5000);
  check((await text(page, '#session-role')) === 'admin', `role ${await text(page, '#session-role')}, want admin`);
  const loc = await page.evaluate(() => ({ search: location.search, hash: location.hash, path: location.pathname }));
  check(loc.search === '' && loc.hash === '#config' && loc.path === '/', `address after the sign-in: ${JSON.stringify(loc)}`);
  const st = await page.evaluate(() => Object.keys(sessionStorage).sort());
  check(JSON.stringify(st) === JSON.stringify(['floodgate-token']), `sessionStorage keys after the sign-in: ${st}`);
  await connected(page);
  await page.waitForSelector('#cfg-domains tr[data-rule="e2e.user"] [data-action=edit]');
  await shotBoth(page, 'oidc-signed-in');
  emit({ step, ok: true, subject });
  await ctx.close();
}

// ---------- main ----------

let code = 0;
const guard = setTimeout(() => { emit({ step, ok: false, error: 'timed out after 150 s' }); process.exit(1); }, 150000);
try {
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
  if (scenario === 'token') await tokenScenario();
  else await oidcScenario();
  step = 'console';
  check(consoleErrors.length === 0, `console errors: ${JSON.stringify(consoleErrors)}`);
  emit({ step: 'done', ok: true });
} catch (e) {
  code = 1;
  emit({ step, ok: false, error: e instanceof Failure ? e.message : String(e && e.stack || e), console_errors: consoleErrors });
} finally {
  clearTimeout(guard);
  if (browser) await browser.close().catch(() => {});
}
process.exit(code);
