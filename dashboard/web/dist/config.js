// The Configuration pane: the limits in force (GET /api/v1/limits, or the /ws "limits" of a server without
// the admin API), their status, history and replicas; for an admin with API-sourced limits, inline rule
// editing (PATCH .../rules/{rule}), per-domain YAML editing (PUT /api/v1/limits/{domain}) and rollbacks,
// each previewed with ?dry_run=true before it is applied.
// Invariants: every write carries If-Match with the version the editor was opened on, so a concurrent change
// is reported (412/409) instead of overwritten; a viewer, or limits that come from files, get no edit,
// apply or rollback controls at all (not merely disabled ones); at most one rule editor and one YAML editor
// are open, and the domains are not re-rendered under an open editor.

import { $, el, button, fmtWindow, fmtDateTime, fmtSeconds, toast, confirmDialog, renderChanges } from './ui.js';
import { session, request, problemText, slug } from './api.js';

const UNITS = [['second', 1], ['minute', 60], ['hour', 3600], ['day', 86400], ['week', 604800], ['month', 2592000], ['year', 31536000]];
const ALGORITHMS = ['fixed_window', 'sliding_window', 'token_bucket'];
const POLL_MS = 5000;
const enc = encodeURIComponent;

const state = {
  view: null, // the limits rendered: GET /api/v1/limits (or the /ws limits without the API)
  status: null, // GET /api/v1/status
  history: [],
  editor: null, // the open rule editor
  yaml: null, // the open YAML editor
  stale: false, // newer limits arrived while an editor was open
  visible: false,
  pollTimer: null,
  refreshing: null,
};

const source = () => state.status?.source || state.view?.source || '';
// editable: the signed-in principal may change the limits here (controls are rendered only then).
const editable = () => session.api && session.admin && source() === 'api';

// ---------- tables ----------

function cell(tr, text, cls = '') { tr.append(el('td', `td ${cls}`, text)); }

function yesNo(v, label) {
  const td = el('td', 'td');
  if (v) td.append(el('span', 'badge badge-yes', label));
  else td.append(el('span', 'text-slate-500 dark:text-slate-400', '—'));
  return td;
}

function table(headers, minWidth) {
  const wrap = el('div', 'relative overflow-x-auto rounded-lg border border-slate-200 bg-white dark:border-slate-800 dark:bg-slate-900');
  const t = el('table', `cfg-table w-full ${minWidth} text-left text-sm`);
  const thead = el('thead', 'bg-slate-100 text-xs uppercase tracking-wide text-slate-700 dark:bg-slate-800 dark:text-slate-300');
  const hr = el('tr');
  for (const h of headers) {
    const th = el('th', h === 'Actions' ? 'th c-actions' : 'th', h);
    th.scope = 'col';
    hr.append(th);
  }
  thead.append(hr);
  const tbody = el('tbody', 'divide-y divide-slate-100 dark:divide-slate-800');
  t.append(thead, tbody);
  wrap.append(t);
  return { wrap, tbody };
}

function limitsCells(tr, limits, unlimited, ruleName) {
  const ls = limits && limits.length ? limits : [null];
  const col = (f, none = '—') => ls.map((l) => (l ? f(l) : none)).join('\n');
  cell(tr, col((l) => l.algorithm || '—'), 'whitespace-pre-line');
  const named = ls.length > 1 || (ls[0] && ls[0].name && ls[0].name !== ruleName);
  cell(tr, col((l) => `${l.requests.toLocaleString('en-US')}${named && l.name ? ` (${l.name})` : ''}`, unlimited ? 'unlimited' : '—'), 'whitespace-pre-line tabular-nums');
  cell(tr, col((l) => fmtWindow(l.window_seconds)), 'whitespace-pre-line');
  cell(tr, col((l) => (l.burst ? l.burst.toLocaleString('en-US') : '—')), 'whitespace-pre-line tabular-nums');
}

function editCell(tr, domain, rule, kind, colspan) {
  const td = el('td', 'td c-actions text-right');
  const b = button('btn btn-sm', 'Edit', () => openEditor(tr, domain, rule, kind, colspan));
  b.dataset.action = 'edit';
  b.setAttribute('aria-label', `Edit ${kind === 'http_rule' ? 'HTTP rule' : 'rule'} ${kind === 'http_rule' ? rule.name : rule.path}`);
  b.setAttribute('aria-expanded', 'false');
  td.append(b);
  tr.append(td);
}

