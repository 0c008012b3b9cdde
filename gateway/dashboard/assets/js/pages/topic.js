// Topic: partitions, groups with lag (events and time), pending, owners of
// partitions, dead letters and trimmed losses per group, a seek per group,
// the last events with their headers and payload, and a Scheduled tab.
import { api, seg } from '../api.js';
import { h, fill, table, empty, errorBox, every } from '../ui.js';
import * as f from '../format.js';
import { topicJump } from './overview.js';
import * as scheduled from './scheduled.js';
import * as seek from './seek.js';

const LAST = 20;

export function render(root, route, access) {
  const name = route.arg;
  if (!name) {
    fill(root, h('h1', {}, 'Topic'), topicJump());
    return null;
  }
  const stats = h('div', { class: 'cards' });
  const parts = h('section', { 'aria-labelledby': 'h-parts' });
  const groups = h('section', { 'aria-labelledby': 'h-groups' });
  const seekBox = h('div');
  const events = h('section', { 'aria-labelledby': 'h-events' });
  const main = h('div', { id: 'tab-main', role: 'tabpanel', 'aria-labelledby': 'tab-main-btn' },
    access.admin ? [h('h2', { id: 'h-parts' }, 'Partitions'), parts, h('h2', { id: 'h-groups' }, 'Consumer groups'), groups, seekBox] : null,
    h('h2', { id: 'h-events' }, 'Last events ', h('button', { type: 'button', class: 'quiet', onclick: () => loadEvents() }, 'Refresh')), events);
  const sched = h('div', { id: 'tab-scheduled', role: 'tabpanel', 'aria-labelledby': 'tab-scheduled-btn' });
  // Tabs (admin only: scheduled events need the admin grant); the tab is
  // kept in the address (?tab=scheduled) so that it can be bookmarked.
  let tab = access.admin && route.query.get('tab') === 'scheduled' ? 'scheduled' : 'main';
  let stopSched = () => {};
  const tabBtn = (id, label) => h('button', { type: 'button', role: 'tab', id: 'tab-' + id + '-btn', 'aria-controls': 'tab-' + id,
    class: 'tab', onclick: () => { location.hash = '#/topic/' + seg(name) + (id === 'main' ? '' : '?tab=' + id); } }, label);
  const schedCount = h('span', { id: 'sched-count' });
  const tabs = access.admin ? h('div', { role: 'tablist', class: 'tabs', 'aria-label': 'Topic views' },
    tabBtn('main', 'Partitions, groups, events'), tabBtn('scheduled', ['Scheduled ', schedCount])) : null;
  fill(root, h('h1', {}, 'Topic ', h('span', { class: 'mono' }, name)), stats, tabs, main, access.admin ? sched : null);
  function showTab() {
    for (const [id, panel] of [['main', main], ['scheduled', sched]]) {
      panel.hidden = id !== tab;
      const b = document.getElementById('tab-' + id + '-btn');
      if (b) b.setAttribute('aria-selected', String(id === tab));
    }
    stopSched();
    stopSched = tab === 'scheduled' ? scheduled.render(sched, name, schedCount) : () => {};
  }
  if (access.admin) showTab();

  async function loadAdmin() {
    let t;
    try {
      t = await api('/v1/topics/' + seg(name));
    } catch (e) {
      fill(stats);
      fill(parts, e.code === 'topic_not_found' ? empty('No topic "' + name + '".', 'Check the name, or ', h('a', { href: '#/' }, 'pick one on the overview'), '.') : errorBox(e, 'Topic'));
      fill(groups);
      return;
    }
    fill(stats, card('Events stored', f.num(t.length)), card('Partitions', t.partitions), card('Dead letters', f.num(t.dead_letters)),
      card('Memory', f.bytes(t.memory_bytes)), card('Created', f.ago(t.created)),
      card('Retention', t.config.max_len ? 'max ' + f.num(t.config.max_len) : t.config.max_age ? 'max age ' + t.config.max_age : 'unbounded'));
    fill(parts, table('', [{ label: 'Partition', num: true }, { label: 'Node' }, { label: 'Slot', num: true, narrow: true },
      { label: 'Events', num: true }, { label: 'Memory', num: true }, { label: 'Dead letters', num: true }, { label: 'Last event' }, { label: 'Stream key', narrow: true }],
    (t.partition_info || []).map((p) => ({
      attrs: { 'data-partition': p.partition },
      cells: [p.partition, h('span', { class: 'mono' }, p.node || '–'), p.slot, f.num(p.length),
        p.memory_bytes !== undefined ? f.bytes(p.memory_bytes) : '–', f.num(p.dead_letters),
        p.last_id ? f.ago(f.idTime(p.last_id)) : 'none yet', h('span', { class: 'mono' }, p.stream)],
    }))));
    api('/v1/topics/' + seg(name) + '/scheduled?limit=1').then((r) => { schedCount.textContent = '(' + f.num(r.total) + ')'; }, () => {});
    let gs, losses = null;
    try {
      gs = (await api('/v1/topics/' + seg(name) + '/groups')).groups || [];
    } catch (e) {
      fill(groups, errorBox(e, 'Groups'));
      return;
    }
    try {
      losses = {};
      for (const l of (await api('/v1/topics/' + seg(name) + '/losses')).groups || []) losses[l.group] = l;
    } catch { losses = null; /* the columns show – */ }
    const lost = (g) => {
      const l = losses && losses[g];
      if (!l) return losses ? '0' : '–';
      const n = l.trimmed_unread + l.trimmed_pending;
      return n ? h('span', { class: 'bad', title: f.num(l.trimmed_unread) + ' unread, ' + f.num(l.trimmed_pending) + ' pending when trimmed' }, f.num(n)) : '0';
    };
    const dead = (g) => {
      const l = losses && losses[g];
      if (!l) return losses ? '0' : '–';
      const n = f.num(l.dead_letters) + (l.dead_letters_exact ? '' : '+');
      return l.dead_letters ? h('a', { class: 'bad', href: '#/deadletters/' + seg(name) + '?group=' + encodeURIComponent(g) }, n) : '0';
    };
    fill(groups, gs.length ? [table('', [{ label: 'Group' }, { label: 'Consumers and their partitions' }, { label: 'Lag (events)', num: true },
      { label: 'Lag (time)', num: true }, { label: 'Pending', num: true }, { label: 'Oldest pending', num: true, narrow: true },
      { label: 'Retries scheduled', num: true, narrow: true }, { label: 'Dead letters', num: true }, { label: 'Trimmed unhandled', num: true, narrow: true },
      { label: 'Actions' }],
    gs.map((g) => ({
      attrs: { 'data-group': g.name },
      cells: [h('span', { class: 'mono' }, g.name), consumers(g),
        g.lag < 0 ? h('span', { class: 'warn', title: g.lag_unknown || '' }, 'unknown') : h('span', { class: g.lag ? 'warn lag' : 'lag' }, f.num(g.lag)),
        h('span', { class: 'lag-time' }, g.lag ? f.duration(g.lag_seconds) : '–'),
        f.num(g.pending), g.pending ? f.duration(g.oldest_pending_seconds) : '–', f.num(g.scheduled_retries),
        dead(g.name), lost(g.name),
        h('button', { type: 'button', class: 'quiet seek', 'aria-expanded': String(seekBox.dataset.group === g.name),
          'aria-controls': 'seek-form', onclick: () => openSeek(g) }, 'Seek…')],
    }))), partitionTable(gs)] : empty('No consumer group reads this topic yet.', 'Subscribe with a group, for example ',
      h('code', {}, 'curl -N "' + location.origin + '/v1/topics/' + seg(name) + '/events?group=billing"'), '.'));
  }

  function openSeek(g) {
    if (seekBox.dataset.group === g.name) {
      delete seekBox.dataset.group;
      fill(seekBox);
    } else {
      seekBox.dataset.group = g.name;
      fill(seekBox, seek.form(name, g, () => { delete seekBox.dataset.group; fill(seekBox); loadAdmin(); }));
      document.getElementById('seek-to')?.focus();
    }
    for (const b of groups.querySelectorAll('button.seek')) {
      b.setAttribute('aria-expanded', String(b.closest('tr').dataset.group === seekBox.dataset.group));
    }
  }

  async function loadEvents() {
    try {
      const es = await lastEvents(name, access);
      fill(events, es.length ? es.map(eventView) : empty('No events stored in this topic.', 'Publish one: ',
        h('code', {}, 'curl -X POST ' + location.origin + '/v1/topics/' + seg(name) + '/events -d hello')));
    } catch (e) {
      fill(events, errorBox(e, 'Events'));
    }
  }

  loadEvents();
  const stop = access.admin ? every(5000, loadAdmin) : () => {};
  return () => { stop(); stopSched(); };
}

