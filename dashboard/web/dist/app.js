// Floodgate dashboard: plain ES modules (no bundler, no framework). This module starts the page: sign-in
// (auth.js) first, then the server's /ws feed (hello, snapshot, events, offenders, limits; the client sends
// nothing) rendered in three panes: System Health (uPlot charts + cards), Configuration (config.js: the
// limits, their editor, history and replicas) and Audit Trail (live denials and configuration changes).
// Invariants: nothing is fetched or opened before the sign-in resolved; at most MAX_ROWS audit rows in
// memory and in the DOM; charts keep at most MAX_POINTS samples; every server string reaches the DOM through
// textContent, never innerHTML.

import { $, el, fmtNum, fmtInt, fmtDateTime, fmtWindow } from './ui.js';
import { getToken } from './api.js';
import * as auth from './auth.js';
import * as cfg from './config.js';

const THEME_KEY = 'floodgate-theme';
const MAX_ROWS = 2000;
const MAX_POINTS = 900; // 15 minutes of 1-second snapshots
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;

// ---------- formatting ----------

function fmtBytes(b) {
  if (!Number.isFinite(b)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return `${b.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function fmtMs(seconds) {
  if (!Number.isFinite(seconds)) return '—';
  const ms = seconds * 1000;
  return ms < 1 ? `${ms.toFixed(3)} ms` : ms < 100 ? `${ms.toFixed(2)} ms` : `${ms.toFixed(0)} ms`;
}

function fmtTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  return d.toLocaleTimeString('en-GB', { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

const retrySeconds = (ev) => (Number(ev.retry_after_ns) || 0) / 1e9;

// fmtRetry: "0.8 s", "42 s", "47 min 40 s", "3 h 5 min".
function fmtRetry(s) {
  if (!Number.isFinite(s) || s < 0) return '—';
  if (s < 10) return `${s.toFixed(1)} s`;
  s = Math.ceil(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ''}`;
  const m = Math.floor((s % 3600) / 60);
  return `${Math.floor(s / 3600)} h${m ? ` ${m} min` : ''}`;
}
const windowSeconds = (ev) => (Number(ev.limit?.window_ns) || 0) / 1e9;
// ruleLabel is "domain / rule", without the domain prefix some rule names carry ("api.user" -> "api / user").
function ruleLabel(ev) {
  const d = ev.domain || '—';
  let r = ev.rule || '—';
  if (ev.domain && r.startsWith(`${ev.domain}.`)) r = r.slice(ev.domain.length + 1);
  return `${d} / ${r}`;
}

function routeOf(ev) {
  if (ev.method || ev.host || ev.path) return [ev.method, `${ev.host || ''}${ev.path || ''}`].filter(Boolean).join(' ');
  return (ev.entries || []).map((e) => `${e.key}=${e.value}`).join(', ');
}

function limitOf(ev) {
  const l = ev.limit || {};
  if (!l.requests && l.requests !== 0) return '—';
  const w = fmtWindow(windowSeconds(ev));
  return `${l.requests} / ${w.startsWith('1 ') ? w.slice(2) : w}`;
}

// ---------- theme ----------

const theme = {
  current() { return document.documentElement.classList.contains('dark') ? 'dark' : 'light'; },
  apply(t, persist) {
    document.documentElement.classList.toggle('dark', t === 'dark');
    if (persist) {
      try { localStorage.setItem(THEME_KEY, t); } catch { /* storage disabled: theme lasts for this page */ }
    }
    const btn = $('theme-toggle');
    btn.setAttribute('aria-pressed', String(t === 'dark'));
    btn.setAttribute('aria-label', t === 'dark' ? 'Switch to light theme' : 'Switch to dark theme');
    btn.title = btn.getAttribute('aria-label');
    charts.rebuild();
  },
  init() {
    this.apply(this.current(), false);
    $('theme-toggle').addEventListener('click', () => this.apply(this.current() === 'dark' ? 'light' : 'dark', true));
    const mq = window.matchMedia('(prefers-color-scheme: dark)');
    mq.addEventListener('change', (e) => {
      let saved = null;
      try { saved = localStorage.getItem(THEME_KEY); } catch { /* ignore */ }
      if (!saved) this.apply(e.matches ? 'dark' : 'light', false);
    });
  },
};

// ---------- tabs ----------

const PANES = ['health', 'config', 'audit'];
let activePane = 'health';

function showPane(name, focus) {
  if (!PANES.includes(name)) name = 'health';
  activePane = name;
  for (const p of PANES) {
    const tab = $(`tab-${p}`);
    const on = p === name;
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on ? 0 : -1;
    $(`pane-${p}`).classList.toggle('hidden', !on);
  }
  if (focus) $(`tab-${name}`).focus();
  if (location.hash !== `#${name}`) history.replaceState(null, '', `#${name}`);
  if (name === 'health') charts.resize();
  cfg.setVisible(name === 'config');
  if (name === 'audit') { audit.unseen = 0; audit.renderBadge(); audit.render(); }
}

function initTabs() {
  for (const p of PANES) $(`tab-${p}`).addEventListener('click', () => showPane(p));
  document.querySelector('[role=tablist]').addEventListener('keydown', (e) => {
    const i = PANES.indexOf(activePane);
    if (e.key === 'ArrowRight') showPane(PANES[(i + 1) % PANES.length], true);
    else if (e.key === 'ArrowLeft') showPane(PANES[(i + PANES.length - 1) % PANES.length], true);
    else return;
    e.preventDefault();
  });
  window.addEventListener('hashchange', () => showPane(location.hash.slice(1)));
  showPane(location.hash.slice(1) || 'health');
}

// ---------- charts (System Health) ----------

const SERIES = {
  host: [
    { label: 'CPU %', color: '#0284c7', get: (s) => s.host?.cpu_percent },
    { label: 'Memory %', color: '#9333ea', get: (s) => s.host?.memory_percent },
  ],
  decisions: [
    { label: 'allowed', color: '#059669', get: (s) => s.decisions_per_second?.allowed },
    { label: 'denied', color: '#e11d48', get: (s) => s.decisions_per_second?.denied },
    { label: 'shadow', color: '#7c3aed', get: (s) => s.decisions_per_second?.shadow },
    { label: 'degraded', color: '#d97706', get: (s) => s.decisions_per_second?.degraded },
  ],
  latency: [
    { label: 'p50 ms', color: '#0891b2', get: (s) => (s.latency?.count ? ms(s.latency.p50_seconds) : null) },
    { label: 'p99 ms', color: '#db2777', get: (s) => (s.latency?.count ? ms(s.latency.p99_seconds) : null) },
  ],
};

function ms(v) { return Number.isFinite(v) ? v * 1000 : null; }
// A zero Snapshot (time 0001-01-01, before the sampler's first tick) has no valid time and is skipped.
function tsOf(s) { const t = Date.parse(s && s.time); return Number.isFinite(t) && t > 0 ? t / 1000 : null; }

const charts = {
  data: { host: [[]], decisions: [[]], latency: [[]] },
  plots: {},
  lastTs: null,
  reset(snaps) {
    for (const name of Object.keys(SERIES)) this.data[name] = [[], ...SERIES[name].map(() => [])];
    this.lastTs = null;
    for (const s of snaps) this.push(s, false);
    this.redraw();
  },
  push(s, redraw = true) {
    const t = tsOf(s);
    if (t === null || (this.lastTs !== null && t <= this.lastTs)) return;
    this.lastTs = t;
    for (const [name, series] of Object.entries(SERIES)) {
      const d = this.data[name];
      d[0].push(t);
      series.forEach((ser, i) => { const v = ser.get(s); d[i + 1].push(Number.isFinite(v) ? v : null); });
      if (d[0].length > MAX_POINTS) for (const arr of d) arr.splice(0, arr.length - MAX_POINTS);
    }
    if (redraw) this.redraw();
  },
  redraw() {
    for (const [name, p] of Object.entries(this.plots)) p.setData(this.data[name]);
  },
  size(node) {
    return { width: Math.max(200, Math.floor(node.clientWidth || node.parentElement.clientWidth - 24)), height: 220 };
  },
  build() {
    if (typeof window.uPlot !== 'function') return;
    const dark = theme.current() === 'dark';
    const axisColor = dark ? '#cbd5e1' : '#334155';
    const gridColor = dark ? 'rgba(148,163,184,0.18)' : 'rgba(100,116,139,0.18)';
    for (const [name, series] of Object.entries(SERIES)) {
      const node = $(`chart-${name}`);
      node.textContent = '';
      const axis = { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor, width: 1 } };
      const opts = {
        ...this.size(node),
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: name === 'host' ? { range: [0, 100] } : { range: (u, lo, hi) => [0, hi > 0 ? hi * 1.15 : 1] } },
        // x: whole seconds and room for an HH:MM:SS label per tick
        // y: thousands as 18k, 1.2M, so labels fit the axis at any rate
        axes: [{ ...axis, space: 80, incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900] },
          { ...axis, size: 48, values: (u, splits) => splits.map(axisNum) }],
        series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, points: { show: false }, spanGaps: false }))],
        legend: { live: false },
      };
      this.plots[name] = new window.uPlot(opts, this.data[name], node);
    }
  },
  destroy() {
    for (const p of Object.values(this.plots)) p.destroy();
    this.plots = {};
  },
  rebuild() { this.destroy(); this.build(); },
  resize() {
    for (const [name, p] of Object.entries(this.plots)) {
      const node = $(`chart-${name}`);
      if (node.offsetParent === null) continue; // hidden pane
      const { width, height } = this.size(node);
      if (width !== p.width) p.setSize({ width, height });
    }
  },
};