// ---------- rendering ----------

function renderHeader() {
  const v = state.view;
  const st = state.status;
  $('cfg-version').textContent = v?.version ?? st?.version ?? '—';
  $('cfg-loaded').textContent = fmtDateTime(st?.applied_at || v?.loaded_at);
  const src = source();
  $('cfg-source').textContent = src || (session.api ? '—' : 'files');
  const by = v?.author ? ` · by ${v.author}` : '';
  $('cfg-author').textContent = by;

  const mode = $('cfg-mode');
  mode.className = 'cfg-mode';
  if (!session.api) {
    mode.textContent = 'Read-only view: this server has no admin API.';
  } else if (src === 'file') {
    mode.textContent = 'The limits come from files: edit them there (every replica reloads them). Editing here is off.';
    mode.classList.add('cfg-mode-file');
  } else if (!session.admin) {
    mode.textContent = 'Read-only: you are signed in as a viewer.';
  } else {
    mode.textContent = 'Edit a rule or a domain\'s YAML. Preview shows the difference; Apply stores a new version that every replica applies.';
  }

  const err = $('cfg-load-error');
  const failed = st && st.last_load_ok === false;
  err.classList.toggle('hidden', !failed);
  err.textContent = failed
    ? `Last load failed${st.last_error_at ? ` at ${fmtDateTime(st.last_error_at)}` : ''}: ${st.last_error || 'unknown error'}. `
      + `Still enforcing version ${st.version ?? '—'} (last good load ${fmtDateTime(st.last_good_at)}).`
    : '';

  let files = [];
  if (v?.sources && v.sources.length) files = v.sources;
  else if (src === 'file' && v?.domains) files = v.domains.map((d) => d.file).filter(Boolean);
  $('cfg-sources').textContent = files.length ? `Files: ${files.join(', ')}` : '';
}

function renderDomains() {
  state.stale = false;
  const L = state.view;
  const root = $('cfg-domains');
  root.textContent = '';
  if (!L) {
    root.append(el('p', 'empty', 'Waiting for the server…'));
    return;
  }
  const domains = L.domains || [];
  if (!domains.length) {
    root.append(el('p', 'empty', 'No limits are configured: every request is allowed.'));
    return;
  }
  const canEdit = editable();
  for (const d of domains) {
    const sec = el('section', 'space-y-2');
    sec.dataset.domain = d.domain;
    const head = el('div', 'flex flex-wrap items-center justify-between gap-2');
    const title = el('h2', 'min-w-0 break-words text-base font-semibold', `Domain ${d.domain}`);
    if (d.file) title.append(el('span', 'block break-all font-mono text-xs font-normal text-slate-600 sm:ml-2 sm:inline dark:text-slate-400', d.file));
    head.append(title);
    if (canEdit) {
      const b = button('btn btn-sm', 'Edit YAML', () => openYaml(sec, d.domain));
      b.dataset.action = 'edit-yaml';
      b.setAttribute('aria-label', `Edit the YAML of domain ${d.domain}`);
      head.append(b);
    }
    sec.append(head);
    const yamlSlot = el('div', 'yaml-slot');
    sec.append(yamlSlot);

    const rules = d.rules || [];
    if (rules.length) {
      sec.append(el('h3', 'text-xs font-semibold uppercase tracking-wide text-slate-600 dark:text-slate-400', 'Descriptor rules'));
      const headers = ['Descriptor path', 'Rule', 'Algorithm', 'Limit', 'Window', 'Burst', 'Shadow', 'Unlimited'];
      if (canEdit) headers.push('Actions');
      const { wrap, tbody } = table(headers, 'min-w-[48rem]');
      for (const r of rules) {
        const tr = el('tr');
        tr.dataset.rule = r.path;
        tr.dataset.kind = 'rule';
        cell(tr, r.path || '—', 'font-mono text-xs break-all');
        cell(tr, r.name || '—');
        limitsCells(tr, r.limits, r.unlimited, r.name);
        tr.append(yesNo(r.shadow, 'shadow'), yesNo(r.unlimited, 'unlimited'));
        if (canEdit) editCell(tr, d.domain, r, 'rule', headers.length);
        tbody.append(tr);
      }
      sec.append(wrap);
    }
    const hrules = d.http_rules || [];
    if (hrules.length) {
      sec.append(el('h3', 'text-xs font-semibold uppercase tracking-wide text-slate-600 dark:text-slate-400', 'HTTP rules (ext_authz)'));
      const headers = ['Rule', 'Match', 'Key', 'On missing key', 'Algorithm', 'Limit', 'Window', 'Burst', 'Shadow'];
      if (canEdit) headers.push('Actions');
      const { wrap, tbody } = table(headers, 'min-w-[56rem]');
      for (const r of hrules) {
        const tr = el('tr');
        tr.dataset.rule = r.name;
        tr.dataset.kind = 'http_rule';
        cell(tr, r.name || '—');
        const methods = r.methods && r.methods.length ? r.methods.join('|') : 'any method';
        cell(tr, `${methods} ${r.host || 'any host'} ${r.path_prefix || '/'}`, 'font-mono text-xs break-all');
        cell(tr, (r.key || []).join(' + ') || '—', 'font-mono text-xs');
        cell(tr, r.on_missing || '—');
        limitsCells(tr, r.limits, false, r.name);
        tr.append(yesNo(r.shadow, 'shadow'));
        if (canEdit) editCell(tr, d.domain, r, 'http_rule', headers.length);
        tbody.append(tr);
      }
      sec.append(wrap);
    }
    if (!rules.length && !hrules.length) sec.append(el('p', 'empty', 'This domain has no rules.'));
    root.append(sec);
  }
}

