// The Scheduled tab of a topic: delayed events not due yet, the earliest
// first; inspect one, or cancel it after a confirmation.
import { api, seg } from '../api.js';
import { h, fill, table, empty, errorBox, toast, confirmAction, every } from '../ui.js';
import * as f from '../format.js';
import { eventView } from './topic.js';

const LIMIT = 200;

/** In how long a time comes: "in 4 min", or "due" once it has passed. */
function until(t) {
  const s = (Date.parse(t) - Date.now()) / 1000;
  return s <= 0 ? 'due' : 'in ' + f.duration(s);
}

/**
 * Renders the scheduled events of topic into box (refreshed every 5 s),
 * writes their total into count, and returns a stop function.
 */
export function render(box, topic, count) {
  const list = h('section', { 'aria-labelledby': 'h-sched' });
  fill(box, h('h2', { id: 'h-sched' }, 'Scheduled events ', h('button', { type: 'button', class: 'quiet', onclick: () => load() }, 'Refresh')),
    h('p', { class: 'muted' }, 'Delayed events wait in their partition\'s schedule and are appended to the topic (delivered to every group) when due.'),
    list);
  let open = new Set(); // ids whose event view is open, kept across refreshes

  async function load() {
    let r;
    try {
      r = await api('/v1/topics/' + seg(topic) + '/scheduled?limit=' + LIMIT);
    } catch (e) {
      fill(list, errorBox(e, 'Scheduled events'));
      return;
    }
    const evs = r.events || [];
    count.textContent = '(' + f.num(r.total) + ')';
    if (!evs.length) {
      fill(list, empty('No scheduled event waits in ' + topic + '.', 'Publish one with a delay: ',
        h('code', {}, 'curl -X POST ' + location.origin + '/v1/topics/' + seg(topic) + '/events -H "Content-Type: application/json" -d \'{"id":"call-42","data":{"who":"ada"},"delay":"10m"}\''), '.'));
      return;
    }
    fill(list, h('p', { class: 'muted' }, f.num(r.total) + ' scheduled event' + (r.total === 1 ? '' : 's') + (r.total > evs.length ? ' (the first ' + evs.length + ' shown)' : '') + '.'),
      table('', [{ label: 'Event' }, { label: 'Type' }, { label: 'Key', narrow: true }, { label: 'Partition', num: true, narrow: true },
        { label: 'Due', num: true }, { label: 'At', narrow: true }, { label: 'Actions' }],
      evs.map((e) => ({
        attrs: { 'data-id': e.id, class: 'sched-row' },
        cells: [h('span', { class: 'mono' }, e.id), e.type || '–', e.key || '–', e.partition ?? '–',
          h('span', { class: 'due' }, until(e.deliver_at)), new Date(e.deliver_at).toLocaleString(),
          h('span', { class: 'row-actions' },
            h('button', { type: 'button', class: 'quiet inspect', 'aria-expanded': String(open.has(e.id)), onclick: (ev) => inspect(ev.target, e) }, 'Inspect'),
            h('button', { type: 'button', class: 'danger cancel', 'aria-label': 'Cancel ' + e.id, onclick: () => cancel(e) }, 'Cancel'))],
      }))));
    for (const e of evs) if (open.has(e.id)) showEvent(list.querySelector('tr[data-id="' + CSS.escape(e.id) + '"]'), e);
  }

  function showEvent(row, e) {
    const v = eventView({ ...e, position: 'partition ' + e.partition + ', scheduled' }, 'due ' + until(e.deliver_at));
    v.open = true;
    row.after(h('tr', { class: 'inspect' }, h('td', { colspan: 7 }, v)));
  }

  function inspect(btn, e) {
    const row = btn.closest('tr');
    const next = row.nextElementSibling;
    if (next && next.classList.contains('inspect')) {
      next.remove();
      open.delete(e.id);
      btn.setAttribute('aria-expanded', 'false');
      return;
    }
    open.add(e.id);
    showEvent(row, e);
    btn.setAttribute('aria-expanded', 'true');
  }

  async function cancel(e) {
    const ok = await confirmAction('Cancel scheduled event?', 'Cancel ' + e.id + (e.type ? ' (' + e.type + ')' : '') + ' of ' + topic +
      ', due ' + new Date(e.deliver_at).toLocaleString() + '? It will not be delivered.', 'Cancel event');
    if (!ok) return;
    try {
      const r = await api('/v1/topics/' + seg(topic) + '/scheduled/' + seg(e.id), { method: 'DELETE' });
      toast(r.cancelled ? 'Cancelled ' + e.id + '.' : e.id + ' no longer waits (delivered or cancelled before).');
    } catch (err) {
      toast('Cancel failed: ' + err.message);
    }
    open.delete(e.id);
    load();
  }

  return every(5000, load);
}