// ---------- cards (System Health) ----------

function renderSnapshot(s) {
  const dps = s.decisions_per_second || {};
  const set = (id, text) => { const e = $(id); e.textContent = text; e.dataset.time = s.time || ''; };
  set('stat-cpu', `${fmtNum(s.host?.cpu_percent)} %`);
  set('stat-mem', `${fmtNum(s.host?.memory_percent)} %`);
  set('stat-rss', fmtBytes(s.process?.rss_bytes));
  set('stat-goroutines', fmtInt(s.process?.goroutines));
  set('stat-dps', fmtNum(dps.total));
  set('stat-allowed', fmtNum(dps.allowed));
  set('stat-denied', fmtNum(dps.denied));
  const noLat = !s.latency || !s.latency.count; // no decisions in the window: quantiles are meaningless
  set('stat-p99', noLat ? 'no decisions' : fmtMs(s.latency.p99_seconds));
  set('stat-p50', noLat ? '—' : fmtMs(s.latency.p50_seconds));
  set('stat-degraded', fmtNum(dps.degraded));

  const st = s.store || {};
  const storeEl = $('stat-store');
  storeEl.classList.remove('text-emerald-700', 'dark:text-emerald-400', 'text-rose-700', 'dark:text-rose-400');
  if (!st.configured) {
    storeEl.textContent = 'memory';
    $('stat-store-sub').textContent = 'embedded, no Redis';
  } else {
    storeEl.textContent = st.up ? 'up' : 'down';
    storeEl.classList.add(...(st.up ? ['text-emerald-700', 'dark:text-emerald-400'] : ['text-rose-700', 'dark:text-rose-400']));
    $('stat-store-sub').textContent = `ping ${fmtMs(st.ping_seconds)} · on outage: ${st.failure_mode || '—'}`;
  }
  $('stat-store-err').textContent = `store errors ${fmtNum(st.errors_per_second)}/s`;
  const errBox = $('store-error');
  errBox.classList.toggle('hidden', !st.error);
  errBox.textContent = st.error ? `Store error: ${st.error}` : '';
  $('last-sample').textContent = fmtDateTime(s.time);
}