function renderHistory() {
  const list = $('cfg-history');
  list.textContent = '';
  const items = state.history || [];
  if (!items.length) {
    list.append(el('li', 'text-sm text-slate-600 dark:text-slate-400', 'No stored versions yet.'));
    return;
  }
  const current = state.view?.version;
  const canEdit = editable();
  for (const h of items) {
    const li = el('li', 'hist-item');
    li.dataset.version = h.version;
    const head = el('div', 'flex flex-wrap items-center gap-x-2 gap-y-1');
    head.append(el('span', 'badge badge-version font-mono', `v${h.version}`));
    if (h.version === current) head.append(el('span', 'badge badge-ok', 'current'));
    head.append(el('span', 'text-sm font-medium', h.author || '—'));
    head.append(el('span', 'badge badge-yes', h.source || '—'));
    const t = el('span', 'text-xs text-slate-600 dark:text-slate-400', fmtDateTime(h.created_at));
    if (h.remote) t.title = `from ${h.remote}`;
    head.append(t);
    if (canEdit && h.version !== current) {
      const b = button('btn btn-sm ml-auto', 'Roll back to this', () => rollback(h.version));
      b.dataset.action = 'rollback';
      b.setAttribute('aria-label', `Roll back to version ${h.version}`);
      head.append(b);
    }
    li.append(head);
    if (h.message) li.append(el('p', 'mt-1 break-words text-xs italic text-slate-700 dark:text-slate-300', h.message));
    const summary = h.summary || ((h.changes || []).map((c) => c.text).join('\n'));
    li.append(el('p', 'hist-summary', summary || (h.source === 'seed' ? 'first version' : 'no recorded difference')));
    list.append(li);
  }
}

function renderReplicas(data) {
  const root = $('cfg-replicas');
  root.textContent = '';
  const reps = data?.replicas || [];
  if (!reps.length) {
    root.append(el('p', 'text-sm text-slate-600 dark:text-slate-400', 'No replica has reported yet.'));
    return;
  }
  const { wrap, tbody } = table(['Replica', 'Version', 'Applied', 'Lag', 'State', 'Last error'], 'min-w-[36rem]');
  for (const r of reps) {
    const tr = el('tr');
    tr.dataset.replica = r.replica;
    cell(tr, r.replica || '—', 'font-mono text-xs break-all');
    cell(tr, r.version ?? '—', 'font-mono tabular-nums');
    cell(tr, fmtDateTime(r.applied_at), 'whitespace-nowrap text-xs');
    cell(tr, fmtSeconds(Number(r.lag_seconds)), 'whitespace-nowrap tabular-nums');
    const s = el('td', 'td');
    s.append(el('span', `badge ${r.in_sync ? 'badge-ok' : 'badge-warn'}`, r.in_sync ? 'in sync' : 'behind'));
    tr.append(s);
    const e = el('td', 'td text-xs');
    if (r.last_error) {
      e.append(el('span', 'text-rose-700 dark:text-rose-300', r.last_error));
      if (r.last_error_at) e.append(el('span', 'block text-slate-600 dark:text-slate-400', fmtDateTime(r.last_error_at)));
    } else e.textContent = '—';
    tr.append(e);
    tbody.append(tr);
  }
  root.append(wrap);
}

