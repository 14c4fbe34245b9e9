// Browser test of the Floodgate dashboard (playwright-core + Debian Chromium).
//
//   node tests/dashboard.mjs <base-url> <screenshot-dir>
//
// Run by cmd/floodgate/browser_test.go against a real in-process Floodgate. Protocol on stdio:
//   stdout: one JSON object per line ({"step":..,"ok":true,..}); the line READY-FOR-DENIALS <phase> asks
//           the driver to produce real denials for <phase> ("main", then "paused").
//   stdin:  after each READY line, the driver answers with one JSON line describing what it sent:
//           {"sent":N, "filters":{"text":"..","text_rows":n,"rule":"..","rule_rows":n,"client":"..","client_rows":n}}
//           ("filters" only for phase "main").
// Exit status 0 means every assertion held; on failure the last line is {"step":..,"ok":false,"error":..}.

import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const [base, shotDir] = process.argv.slice(2);
if (!base || !shotDir) {
  console.error('usage: node tests/dashboard.mjs <base-url> <screenshot-dir>');
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

// stdin answers from the driver, one JSON line each.
const answers = [];
let answerWaiter = null;
createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line.trim()) return;
  answers.push(line);
  if (answerWaiter) { answerWaiter(); answerWaiter = null; }
});
async function askDenials(phase, timeoutMs = 20000) {
  process.stdout.write(`READY-FOR-DENIALS ${phase}\n`);
  const deadline = Date.now() + timeoutMs;
  while (!answers.length) {
    check(Date.now() < deadline, `no answer from the driver for phase ${phase}`);
    await Promise.race([new Promise((r) => { answerWaiter = r; }), sleep(200)]);
  }
  return JSON.parse(answers.shift());
}

async function poll(what, fn, timeoutMs, everyMs = 50) {
  const start = Date.now();
  let last;
  while (Date.now() - start <= timeoutMs) {
    last = await fn();
    if (last) return Date.now() - start;
    await sleep(everyMs);
  }
  throw new Failure(`${what}: not within ${timeoutMs} ms (last: ${JSON.stringify(last)})`);
}

const consoleErrors = [];
let step = 'launch';
const userDataDir = mkdtempSync(join(tmpdir(), 'floodgate-chromium-'));
let ctx;