// ---------- audit trail ----------

const compactNum = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });
function axisNum(v) {
  if (v === null || v === undefined) return '';
  return Math.abs(v) >= 1000 ? compactNum.format(v) : String(Number(v.toPrecision(6)));
}

function cell(tr, text, cls = '') { tr.append(el('td', `td ${cls}`, text)); }

const isChange = (ev) => ev.kind === 'config_change';

// changeLine is a configuration change in one line: "alice · patch · v3 → v4".
function changeLine(ev) {
  const c = ev.change || {};
  return `${c.actor || '—'} · ${c.action || 'change'} · v${c.version_before ?? '?'} → v${c.version_after ?? '?'}`;
}

const audit = {
  events: [], // newest first, at most MAX_ROWS
  ids: new Set(),
  paused: false,
  buffer: [], // events received while paused, oldest first, at most MAX_ROWS
  pausedCount: 0, // events received while paused, including those beyond the buffer
  unseen: 0,
  received: 0, // denials received since the page loaded (the table keeps the newest MAX_ROWS)
  dropped: 0,
  rules: new Set(),
  offenders: {},
  offWindow: '1m',
  visible: [],
  renderQueued: false,

  add(evs) {
    const fresh = [];
    for (const ev of evs || []) {
      if (!ev || !ev.id || this.ids.has(ev.id)) continue;
      this.ids.add(ev.id);
      fresh.push(ev);
    }
    if (!fresh.length) return;
    for (const ev of fresh) if (!isChange(ev)) this.received++;
    if (this.paused) {
      this.buffer.push(...fresh);
      this.pausedCount += fresh.length;
      if (this.buffer.length > MAX_ROWS) { // only the newest MAX_ROWS can be shown on resume anyway
        for (const ev of this.buffer.splice(0, this.buffer.length - MAX_ROWS)) this.ids.delete(ev.id);
      }
      this.renderPaused();
      return;
    }
    this.ingest(fresh);
  },
  ingest(fresh) { // fresh: oldest first
    for (const ev of fresh) if (!isChange(ev)) this.addRule(ruleLabel(ev));
    this.events = fresh.slice().reverse().concat(this.events);
    if (this.events.length > MAX_ROWS) {
      for (const ev of this.events.splice(MAX_ROWS)) this.ids.delete(ev.id);
    }
    if (activePane !== 'audit') { this.unseen += fresh.length; this.renderBadge(); }
    this.schedule();
  },
  addRule(label) {
    if (this.rules.has(label)) return;
    this.rules.add(label);
    const sel = $('f-rule');
    const opts = [...this.rules].sort();
    const cur = sel.value;
    sel.length = 1;
    for (const r of opts) sel.append(new Option(r, r));
    sel.value = cur;
  },
  schedule() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => { this.renderQueued = false; this.render(); });
  },
  filtered() {
    const text = $('f-text').value.trim().toLowerCase();
    const rule = $('f-rule').value;
    const client = $('f-client').value.trim().toLowerCase();
    const kind = $('f-kind').value;
    return this.events.filter((ev) => {
      if (kind && (ev.kind || 'denial') !== kind) return false;
      if (isChange(ev)) {
        if (rule) return false;
        if (client && !(ev.change?.remote || '').toLowerCase().includes(client)) return false;
        if (text) {
          const c = ev.change || {};
          const hay = [changeLine(ev), c.remote, c.summary, ev.replica, 'config change'].join(' ').toLowerCase();
          if (!hay.includes(text)) return false;
        }
        return true;
      }
      if (rule && ruleLabel(ev) !== rule) return false;
      if (client && !(ev.client_ip || '').toLowerCase().includes(client)) return false;
      if (text) {
        const hay = [ev.client_ip, ev.proxy_ip, ev.domain, ev.rule, routeOf(ev), limitOf(ev), ev.service, ev.replica,
          ev.limit?.algorithm, ev.limit?.name, ev.shadow ? 'shadow' : '', ev.degraded ? 'degraded' : ''].join(' ').toLowerCase();
        if (!hay.includes(text)) return false;
      }
      return true;
    });
  },
  render() {
    if (activePane !== 'audit') return;
    const rows = this.filtered();
    this.visible = rows;
    const tbody = $('audit-rows');
    const frag = document.createDocumentFragment();
    for (const ev of rows) {
      if (isChange(ev)) { frag.append(changeRow(ev)); continue; }
      const tr = el('tr', 'hover:bg-slate-50 dark:hover:bg-slate-800/60');
      tr.dataset.id = ev.id;
      tr.dataset.kind = 'denial';
      const t = el('td', 'td c-time whitespace-nowrap font-mono text-xs tabular-nums', fmtTime(ev.time));
      t.title = ev.time;
      tr.append(t);
      const c = el('td', 'td c-client whitespace-nowrap font-mono text-xs', ev.client_ip || '—');
      if (ev.proxy_ip) c.title = `via proxy ${ev.proxy_ip}`;
      tr.append(c);
      cell(tr, ruleLabel(ev), 'c-rule whitespace-nowrap');
      cell(tr, routeOf(ev) || '—', 'c-route font-mono text-xs break-all sm:min-w-[14rem]');
      cell(tr, limitOf(ev), 'c-limit whitespace-nowrap tabular-nums');
      cell(tr, fmtRetry(retrySeconds(ev)), 'c-retry whitespace-nowrap text-right tabular-nums');
      const flags = el('td', 'td c-flags whitespace-nowrap');
      if (ev.shadow) flags.append(el('span', 'badge badge-shadow', 'shadow'));
      if (ev.degraded) flags.append(el('span', 'badge badge-degraded ml-1', 'degraded'));
      tr.append(flags);
      frag.append(tr);
    }
    tbody.replaceChildren(frag);
    $('audit-empty').classList.toggle('hidden', rows.length > 0);
    $('audit-empty').textContent = this.events.length
      ? 'No events match these filters.'
      : 'No denials yet. Requests over a limit, and changes of the limits, will appear here as they happen.';
    const changes = this.events.filter(isChange).length;
    const denials = this.events.length - changes;
    // Denials waiting in the pause buffer are not missing: they show on resume.
    const held = this.buffer.reduce((n, ev) => n + (isChange(ev) ? 0 : 1), 0);
    const received = Math.max(this.received - held, denials);
    $('audit-count').textContent = (received > denials
      ? `${denials.toLocaleString('en-US')} of ${received.toLocaleString('en-US')} denials kept`
      : `${denials.toLocaleString('en-US')} denial${denials === 1 ? '' : 's'}`)
      + (changes ? ` · ${changes.toLocaleString('en-US')} config change${changes === 1 ? '' : 's'}` : '');
    $('audit-shown').textContent = rows.length === this.events.length
      ? `Showing all ${rows.length.toLocaleString('en-US')} (newest first, last ${MAX_ROWS.toLocaleString('en-US')} kept).`
      : `Showing ${rows.length.toLocaleString('en-US')} of ${this.events.length.toLocaleString('en-US')}.`;
    $('export-csv').disabled = rows.length === 0;
    $('export-ndjson').disabled = rows.length === 0;
  },
  renderBadge() {
    const b = $('audit-badge');
    b.textContent = this.unseen > 999 ? '999+' : String(this.unseen);
    b.classList.toggle('hidden', this.unseen === 0);
  },
  renderPaused() {
    const btn = $('pause');
    btn.setAttribute('aria-pressed', String(this.paused));
    const n = this.pausedCount;
    btn.textContent = this.paused ? (n ? `Resume (${n} new)` : 'Resume') : 'Pause';
    const note = $('paused-note');
    note.classList.toggle('hidden', !this.paused);
    const kept = n > this.buffer.length ? ` (the newest ${this.buffer.length.toLocaleString('en-US')} will be shown)` : '';
    note.textContent = this.paused ? `Paused: ${n.toLocaleString('en-US')} new event(s) received${kept}; the table updates on resume.` : '';
  },
  togglePause() {
    this.paused = !this.paused;
    this.pausedCount = 0;
    if (!this.paused && this.buffer.length) {
      const b = this.buffer;
      this.buffer = [];
      this.ingest(b);
    }
    this.renderPaused();
  },
  setDropped(n) {
    if (!Number.isFinite(n)) return;
    this.dropped = n;
    const d = $('dropped');
    d.textContent = `${n.toLocaleString('en-US')} events dropped`;
    d.title = 'Audit events the server could not queue (overload). They are counted, never silently lost.';
    d.classList.toggle('hidden', n <= 0);
  },
  setOffenders(o) {
    if (o) this.offenders = o;
    this.renderOffenders();
  },
  renderOffenders() {
    const o = this.offenders[this.offWindow] || {};
    const list = (id, items, what) => {
      const ol = $(id);
      ol.textContent = '';
      if (!items || !items.length) {
        ol.append(el('li', 'text-slate-600 dark:text-slate-400', `No ${what} denied in this window.`));
        return;
      }
      const max = Math.max(...items.map((i) => i.count || 0), 1);
      for (const it of items.slice(0, 10)) {
        const li = el('li', 'relative overflow-hidden rounded px-2 py-1');
        const bar = el('span', 'absolute inset-y-0 left-0 bg-rose-100 dark:bg-rose-950');
        bar.style.width = `${Math.round((100 * (it.count || 0)) / max)}%`;
        bar.setAttribute('aria-hidden', 'true');
        const row = el('span', 'relative flex items-baseline justify-between gap-2');
        const key = it.key ? el('span', 'truncate font-mono text-xs', it.key)
          : el('span', 'truncate text-xs italic text-slate-600 dark:text-slate-300', what === 'clients' ? '(no client IP: RLS)' : '(unnamed)');
        row.append(key, el('span', 'shrink-0 tabular-nums', `${(it.count || 0).toLocaleString('en-US')}${it.error ? ` ±${it.error}` : ''}`));
        li.append(bar, row);
        ol.append(li);
      }
    };
    list('off-clients', o.clients, 'clients');
    list('off-rules', o.rules, 'rules');
  },
};