// ---------- loading ----------

async function loadStatus() {
  const r = await request('GET', '/api/v1/status');
  if (r.ok) state.status = r.data;
  return r;
}

// refresh reloads the limits, status and history, and re-renders (the domains only when no editor is open).
export function refresh() {
  if (!session.api) return Promise.resolve();
  if (state.refreshing) return state.refreshing;
  state.refreshing = (async () => {
    const [lim, , hist] = await Promise.all([
      request('GET', '/api/v1/limits'), loadStatus(), request('GET', '/api/v1/limits/history', { query: { limit: 50 } }),
    ]);
    if (lim.ok) state.view = lim.data;
    else $('cfg-domains').replaceChildren(el('p', 'alert-error', `Could not load the limits: ${problemText(lim.problem)}`));
    if (hist.ok) state.history = Array.isArray(hist.data) ? hist.data : (hist.data?.history || []);
    renderHeader();
    if (lim.ok) {
      if (state.editor || state.yaml) markStale();
      else renderDomains();
    }
    renderHistory();
    if (state.visible) await loadReplicas(); // a new version: show it reaching the replicas at once
  })().finally(() => { state.refreshing = null; });
  return state.refreshing;
}

async function loadReplicas() {
  const r = await request('GET', '/api/v1/replicas');
  if (r.ok) renderReplicas(r.data);
  else $('cfg-replicas').replaceChildren(el('p', 'text-sm text-rose-700 dark:text-rose-300', `Could not list the replicas: ${problemText(r.problem)}`));
}

async function poll() {
  if (!session.api) return;
  const [st] = await Promise.all([loadStatus(), loadReplicas()]);
  if (st.ok) {
    if (state.view && st.data.version !== state.view.version) await refresh();
    else renderHeader();
  }
}

function schedulePoll() {
  clearTimeout(state.pollTimer);
  if (!state.visible || !session.api) return;
  // Ends when the pane is hidden (setVisible(false) clears it) or the page unloads.
  state.pollTimer = setTimeout(async () => {
    if (document.visibilityState === 'visible') await poll();
    schedulePoll();
  }, POLL_MS);
}

// setVisible is called by the tabs: the replicas and status are polled every POLL_MS while the pane shows.
export function setVisible(on) {
  state.visible = on;
  if (on && session.api) poll().finally(schedulePoll);
  else clearTimeout(state.pollTimer);
}

// fromWS takes the /ws "limits" (hello or a change): the view itself without the admin API, else a hint to
// refresh when its version differs from the one shown.
export function fromWS(L) {
  if (!L) return;
  if (!session.api) {
    state.view = L;
    renderHeader();
    renderDomains();
    return;
  }
  if (!state.view || L.version !== state.view.version) refresh();
}

// init shows the panels this session can use and loads the data.
export function init() {
  $('cfg-panels').hidden = !session.api;
  renderHeader();
  if (session.api) refresh();
}

// ---------- problems ----------

// conflictNote fills box with "the limits changed meanwhile (now version N) — reload" and a Reload button.
function conflictNote(box, version) {
  box.replaceChildren();
  box.className = 'alert-warn editor-msg';
  box.dataset.kind = 'conflict';
  box.append(el('span', '', `The limits changed meanwhile (now version ${version ?? '?'}) — reload to edit the current version.`));
  const b = button('btn btn-sm ml-2', 'Reload', () => { closeEditor(); closeYaml(); refresh(); });
  b.dataset.action = 'reload';
  box.append(b);
  box.classList.remove('hidden');
}

function message(box, text, kind = 'error') {
  box.replaceChildren();
  box.className = `${kind === 'error' ? 'alert-error' : 'alert-info'} editor-msg`;
  box.dataset.kind = kind;
  box.textContent = text;
  box.classList.toggle('hidden', !text);
}