async function main() {
  ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM, headless: true, args: ARGS, acceptDownloads: true,
    viewport: { width: 1366, height: 900 }, colorScheme: 'dark',
  });
  const page = ctx.pages()[0] || (await ctx.newPage());
  page.setDefaultTimeout(10000);
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));

  const shot = async (name) => {
    const path = join(shotDir, `${name}.png`);
    await page.screenshot({ path, fullPage: true });
    emit({ step, screenshot: path });
  };
  const isDark = () => page.evaluate(() => document.documentElement.classList.contains('dark'));
  const connected = () => page.waitForSelector('#conn[data-state="connected"]', { timeout: 10000 });
  const rowCount = () => page.locator('#audit-rows tr').count();
  const showPane = async (name) => {
    await page.click(`#tab-${name}`);
    await page.waitForSelector(`#pane-${name}:not(.hidden)`);
  };

  // 1. First visit follows prefers-color-scheme (dark here), then follows the system while nothing is saved.
  step = 'load';
  const resp = await page.goto(`${base}/`);
  check(resp && resp.ok(), `GET / answered ${resp && resp.status()}`);
  check((await page.title()) === 'Floodgate', `page title ${JSON.stringify(await page.title())}`);
  await connected();
  check(await isDark(), 'first visit with prefers-color-scheme: dark did not render dark');
  await page.emulateMedia({ colorScheme: 'light' });
  await poll('theme follows the system change to light', async () => !(await isDark()), 2000);
  emit({ step, ok: true });

  // 2. Health: CPU and decisions/s update within 3 s; charts are drawn.
  step = 'health-updates';
  const read = () => page.evaluate(() => ({
    cpu: document.getElementById('stat-cpu').textContent, cpuAt: document.getElementById('stat-cpu').dataset.time,
    dps: document.getElementById('stat-dps').textContent, dpsAt: document.getElementById('stat-dps').dataset.time,
  }));
  const before = await read();
  let after;
  const took = await poll('CPU and decisions/s update', async () => {
    after = await read();
    return after.cpuAt && after.cpuAt !== before.cpuAt && after.dpsAt !== before.dpsAt && after;
  }, 3000);
  check(/^\d+(\.\d+)? %$/.test(after.cpu), `CPU card shows ${JSON.stringify(after.cpu)}, want "<n> %"`);
  check(/^\d+(\.\d+)?$/.test(after.dps), `decisions/s card shows ${JSON.stringify(after.dps)}, want a number`);
  const canvases = await page.locator('#pane-health .uplot canvas').count();
  check(canvases === 3, `got ${canvases} chart canvases, want 3`);
  emit({ step, ok: true, updated_after_ms: took, cpu: after.cpu, dps: after.dps });
  await shot('health-light');

  step = 'config';
  await showPane('config');
  const cfg = await page.evaluate(() => ({
    version: document.getElementById('cfg-version').textContent,
    domains: document.querySelectorAll('#cfg-domains section[data-domain]').length,
    rows: document.querySelectorAll('#cfg-domains tbody tr').length,
  }));
  check(cfg.version !== '—' && cfg.domains > 0 && cfg.rows > 0, `configuration pane is empty: ${JSON.stringify(cfg)}`);
  // This server runs without authentication (loopback) and with --config (file source): the header says
  // so, and the pane offers no editing.
  const modeInfo = await page.evaluate(() => ({
    noAuth: !document.getElementById('auth-none').hidden,
    source: document.getElementById('cfg-source').textContent,
    note: document.getElementById('cfg-mode').textContent,
    edits: document.querySelectorAll('#pane-config [data-action]').length,
  }));
  check(modeInfo.noAuth, 'no "no authentication" badge on a server without authentication');
  check(modeInfo.source === 'file' && /come from files/.test(modeInfo.note) && modeInfo.edits === 0,
    `file-sourced limits: ${JSON.stringify(modeInfo)}`);
  emit({ step, ok: true, ...cfg });
  await shot('config-light');

  // 3. Audit: real denials appear within 2 s.
  step = 'audit-live';
  await showPane('audit');
  const initialRows = await rowCount();
  const main = await askDenials('main');
  const sentAt = Date.now();
  check(main.sent > 0, 'driver sent no denials');
  const want = initialRows + main.sent;
  let seen = 0;
  const deniedSeen = (async () => { // decisions/s denied rises above 0 in a snapshot after the denials
    await poll('decisions/s denied > 0', async () => {
      const t = await page.evaluate(() => document.getElementById('stat-denied').textContent);
      return Number(t) > 0;
    }, 3500, 100);
  })();
  await poll(`${main.sent} denials in the Audit pane`, async () => (seen = await rowCount()) >= want, 2000);
  const latency = Date.now() - sentAt;
  check(seen === want, `audit rows: got ${seen}, want ${want}`);
  emit({ step, ok: true, rows: seen, appeared_after_ms: latency });
  step = 'health-denied-rate';
  await deniedSeen;
  emit({ step, ok: true });

  // 4. Filters narrow the rows.
  step = 'filters';
  const f = main.filters;
  const filtered = async () => rowCount();
  await page.fill('#f-text', f.text);
  check((await filtered()) === f.text_rows, `text filter ${f.text}: got ${await filtered()} rows, want ${f.text_rows}`);
  await page.fill('#f-text', '');
  const ruleValue = await page.evaluate((r) => [...document.querySelectorAll('#f-rule option')].map((o) => o.value)
    .find((v) => v.endsWith(`/ ${r}`)), f.rule);
  check(ruleValue, `rule select has no option for ${f.rule}`);
  await page.selectOption('#f-rule', ruleValue);
  check((await filtered()) === f.rule_rows, `rule filter ${f.rule}: got ${await filtered()} rows, want ${f.rule_rows}`);
  await page.selectOption('#f-rule', '');
  await page.fill('#f-client', f.client);
  check((await filtered()) === f.client_rows, `client filter ${f.client}: got ${await filtered()} rows, want ${f.client_rows}`);
  await page.fill('#f-client', 'no-such-client');
  check((await filtered()) === 0, 'a client filter that matches nothing left rows');
  check(await page.isVisible('#audit-empty'), 'no empty state for a filter that matches nothing');
  await page.fill('#f-client', '');
  check((await filtered()) === want, 'clearing the filters did not restore the rows');
  emit({ step, ok: true });

  // 5. Export the visible rows (filtered by client) as CSV and NDJSON.
  step = 'export';
  await page.fill('#f-client', f.client);
  const visibleIds = await page.evaluate(() => [...document.querySelectorAll('#audit-rows tr')].map((tr) => tr.dataset.id));
  const grab = async (button) => {
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click(button)]);
    return { name: dl.suggestedFilename(), body: readFileSync(await dl.path(), 'utf8') };
  };
  const csv = await grab('#export-csv');
  check(/^floodgate-audit-.+\.csv$/.test(csv.name), `CSV file name ${csv.name}`);
  const csvLines = csv.body.trim().split(/\r?\n/);
  check(csvLines[0].startsWith('id,time,client_ip'), `CSV header: ${csvLines[0]}`);
  const csvIds = csvLines.slice(1).map((l) => l.split(',')[0]);
  check(JSON.stringify(csvIds) === JSON.stringify(visibleIds), `CSV ids ${csvIds} != visible ${visibleIds}`);
  check(csvLines.slice(1).every((l) => l.includes(f.client)), 'a CSV row lacks the filtered client');
  const nd = await grab('#export-ndjson');
  check(/^floodgate-audit-.+\.ndjson$/.test(nd.name), `NDJSON file name ${nd.name}`);
  const ndRows = nd.body.trim().split('\n').map((l) => JSON.parse(l));
  check(JSON.stringify(ndRows.map((e) => e.id)) === JSON.stringify(visibleIds), 'NDJSON ids differ from the visible rows');
  check(ndRows.every((e) => e.client_ip === f.client && e.kind === 'denial'), 'NDJSON rows do not match the filter');
  await page.fill('#f-client', '');
  emit({ step, ok: true, rows: visibleIds.length, csv: csv.name, ndjson: nd.name });

  // 6. Pause buffers new denials (counted), Resume shows them.
  step = 'pause';
  await page.click('#pause');
  const paused = await askDenials('paused');
  await poll('paused button counts the buffered denials', async () =>
    (await page.textContent('#pause')) === `Resume (${paused.sent} new)`, 2000);
  check((await rowCount()) === want, 'rows changed while paused');
  await page.fill('#f-text', 'x'); // re-render while paused: the buffered denials are not "missing"
  await page.fill('#f-text', '');
  check(!(await page.textContent('#audit-count')).includes('kept'),
    `header while paused: ${await page.textContent('#audit-count')}`);
  await page.click('#pause');
  check((await rowCount()) === want + paused.sent || (await poll('rows after resume', async () => (await rowCount()) === want + paused.sent, 1000)) >= 0,
    'resume did not show the buffered denials');
  emit({ step, ok: true });
  await shot('audit-light');

  // 6b. More denials than the pane keeps, while another pane is open: the tab badge caps at 999+, the
  // table keeps the newest 2,000, and the header says how many of how many.
  step = 'flood';
  const header = async () => page.textContent('#audit-count');
  const keptBefore = Number((await header()).match(/^([\d,]+) denials?/)[1].replaceAll(',', ''));
  await showPane('health');
  const flood = await askDenials('flood');
  await poll('tab badge shows 999+', async () => (await page.textContent('#audit-badge')) === '999+', 5000);
  await showPane('audit');
  const wantHeader = `2,000 of ${(keptBefore + flood.sent).toLocaleString('en-US')} denials kept`;
  await poll(`header "${wantHeader}"`, async () => (await header()).startsWith(wantHeader), 3000);
  check((await rowCount()) === 2000, `rows after the flood: got ${await rowCount()}, want 2000`);
  check(await page.isHidden('#audit-badge'), 'tab badge still shown on the Audit pane');
  emit({ step, ok: true, header: await header() });

  // 7. Theme persists across reload; dark screenshots of each pane.
  step = 'theme';
  await page.click('#theme-toggle');
  check(await isDark(), 'toggle did not switch to dark');
  check((await page.evaluate(() => localStorage.getItem('floodgate-theme'))) === 'dark', 'theme not saved');
  await page.reload();
  await connected();
  check(await isDark(), 'dark theme lost across reload (system is light)');
  emit({ step, ok: true });
  for (const p of ['health', 'config', 'audit']) {
    await showPane(p);
    if (p === 'health') await sleep(300);
    await shot(`${p}-dark`);
  }

  // 8. A 390-px viewport has no horizontal scroll, in every pane.
  step = 'mobile';
  await page.setViewportSize({ width: 390, height: 844 });
  for (const p of ['health', 'config', 'audit']) {
    await showPane(p);
    await sleep(200);
    const sw = await page.evaluate(() => document.documentElement.scrollWidth);
    check(sw <= 390, `${p} pane at 390 px: scrollWidth ${sw} > 390`);
    await shot(`${p}-dark-390`);
  }
  await page.click('#theme-toggle');
  await showPane('audit');
  await shot('audit-light-390');
  emit({ step, ok: true });

  step = 'console';
  check(consoleErrors.length === 0, `console errors: ${JSON.stringify(consoleErrors)}`);
  emit({ step, ok: true });
}

let code = 0;
const guard = setTimeout(() => { emit({ step, ok: false, error: 'timed out after 90 s' }); process.exit(1); }, 90000);
try {
  await main();
  emit({ step: 'done', ok: true });
} catch (e) {
  code = 1;
  emit({ step, ok: false, error: e instanceof Failure ? e.message : String(e && e.stack || e), console_errors: consoleErrors });
} finally {
  clearTimeout(guard);
  if (ctx) await ctx.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(code);