// changeRow renders a configuration change: time, then one cell with who, what and which versions, and the
// summary (one line per changed rule).
function changeRow(ev) {
  const c = ev.change || {};
  const tr = el('tr', 'audit-change');
  tr.dataset.id = ev.id;
  tr.dataset.kind = 'config_change';
  const t = el('td', 'td c-time whitespace-nowrap font-mono text-xs tabular-nums', fmtTime(ev.time));
  t.title = ev.time;
  tr.append(t);
  const td = el('td', 'td c-change');
  td.colSpan = 6;
  const head = el('div', 'flex flex-wrap items-baseline gap-x-2 gap-y-1');
  head.append(el('span', 'badge badge-change', 'config change'));
  const who = el('span', 'c-actor font-medium', c.actor || '—');
  if (c.remote) who.title = `from ${c.remote}`;
  head.append(who, el('span', 'c-action text-slate-700 dark:text-slate-300', c.action || 'change'),
    el('span', 'c-versions font-mono text-xs', `v${c.version_before ?? '?'} → v${c.version_after ?? '?'}`));
  td.append(head);
  if (c.summary) td.append(el('p', 'c-summary mt-0.5 whitespace-pre-line break-words font-mono text-xs text-slate-700 dark:text-slate-300', c.summary));
  tr.append(td);
  return tr;
}