// handleProblem shows a failed write: conflicts, read-only, or the error list (fieldError places errors
// next to their field when it can and returns false when not).
async function handleProblem(r, box, fieldError) {
  const p = r.problem || {};
  const s = slug(p);
  if (r.status === 412 || (r.status === 409 && s !== 'read-only')) {
    let v = p.current_version;
    if (v === undefined) { const st = await loadStatus(); v = st.ok ? st.data.version : undefined; }
    conflictNote(box, v);
    return;
  }
  if (r.status === 409 && s === 'read-only') {
    message(box, 'The limits come from files now: editing is off.');
    loadStatus().then(renderHeader);
    return;
  }
  const errs = Array.isArray(p.errors) ? p.errors : [];
  const rest = errs.filter((e) => !fieldError(e));
  if (!errs.length || rest.length) {
    message(box, errs.length ? `${p.title || 'Invalid'}:` : problemText(p));
    if (rest.length) {
      const ul = el('ul', 'mt-1 list-disc space-y-0.5 pl-5');
      for (const e of rest) ul.append(el('li', 'error-item', errorLine(e)));
      box.append(ul);
    }
  } else {
    message(box, '');
  }
}

function errorLine(e) {
  const where = [e.line ? `line ${e.line}` : '', e.field || ''].filter(Boolean).join(' · ');
  return where ? `${where}: ${e.reason || 'invalid'}` : (e.reason || 'invalid');
}

// ---------- the rule editor ----------

function unitOf(seconds) {
  const u = UNITS.find(([, s]) => s === seconds);
  return u ? u[0] : '';
}

function field(name, label, control) {
  const wrap = el('label', `ed-field ed-field-${name}`);
  wrap.append(el('span', 'ed-label', label), control);
  const err = el('span', 'field-error hidden');
  err.id = `ed-${name}-error`;
  err.setAttribute('role', 'alert');
  control.id = `ed-${name}`;
  control.name = name;
  control.setAttribute('aria-describedby', err.id);
  wrap.append(err);
  return wrap;
}

function check(name, label, checked) {
  const wrap = el('label', `ed-check ed-field-${name}`);
  const box = el('input');
  box.type = 'checkbox';
  box.checked = checked;
  box.id = `ed-${name}`;
  box.name = name;
  const err = el('span', 'field-error hidden');
  err.id = `ed-${name}-error`;
  box.setAttribute('aria-describedby', err.id);
  const row = el('span', 'flex items-center gap-2');
  row.append(box, el('span', '', label));
  wrap.append(row, err);
  return wrap;
}

function select(options, value) {
  const s = el('select', 'input');
  for (const [v, label] of options) s.append(new Option(label, v));
  s.value = value;
  return s;
}

function numberInput(value) {
  const i = el('input', 'input tabular-nums');
  i.type = 'text';
  i.inputMode = 'numeric';
  i.autocomplete = 'off';
  i.value = value === null || value === undefined ? '' : String(value);
  return i;
}

function closeEditor() {
  const ed = state.editor;
  if (!ed) return;
  state.editor = null;
  ed.row.remove();
  ed.tr.classList.remove('editing');
  const b = ed.tr.querySelector('[data-action=edit]');
  if (b) { b.setAttribute('aria-expanded', 'false'); b.focus(); }
  if (state.stale && !state.yaml) renderDomains();
}