// partitionTable shows each group's state per partition: the consumer that
// owns it (its lease, for ordered groups), the lease's age, pending and lag.
function partitionTable(gs) {
  const rows = [];
  for (const g of gs) {
    for (const p of g.partitions || []) {
      rows.push({
        attrs: { 'data-group': g.name, 'data-partition': p.partition, class: 'group-part' },
        cells: [h('span', { class: 'mono' }, g.name), p.partition, p.owner ? h('span', { class: 'mono owner' }, p.owner) : h('span', { class: 'muted' }, 'none'),
          p.owner ? f.duration(p.lease_age_seconds) : '–', f.num(p.pending),
          p.lag < 0 ? h('span', { class: 'warn', title: p.lag_unknown || '' }, 'unknown') : f.num(p.lag), p.lag ? f.duration(p.lag_seconds) : '–'],
      });
    }
  }
  if (!rows.length) return null;
  return h('details', { class: 'panel', open: gs.length <= 4 },
    h('summary', {}, 'Per partition: owners, pending and lag'),
    table('', [{ label: 'Group' }, { label: 'Partition', num: true }, { label: 'Owner' }, { label: 'Held for', num: true, narrow: true },
      { label: 'Pending', num: true }, { label: 'Lag (events)', num: true }, { label: 'Lag (time)', num: true }], rows));
}