// ---------- export ----------

function stamp() { return new Date().toISOString().replace(/[:.]/g, '-'); }

function download(name, type, body) {
  const url = URL.createObjectURL(new Blob([body], { type }));
  const a = el('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function csvField(v) {
  const s = v === undefined || v === null ? '' : String(v);
  // Neutralise spreadsheet formulas, then quote per RFC 4180.
  const safe = /^[=+\-@\t\r]/.test(s) ? `'${s}` : s;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

const CSV_COLUMNS = [
  ['id', (e) => e.id], ['time', (e) => e.time], ['client_ip', (e) => e.client_ip], ['proxy_ip', (e) => e.proxy_ip],
  ['service', (e) => e.service], ['domain', (e) => e.domain], ['rule', (e) => e.rule], ['route', routeOf],
  ['limit_requests', (e) => e.limit?.requests], ['limit_window_seconds', windowSeconds], ['algorithm', (e) => e.limit?.algorithm],
  ['remaining', (e) => e.remaining], ['retry_after_seconds', retrySeconds], ['shadow', (e) => !!e.shadow],
  ['degraded', (e) => !!e.degraded], ['replica', (e) => e.replica], ['config_version', (e) => e.config_version],
  ['kind', (e) => e.kind || 'denial'], ['actor', (e) => e.change?.actor], ['action', (e) => e.change?.action],
  ['version_before', (e) => e.change?.version_before], ['version_after', (e) => e.change?.version_after],
  ['summary', (e) => e.change?.summary],
];

function exportCSV() {
  const rows = audit.filtered();
  const lines = [CSV_COLUMNS.map(([h]) => h).join(',')];
  for (const ev of rows) lines.push(CSV_COLUMNS.map(([, f]) => csvField(f(ev))).join(','));
  download(`floodgate-audit-${stamp()}.csv`, 'text/csv', lines.join('\r\n') + '\r\n');
}

function exportNDJSON() {
  const rows = audit.filtered();
  download(`floodgate-audit-${stamp()}.ndjson`, 'application/x-ndjson', rows.map((e) => JSON.stringify(e)).join('\n') + (rows.length ? '\n' : ''));
}

// ---------- connection ----------

const conn = {
  ws: null,
  attempt: 0,
  timer: null,
  countdown: null,
  setState(state, text) {
    const c = $('conn');
    c.dataset.state = state;
    $('conn-text').textContent = text;
    const dot = $('conn-dot');
    dot.className = `h-2 w-2 rounded-full ${state === 'connected' ? 'bg-emerald-500' : state === 'reconnecting' ? 'bg-amber-500 animate-pulse' : 'bg-slate-400'}`;
  },
  url() { return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`; },
  open() {
    clearTimeout(this.timer);
    clearInterval(this.countdown);
    let ws;
    try {
      // Browsers cannot send an Authorization header on a WebSocket: the token rides as a subprotocol, and
      // the server answers with "floodgate.v1".
      const token = getToken();
      ws = token ? new WebSocket(this.url(), ['floodgate.v1', `bearer.${token}`]) : new WebSocket(this.url());
    } catch {
      this.retry();
      return;
    }
    this.ws = ws;
    if (this.attempt === 0) this.setState('connecting', 'Connecting…');
    ws.onmessage = (m) => this.onMessage(m.data);
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      // 4001: the server closed the feed because the token expired.
      if (ev.code === 4001 && getToken()) { auth.expire('Your session ended: the token expired. Sign in again.'); return; }
      this.retry();
    };
    ws.onerror = () => { /* onclose follows and schedules the retry */ };
  },
  retry() {
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    this.attempt++;
    const until = Date.now() + delay;
    const show = () => this.setState('reconnecting', `Reconnecting in ${Math.max(0, (until - Date.now()) / 1000).toFixed(1)} s`);
    show();
    clearInterval(this.countdown);
    this.countdown = setInterval(show, 250);
    this.timer = setTimeout(() => { clearInterval(this.countdown); this.open(); }, delay);
    // Every third failure in a row, ask whether the token is still good (a 401 ends the session).
    if (getToken() && this.attempt % 3 === 0) auth.checkSession();
  },
  onMessage(data) {
    let msg;
    try { msg = JSON.parse(data); } catch { return; }
    switch (msg.type) {
      case 'hello':
        this.attempt = 0;
        this.setState('connected', 'Connected');
        $('replica').textContent = msg.replica ? `replica ${msg.replica}` : '';
        charts.reset([...(msg.history || []), ...(msg.snapshot ? [msg.snapshot] : [])]);
        if (tsOf(msg.snapshot) !== null) renderSnapshot(msg.snapshot);
        cfg.fromWS(msg.limits);
        audit.add(msg.events);
        audit.setDropped(msg.dropped_events);
        audit.setOffenders(msg.offenders);
        audit.schedule();
        break;
      case 'snapshot':
        if (tsOf(msg.snapshot) !== null) { charts.push(msg.snapshot); renderSnapshot(msg.snapshot); }
        break;
      case 'events':
        audit.add(msg.events);
        audit.setDropped(msg.dropped_events);
        break;
      case 'offenders':
        audit.setOffenders(msg.offenders);
        break;
      case 'limits':
        cfg.fromWS(msg.limits);
        break;
      default:
        break; // unknown message types are ignored so the server can add new ones
    }
  },
};

// ---------- start ----------

function init() {
  theme.init();
  initTabs();
  for (const id of ['f-text', 'f-client']) $(id).addEventListener('input', () => audit.render());
  for (const id of ['f-rule', 'f-kind']) $(id).addEventListener('change', () => audit.render());
  $('filters').addEventListener('submit', (e) => e.preventDefault());
  $('pause').addEventListener('click', () => audit.togglePause());
  $('export-csv').addEventListener('click', exportCSV);
  $('export-ndjson').addEventListener('click', exportNDJSON);
  for (const b of document.querySelectorAll('[data-window]')) {
    b.addEventListener('click', () => {
      audit.offWindow = b.dataset.window;
      for (const o of document.querySelectorAll('[data-window]')) o.setAttribute('aria-pressed', String(o === b));
      audit.renderOffenders();
    });
  }
  audit.renderOffenders();
  audit.render();
  new ResizeObserver(() => charts.resize()).observe($('main'));
  auth.start(() => {
    cfg.init();
    showPane(location.hash.slice(1) || activePane); // the OIDC return restores the pane it left from
    conn.open();
  });
}

// uPlot is a deferred classic script; module scripts run after it, so window.uPlot is ready here.
init();