function openEditor(tr, domain, rule, kind, colspan) {
  if (state.editor && state.editor.tr === tr) { closeEditor(); return; }
  closeEditor();
  const name = kind === 'http_rule' ? rule.name : rule.path;
  const limits = rule.limits || [];
  const multi = limits.length > 1;
  const l0 = limits[0] || null;
  const window0 = l0 ? Number(l0.window_seconds) : 0;
  const orig = {
    requests: l0 ? String(l0.requests) : '',
    unit: l0 ? unitOf(window0) || 'custom' : '',
    algorithm: l0?.algorithm || 'fixed_window',
    burst: l0 && l0.algorithm === 'token_bucket' && l0.burst ? String(l0.burst) : '',
    shadow: !!rule.shadow,
    unlimited: !!rule.unlimited,
  };

  const row = el('tr', 'editor-row');
  const td = el('td', 'p-0');
  td.colSpan = colspan;
  const form = el('form', 'editor');
  form.noValidate = true;
  form.setAttribute('aria-label', `Edit ${name}`);
  form.append(el('p', 'editor-title', `Edit ${name}`));

  const fields = el('div', 'ed-fields');
  const requests = numberInput(orig.requests);
  const unitOpts = UNITS.map(([u]) => [u, u]);
  if (orig.unit === 'custom') unitOpts.unshift(['custom', `custom (${fmtWindow(window0)})`]);
  if (orig.unit === '') unitOpts.unshift(['', 'choose…']);
  const unit = select(unitOpts, orig.unit);
  const algorithm = select(ALGORITHMS.map((a) => [a, a]), orig.algorithm);
  const burst = numberInput(orig.burst);
  burst.placeholder = 'default: requests';
  const quota = [
    field('requests_per_unit', 'Requests per unit', requests),
    field('unit', 'Unit', unit),
    field('algorithm', 'Algorithm', algorithm),
    field('burst', 'Burst', burst),
  ];
  if (!multi) {
    fields.append(...quota);
    form.append(fields);
  }
  const flags = el('div', 'ed-flags');
  flags.append(check('shadow_mode', 'Shadow (count, never deny)', orig.shadow));
  if (kind === 'rule' && !multi) flags.append(check('unlimited', 'Unlimited (no limit at all)', orig.unlimited));
  form.append(flags);
  if (multi) {
    form.append(el('p', 'mt-2 text-xs text-slate-600 dark:text-slate-400',
      `This rule has ${limits.length} limits: change them with Edit YAML. Here you can switch shadow mode.`));
  }

  const actions = el('div', 'ed-actions');
  const preview = button('btn', 'Preview', () => sendPatch(true));
  preview.id = 'ed-preview';
  const apply = button('btn btn-primary', 'Apply', () => sendPatch(false));
  apply.id = 'ed-apply';
  const cancel = button('btn', 'Cancel', () => closeEditor());
  cancel.id = 'ed-cancel';
  actions.append(preview, apply, cancel);
  form.append(actions);
  const msg = el('div', 'editor-msg hidden');
  msg.id = 'ed-msg';
  msg.setAttribute('role', 'alert');
  const diff = el('div', 'editor-diff hidden');
  diff.id = 'ed-diff';
  diff.setAttribute('aria-live', 'polite');
  form.append(msg, diff);
  form.addEventListener('submit', (e) => { e.preventDefault(); sendPatch(true); });
  form.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.preventDefault(); closeEditor(); } });

  const inner = el('div', 'editor-inline');
  inner.append(form);
  td.append(inner);
  row.append(td);
  tr.after(row);
  tr.classList.add('editing');
  tr.querySelector('[data-action=edit]')?.setAttribute('aria-expanded', 'true');

  const ed = { tr, row, domain, name, kind, multi, orig, version: state.view?.version, form, msg, diff, preview, apply,
    inputs: { requests, unit, algorithm, burst, shadow: form.querySelector('#ed-shadow_mode'), unlimited: form.querySelector('#ed-unlimited') } };
  state.editor = ed;
  const sync = () => {
    const un = ed.inputs.unlimited?.checked;
    for (const i of [requests, unit, algorithm, burst]) i.disabled = !!un;
    form.querySelector('.ed-field-burst')?.classList.toggle('hidden', algorithm.value !== 'token_bucket');
  };
  algorithm.addEventListener('change', sync);
  ed.inputs.unlimited?.addEventListener('change', sync);
  form.addEventListener('input', () => { diff.classList.add('hidden'); });
  sync();
  (multi ? ed.inputs.shadow : requests).focus();
}

const FIELD_OF = {
  requests_per_unit: 'requests_per_unit', unit: 'unit', unit_multiplier: 'unit', window: 'unit', algorithm: 'algorithm',
  burst: 'burst', shadow_mode: 'shadow_mode', shadow: 'shadow_mode', unlimited: 'unlimited',
};

function setFieldError(name, text) {
  const err = document.getElementById(`ed-${name}-error`);
  const input = document.getElementById(`ed-${name}`);
  if (!err || !input || input.closest('.hidden')) return false;
  err.textContent = text;
  err.classList.remove('hidden');
  input.setAttribute('aria-invalid', 'true');
  return true;
}

