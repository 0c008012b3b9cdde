// Dead letters: list with error, attempts and origin; inspect; redrive or
// delete the selected ones or all (after a confirmation).
import { api, seg } from '../api.js';
import { h, fill, table, empty, errorBox, toast, confirmAction, select } from '../ui.js';
import * as f from '../format.js';
import { eventView } from './topic.js';

export function render(root, route, access) {
  fill(root, h('h1', {}, 'Dead letters'));
  if (!access.admin) {
    root.append(empty('This key cannot read dead letters.', 'Dead letters need an admin grant on the topic; log in with an admin key to list, redrive or delete them.'));
    return null;
  }
  const bar = h('div', { class: 'toolbar' });
  const list = h('section', { 'aria-label': 'Dead letters' });
  root.append(bar, list);
  let topic = route.arg;
  let group = route.query.get('group') || '';
  let items = [];

  (async () => {
    let topics;
    try {
      topics = (await api('/v1/topics')).topics || [];
    } catch (e) {
      fill(list, errorBox(e, 'Topics'));
      return;
    }
    if (!topics.length) {
      fill(list, empty('No topics yet.', 'Dead letters appear here when a group gives up on an event.'));
      return;
    }
    if (!topic) topic = (topics.find((t) => t.dead_letters > 0) || topics[0]).name;
    const [tf, ts] = select('dl-topic', 'Topic', topics.map((t) => [t.name, t.name + ' (' + f.num(t.dead_letters) + ')']), topic);
    ts.addEventListener('change', () => { location.hash = '#/deadletters/' + seg(ts.value); });
    const [gf, gsel] = select('dl-group', 'Group', [['', 'all groups']], group);
    gsel.addEventListener('change', () => { group = gsel.value; load(); });
    fill(bar, tf, gf,
      h('button', { type: 'button', class: 'quiet', onclick: () => load() }, 'Refresh'),
      h('button', { type: 'button', id: 'redrive-selected', onclick: () => act('redrive', true) }, 'Redrive selected'),
      h('button', { type: 'button', id: 'redrive-all', onclick: () => act('redrive', false) }, 'Redrive all'),
      h('button', { type: 'button', id: 'delete-selected', class: 'danger', onclick: () => act('delete', true) }, 'Delete selected'),
      h('button', { type: 'button', id: 'delete-all', class: 'danger', onclick: () => act('delete', false) }, 'Delete all'));
    try {
      const gs = (await api('/v1/topics/' + seg(topic) + '/groups')).groups || [];
      for (const g of gs) gsel.append(h('option', { value: g.name, selected: g.name === group }, g.name));
    } catch { /* the list below says what is wrong */ }
    load();
  })();

  function selected() {
    return [...list.querySelectorAll('input[name="dl"]:checked')].map((c) => c.value);
  }

  async function load() {
    try {
      const q = new URLSearchParams({ limit: '1000' });
      if (group) q.set('group', group);
      items = (await api('/v1/topics/' + seg(topic) + '/deadletters?' + q)).dead_letters || [];
    } catch (e) {
      fill(list, errorBox(e, 'Dead letters'));
      return;
    }
    updateButtons();
    if (!items.length) {
      fill(list, empty('No dead letters in ' + topic + (group ? ' for group ' + group : '') + '.',
        'An event lands here when a group\'s handler fails it max_attempts times, or fails it as permanent. Nothing to do.'));
      return;
    }
    const all = h('input', { type: 'checkbox', id: 'dl-all', 'aria-label': 'Select all', onchange: (e) => {
      for (const c of list.querySelectorAll('input[name="dl"]')) c.checked = e.target.checked;
      updateButtons();
    } });
    fill(list, h('p', { class: 'muted' }, f.num(items.length) + ' dead letter' + (items.length === 1 ? '' : 's') + (items.length >= 1000 ? ' (the first 1,000)' : '') + '.'),
      table('', [{ label: all }, { label: 'Event' }, { label: 'Group' }, { label: 'Error' }, { label: 'Attempts', num: true },
        { label: 'Origin', narrow: true }, { label: 'Failed' }, { label: '' }],
      items.map((d, i) => ({
        attrs: { 'data-position': d.position },
        cells: [
          h('input', { type: 'checkbox', name: 'dl', value: d.position, id: 'dl-' + i, 'aria-label': 'Select ' + d.position, onchange: updateButtons }),
          h('label', { for: 'dl-' + i }, h('span', { class: 'mono' }, d.id || d.position), d.type ? ' · ' + d.type : ''),
          h('span', { class: 'mono' }, d.group),
          h('span', { class: 'bad' }, d.error || '–'),
          d.attempts,
          h('span', { class: 'mono' }, d.origin),
          f.ago(d.failed),
          h('button', { type: 'button', class: 'quiet', 'aria-expanded': 'false', onclick: (e) => inspect(e.target, d) }, 'Inspect'),
        ],
      }))));
  }

  function inspect(btn, d) {
    const row = btn.closest('tr');
    const next = row.nextElementSibling;
    if (next && next.classList.contains('inspect')) {
      next.remove();
      btn.setAttribute('aria-expanded', 'false');
      return;
    }
    const v = eventView(d);
    v.open = true;
    row.after(h('tr', { class: 'inspect' }, h('td', { colspan: 8 }, v)));
    btn.setAttribute('aria-expanded', 'true');
  }

  function updateButtons() {
    const n = selected().length;
    for (const id of ['redrive-selected', 'delete-selected']) {
      const b = document.getElementById(id);
      if (b) b.disabled = n === 0;
    }
    for (const id of ['redrive-all', 'delete-all']) {
      const b = document.getElementById(id);
      if (b) b.disabled = items.length === 0;
    }
  }

  async function act(kind, onlySelected) {
    const positions = onlySelected ? selected() : [];
    const n = onlySelected ? positions.length : items.length;
    const what = onlySelected ? n + ' selected dead letter' + (n === 1 ? '' : 's') : 'all ' + (items.length >= 1000 ? 'listed (up to 1,000)' : n) + ' dead letters' + (group ? ' of group ' + group : '');
    const ok = await confirmAction(kind === 'redrive' ? 'Redrive dead letters?' : 'Delete dead letters?',
      kind === 'redrive' ? 'Send ' + what + ' of ' + topic + ' back to their groups? Each is delivered again.'
        : 'Delete ' + what + ' of ' + topic + '? They cannot be recovered.', kind === 'redrive' ? 'Redrive' : 'Delete');
    if (!ok) return;
    const body = {};
    if (positions.length) body.positions = positions;
    if (group) body.group = group;
    try {
      const r = kind === 'redrive'
        ? await api('/v1/topics/' + seg(topic) + '/deadletters/redrive', { method: 'POST', body })
        : await api('/v1/topics/' + seg(topic) + '/deadletters', { method: 'DELETE', body });
      toast(kind === 'redrive' ? 'Redriven: ' + r.redriven : 'Deleted: ' + r.deleted);
    } catch (e) {
      toast((kind === 'redrive' ? 'Redrive' : 'Delete') + ' failed: ' + e.message);
    }
    load();
  }
  return null;
}