// consumers shows a group's live consumers with the partitions each owns
// (from the per-partition owners), or the count where there are none.
function consumers(g) {
  const owns = new Map();
  for (const m of g.members || []) owns.set(m, []);
  for (const p of g.partitions || []) {
    if (!p.owner) continue;
    if (!owns.has(p.owner)) owns.set(p.owner, []);
    owns.get(p.owner).push(p.partition);
  }
  if (!owns.size) return f.num(g.consumers);
  return h('ul', { class: 'plain consumers' }, [...owns].map(([c, ps]) => h('li', { 'data-consumer': c }, h('span', { class: 'mono' }, c),
    ps.length ? ' owns ' + (ps.length === 1 ? 'partition ' : 'partitions ') + ps.sort((a, b) => a - b).join(', ') : ' owns no partition')));
}

/**
 * The newest events of a topic. The API pages from old to new, so this asks
 * for widening windows before the newest event until it has enough.
 */
async function lastEvents(name, access) {
  let newest = Date.now();
  if (access.admin) {
    try {
      const t = await api('/v1/topics/' + seg(name));
      newest = Math.max(0, ...(t.partition_info || []).map((p) => f.idTime(p.last_id)));
      if (!newest) return [];
    } catch { newest = Date.now(); }
  }
  let es = [];
  for (const back of [2000, 60000, 3600000, 0]) {
    const from = back ? 'from=' + Math.max(0, newest - back) + '&' : '';
    es = (await api('/v1/topics/' + seg(name) + '/events?' + from + 'limit=1000')).events || [];
    if (es.length >= LAST) break;
  }
  const seq = (p) => Number(p.split('-')[1]) || 0;
  es.sort((a, b) => f.idTime(b.position) - f.idTime(a.position) || seq(b.position) - seq(a.position));
  return es.slice(0, LAST);
}

/**
 * One event: a summary line that opens to its attributes, headers and
 * payload. when replaces the age in the summary (a scheduled event's due time).
 */
export function eventView(e, when) {
  const p = f.payload(e);
  const attrs = [['position', e.position], ['id', e.id], ['type', e.type], ['key', e.key], ['source', e.source],
    ['subject', e.subject], ['time', e.time], ['content type', e.content_type]].filter(([, v]) => v !== undefined && v !== '');
  const hdrs = Object.entries(e.headers || {});
  return h('details', { class: 'panel event', 'data-position': e.position, 'data-id': e.id || '' },
    h('summary', {}, h('span', { class: 'mono' }, e.position), ' · ', e.type || 'no type', e.key ? ' · key ' + e.key : '',
      ' · ', when || f.ago(e.time || f.idTime(e.position)), ' · ', h('span', { class: 'muted' }, p.kind)),
    h('dl', { class: 'kv' }, attrs.map(([k, v]) => [h('dt', {}, k), h('dd', { class: 'mono' }, v)])),
    hdrs.length ? [h('h3', { class: 'muted' }, 'Headers'), h('dl', { class: 'kv' }, hdrs.map(([k, v]) => [h('dt', { class: 'mono' }, k), h('dd', { class: 'mono' }, v)]))] : null,
    h('pre', { 'aria-label': 'payload (' + p.kind + ')' }, p.text));
}

function card(label, value) {
  return h('div', { class: 'card' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value));
}