function clearFieldErrors(form) {
  for (const e of form.querySelectorAll('.field-error')) { e.textContent = ''; e.classList.add('hidden'); }
  for (const i of form.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
}

// readPatch builds a config.RulePatch holding only what differs from the rule as it was opened.
function readPatch(ed) {
  const { requests, unit, algorithm, burst, shadow, unlimited } = ed.inputs;
  const o = ed.orig;
  const p = {};
  const errs = {};
  if (shadow && shadow.checked !== o.shadow) p.shadow_mode = shadow.checked;
  const un = unlimited ? unlimited.checked : false;
  if (unlimited && un !== o.unlimited) p.unlimited = un;
  if (!ed.multi && !un) {
    const whole = (s) => /^\d+$/.test(s) && Number(s) <= Number.MAX_SAFE_INTEGER;
    const rq = requests.value.trim();
    if (!whole(rq)) errs.requests_per_unit = rq === '' ? 'required' : 'a whole number, 0 or more';
    else if (rq !== o.requests) p.requests_per_unit = Number(rq);
    if (unit.value === '') errs.unit = 'choose a unit';
    else if (unit.value !== 'custom' && unit.value !== o.unit) {
      p.unit = unit.value;
      if (o.unit === 'custom') p.unit_multiplier = 0; // a custom window (multiplier or window:) becomes one unit
    }
    if (algorithm.value !== o.algorithm) p.algorithm = algorithm.value;
    const b = burst.value.trim();
    if (algorithm.value === 'token_bucket' && b !== o.burst) {
      if (b === '') p.burst = 0; // removes burst: the capacity is requests_per_unit
      else if (!whole(b) || Number(b) < 1) errs.burst = 'a whole number, 1 or more (or empty)';
      else p.burst = Number(b);
    }
  }
  return { patch: p, errs };
}

async function sendPatch(dry) {
  const ed = state.editor;
  if (!ed) return;
  clearFieldErrors(ed.form);
  message(ed.msg, '');
  const { patch, errs } = readPatch(ed);
  if (Object.keys(errs).length) {
    for (const [k, v] of Object.entries(errs)) setFieldError(k, v);
    return;
  }
  if (!Object.keys(patch).length) {
    message(ed.msg, 'Nothing changed yet: edit a field first.', 'info');
    return;
  }
  ed.preview.disabled = ed.apply.disabled = true;
  const r = await request('PATCH', `/api/v1/limits/${enc(ed.domain)}/rules/${enc(ed.name)}`,
    { json: patch, ifMatch: ed.version, query: dry ? { dry_run: 'true' } : undefined });
  ed.preview.disabled = ed.apply.disabled = false;
  if (state.editor !== ed) return; // closed meanwhile
  if (r.ok) {
    if (dry) {
      ed.diff.replaceChildren(el('p', 'editor-diff-title', `Preview against version ${r.data?.base_version ?? ed.version}: nothing is stored until you apply.`),
        renderChanges(r.data?.changes));
      ed.diff.classList.remove('hidden');
      return;
    }
    toast(`version ${r.data?.version ?? '?'} applied`);
    closeEditor();
    await refresh();
    document.querySelector(`#cfg-domains tr[data-rule="${CSS.escape(ed.name)}"] [data-action=edit]`)?.focus();
    return;
  }
  ed.diff.classList.add('hidden');
  await handleProblem(r, ed.msg, (e) => {
    const last = String(e.field || '').split('.').pop().replace(/\[\d+\]$/, '');
    const f = FIELD_OF[last];
    return f ? setFieldError(f, e.reason || 'invalid') : false;
  });
}

// markStale tells an open editor that newer limits arrived; the domains re-render when it closes.
function markStale() {
  state.stale = true;
  const v = state.view?.version;
  for (const ed of [state.editor, state.yaml]) {
    if (ed && ed.msg && ed.version !== v) conflictNote(ed.msg, v);
  }
}

// ---------- the YAML editor ----------

function closeYaml() {
  const y = state.yaml;
  if (!y) return;
  state.yaml = null;
  y.panel.remove();
  y.opener?.setAttribute('aria-expanded', 'false');
  if (state.stale && !state.editor) renderDomains();
}

async function openYaml(sec, domain) {
  if (state.yaml && state.yaml.domain === domain) { closeYaml(); return; }
  closeYaml();
  const opener = sec.querySelector('[data-action=edit-yaml]');
  const panel = el('div', 'editor yaml-editor');
  panel.append(el('p', 'editor-title', `YAML of domain ${domain}`));
  const status = el('p', 'text-sm text-slate-600 dark:text-slate-400', 'Loading…');
  panel.append(status);
  sec.querySelector('.yaml-slot').append(panel);
  opener?.setAttribute('aria-expanded', 'true');
  const y = { domain, panel, opener, version: null, msg: null };
  state.yaml = y;

  const r = await request('GET', `/api/v1/limits/${enc(domain)}`);
  if (state.yaml !== y) return;
  if (!r.ok) { status.textContent = `Could not load the YAML: ${problemText(r.problem)}`; return; }
  y.version = r.data?.version;
  status.textContent = `Version ${y.version}. Comments and order are kept; the whole domain is replaced on Apply.`;
  const ta = el('textarea', 'input yaml-text font-mono');
  ta.id = 'yaml-text';
  ta.spellcheck = false;
  ta.wrap = 'off';
  ta.autocomplete = 'off';
  ta.rows = Math.min(28, Math.max(10, String(r.data?.yaml || '').split('\n').length + 1));
  ta.value = r.data?.yaml || '';
  ta.setAttribute('aria-label', `YAML of domain ${domain}`);
  const actions = el('div', 'ed-actions');
  const preview = button('btn', 'Preview', () => sendYaml(true));
  preview.id = 'yaml-preview';
  const apply = button('btn btn-primary', 'Apply', () => sendYaml(false));
  apply.id = 'yaml-apply';
  const cancel = button('btn', 'Cancel', () => closeYaml());
  cancel.id = 'yaml-cancel';
  actions.append(preview, apply, cancel);
  const msg = el('div', 'editor-msg hidden');
  msg.id = 'yaml-msg';
  msg.setAttribute('role', 'alert');
  const diff = el('div', 'editor-diff hidden');
  diff.id = 'yaml-diff';
  diff.setAttribute('aria-live', 'polite');
  panel.append(ta, actions, msg, diff);
  ta.addEventListener('input', () => diff.classList.add('hidden'));
  Object.assign(y, { ta, msg, diff, preview, apply });
  if (state.stale && y.version !== state.view?.version) conflictNote(msg, state.view?.version);
  ta.focus();
}

async function sendYaml(dry) {
  const y = state.yaml;
  if (!y || !y.ta) return;
  message(y.msg, '');
  y.preview.disabled = y.apply.disabled = true;
  const r = await request('PUT', `/api/v1/limits/${enc(y.domain)}`,
    { text: y.ta.value, contentType: 'application/yaml', ifMatch: y.version, query: dry ? { dry_run: 'true' } : undefined });
  y.preview.disabled = y.apply.disabled = false;
  if (state.yaml !== y) return;
  if (r.ok) {
    if (dry) {
      y.diff.replaceChildren(el('p', 'editor-diff-title', `Preview against version ${r.data?.base_version ?? y.version}: nothing is stored until you apply.`),
        renderChanges(r.data?.changes));
      y.diff.classList.remove('hidden');
      return;
    }
    toast(`version ${r.data?.version ?? '?'} applied`);
    closeYaml();
    await refresh();
    return;
  }
  y.diff.classList.add('hidden');
  await handleProblem(r, y.msg, () => false);
}

// ---------- rollback ----------

async function rollback(version) {
  const current = state.view?.version;
  const body = { version: String(version) };
  const dry = await request('POST', '/api/v1/limits/rollback', { json: body, ifMatch: current, query: { dry_run: 'true' } });
  if (!dry.ok) {
    toast(rollbackError(dry, version), 'error');
    if (dry.status === 412 || dry.status === 409) refresh();
    return;
  }
  const node = el('div', 'space-y-2');
  node.append(el('p', 'text-sm', `This stores a new version with the limits of version ${version}; every replica applies it. Difference from the running version ${current}:`),
    renderChanges(dry.data?.changes));
  const ok = await confirmDialog({ title: `Roll back to version ${version}?`, body: node, ok: `Roll back to v${version}`, danger: true });
  if (!ok) return;
  const r = await request('POST', '/api/v1/limits/rollback', { json: body, ifMatch: current });
  if (!r.ok) {
    toast(rollbackError(r, version), 'error');
    if (r.status === 412 || r.status === 409) refresh();
    return;
  }
  toast(`version ${r.data?.version ?? '?'} applied (rollback to ${version})`);
  await refresh();
}

function rollbackError(r, version) {
  if (r.status === 412 || (r.status === 409 && slug(r.problem) !== 'read-only')) {
    return `The limits changed meanwhile (now version ${r.problem?.current_version ?? '?'}) — reloaded; try again.`;
  }
  if (r.status === 404) return `Version ${version} is no longer stored.`;
  return `Rollback failed: ${problemText(r.problem)}`;
}
