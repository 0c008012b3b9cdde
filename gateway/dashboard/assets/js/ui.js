// DOM helpers: elements, tables, sparklines, the confirm dialog, toasts.

/**
 * h('a', {href: '#/'}, 'text', child) builds an element. Attributes starting
 * with "on" are listeners; true/false toggle boolean attributes. Text is
 * always set as text, never parsed as HTML.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  add(el, children);
  return el;
}

function add(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) add(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  add(el, children);
  return el;
}

/**
 * A table: cols is [{label, num, narrow}] ("narrow": hidden on a phone),
 * rows are arrays of cells (a cell may be a node, a string or a number).
 */
export function table(caption, cols, rows) {
  return h('div', { class: 'scroll' }, h('table', {},
    h('caption', { class: 'muted', hidden: !caption }, caption || ''),
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col', class: cls(c) }, c.label)))),
    h('tbody', {}, rows.map((r) => h('tr', r.attrs || {}, (r.cells || r).map((v, i) => h('td', { class: cls(cols[i]) }, v)))))));
}

function cls(c) {
  return [c.num ? 'num' : '', c.narrow ? 'hide-narrow' : ''].join(' ').trim() || undefined;
}

/** An empty state that says what to do next. */
export function empty(title, ...next) {
  return h('div', { class: 'empty' }, h('strong', {}, title), ' ', ...next);
}

/** An error box for a failed API call. */
export function errorBox(e, what) {
  const hint = e.status === 403 ? ' Log in with a key that has the permission (the server config lists each key\'s grants).'
    : e.status === 401 ? ' Paste an API key in the field at the top.' : '';
  return h('div', { class: 'error', role: 'alert' }, h('strong', {}, what + ': '), e.message || String(e), hint);
}

/** A small SVG line of the values (newest last), labelled for screen readers. */
export function sparkline(values, label) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('viewBox', '0 0 120 26');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  const vs = values.length ? values : [0];
  const max = Math.max(...vs, 1e-9);
  const step = vs.length > 1 ? 120 / (vs.length - 1) : 0;
  const pts = vs.map((v, i) => (i * step).toFixed(1) + ',' + (24 - (v / max) * 22).toFixed(1)).join(' ');
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', vs.length === 1 ? '0,' + (24 - (vs[0] / max) * 22) + ' 120,' + (24 - (vs[0] / max) * 22) : pts);
  svg.append(line);
  return svg;
}

let toastTimer;
/** A short message at the bottom right, read by screen readers. */
export function toast(msg) {
  const t = document.getElementById('toast');
  t.textContent = msg;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.textContent = ''; }, 5000);
}

/** Asks before a destructive action; resolves true when confirmed. */
export function confirmAction(title, text, okLabel) {
  const d = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-ok').textContent = okLabel || 'Confirm';
  d.returnValue = '';
  return new Promise((resolve) => {
    // The answer is taken from the button as it is pressed (the form's
    // submit event), not from the close event: close is queued, and one of an
    // earlier opening can arrive after this one opened. Escape is a no.
    const form = d.querySelector('form');
    const done = (yes) => {
      form.removeEventListener('submit', onSubmit);
      d.removeEventListener('cancel', onCancel);
      resolve(yes);
    };
    const onSubmit = (e) => done(e.submitter?.value === 'ok');
    const onCancel = () => done(false);
    form.addEventListener('submit', onSubmit);
    d.addEventListener('cancel', onCancel);
    d.showModal();
  });
}

/** A labelled input: returns [wrapper, input]. */
export function field(id, label, attrs = {}) {
  const input = h(attrs.tag || 'input', { id, name: id, ...attrs, tag: undefined });
  return [h('div', { class: 'field' }, h('label', { for: id }, label), input), input];
}

/** A labelled select with options [[value, label]]. */
export function select(id, label, options, value) {
  const s = h('select', { id, name: id }, options.map(([v, l]) => h('option', { value: v, selected: v === value }, l)));
  return [h('div', { class: 'field' }, h('label', { for: id }, label), s), s];
}

/** A checkbox with its label. */
export function checkbox(id, label, checked) {
  const c = h('input', { type: 'checkbox', id, name: id, checked: !!checked });
  return [h('label', { class: 'check', for: id }, c, label), c];
}

/** Runs fn every ms milliseconds (and now) while the page is shown; returns a stop function. */
export function every(ms, fn) {
  let busy = false, stopped = false;
  const tick = async () => {
    if (busy || stopped || document.hidden) return;
    busy = true;
    try { await fn(); } finally { busy = false; }
  };
  tick();
  const id = setInterval(tick, ms);
  return () => { stopped = true; clearInterval(id); };
}
