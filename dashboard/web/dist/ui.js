// Shared DOM helpers, formatting, toasts and the confirm dialog of the dashboard's modules.
// Invariant: every server string reaches the DOM through textContent (el's text argument), never innerHTML.

export const $ = (id) => document.getElementById(id);

export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = visible(String(text));
  return e;
}

// Control characters (but tab and newline) and bidirectional formatting characters in displayed text are
// shown as \u{…} escapes: a request value such as "\u202e…" must not reorder what the operator reads.
const HIDDEN = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
export function visible(s) {
  return s.replace(HIDDEN, (c) => `\\u{${c.codePointAt(0).toString(16).padStart(4, '0')}}`);
}

// button returns a <button type="button"> with the given classes, text and click handler.
export function button(cls, text, onClick) {
  const b = el('button', cls, text);
  b.type = 'button';
  if (onClick) b.addEventListener('click', onClick);
  return b;
}

// ---------- formatting ----------

export const fmtNum = (v, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : '—');
export const fmtInt = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '—');

export function fmtWindow(seconds) {
  if (!Number.isFinite(seconds) || seconds <= 0) return '—';
  const units = [['d', 86400], ['h', 3600], ['min', 60], ['s', 1]];
  for (const [u, n] of units) {
    if (seconds >= n && seconds % n === 0) return seconds === n ? `1 ${u}` : `${seconds / n} ${u}`;
  }
  return `${seconds} s`;
}

export function fmtDateTime(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime()) || d.getTime() <= 0) return '—';
  return d.toLocaleString('en-GB', { hour12: false });
}

// fmtSeconds: "0.12 s", "4.0 s", "3 min 5 s".
export function fmtSeconds(s) {
  if (!Number.isFinite(s) || s < 0) return '—';
  if (s < 1) return `${s.toFixed(2)} s`;
  if (s < 60) return `${s.toFixed(1)} s`;
  s = Math.round(s);
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ''}`;
  const m = Math.floor((s % 3600) / 60);
  return `${Math.floor(s / 3600)} h${m ? ` ${m} min` : ''}`;
}

// ---------- toasts ----------

// toast shows a short message in the corner (role=status region in index.html) for a few seconds.
export function toast(text, kind = 'ok') {
  const box = $('toasts');
  if (!box) return;
  const t = el('div', `toast toast-${kind}`, text);
  t.title = 'Click to dismiss';
  t.addEventListener('click', () => t.remove());
  box.append(t);
  while (box.children.length > 4) box.firstElementChild.remove();
  setTimeout(() => t.remove(), kind === 'error' ? 10000 : 6000);
}

// ---------- confirm dialog ----------

// confirmDialog opens the modal <dialog id="dialog"> with a title, a body node and two buttons; it resolves
// true when the user confirms, false on cancel or Escape.
export function confirmDialog({ title, body, ok = 'Confirm', danger = false }) {
  const d = $('dialog');
  $('dialog-title').textContent = title;
  $('dialog-body').replaceChildren(body);
  const okBtn = $('dialog-ok');
  okBtn.textContent = ok;
  okBtn.className = danger ? 'btn btn-danger' : 'btn btn-primary';
  return new Promise((resolve) => {
    const done = (v) => {
      okBtn.removeEventListener('click', onOK);
      $('dialog-cancel').removeEventListener('click', onCancel);
      d.removeEventListener('cancel', onCancel);
      if (d.open) d.close();
      resolve(v);
    };
    const onOK = () => done(true);
    const onCancel = (e) => { if (e) e.preventDefault(); done(false); };
    okBtn.addEventListener('click', onOK);
    $('dialog-cancel').addEventListener('click', onCancel);
    d.addEventListener('cancel', onCancel);
    d.showModal();
    $('dialog-cancel').focus();
  });
}

// ---------- diffs ----------

function limitText(l) {
  if (!l) return '';
  const unit = l.unit_multiplier > 1 ? `${l.unit_multiplier} ${l.unit}s` : l.unit || fmtWindow(l.window_seconds);
  let s = `${Number(l.requests_per_unit ?? 0).toLocaleString('en-US')}/${unit}`;
  if (l.algorithm) s += ` ${l.algorithm}`;
  if (l.burst) s += ` burst ${l.burst}`;
  return s;
}

// summaryText describes one side of a change (a config.RuleSummary) in one line.
export function summaryText(s) {
  if (!s) return '—';
  const parts = [];
  if (s.unlimited) parts.push('unlimited');
  else parts.push((s.limits || []).map(limitText).join(' + ') || 'no limit');
  if (s.shadow) parts.push('shadow');
  if (s.quota) parts.push('quota');
  return parts.join(', ');
}

// renderChanges lists config.Change values: their text line, and for a changed rule its before and after.
export function renderChanges(changes) {
  const list = el('ul', 'diff-list');
  if (!changes || !changes.length) {
    list.append(el('li', 'diff-none', 'No change: the limits would stay as they are.'));
    return list;
  }
  for (const c of changes) {
    const li = el('li', `diff-item diff-${c.op || 'change'}`);
    const head = el('div', 'flex flex-wrap items-baseline gap-2');
    head.append(el('span', `badge diff-op diff-op-${c.op || 'change'}`, c.op || 'change'), el('span', 'diff-text font-mono', c.text || c.path));
    li.append(head);
    if (c.op === 'change' && (c.before || c.after)) {
      const ba = el('div', 'diff-ba');
      ba.append(el('span', 'diff-before', `before: ${summaryText(c.before)}`), el('span', 'diff-after', `after: ${summaryText(c.after)}`));
      li.append(ba);
    }
    list.append(li);
  }
  return list;
}
