// Topic: partitions, groups with lag and pending, dead letters per group,
// and the last events with their headers and payload.
import { api, seg } from '../api.js';
import { h, fill, table, empty, errorBox, every } from '../ui.js';
import * as f from '../format.js';
import { topicJump } from './overview.js';

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
  const events = h('section', { 'aria-labelledby': 'h-events' });
  fill(root, h('h1', {}, 'Topic ', h('span', { class: 'mono' }, name)), stats,
    access.admin ? [h('h2', { id: 'h-parts' }, 'Partitions'), parts, h('h2', { id: 'h-groups' }, 'Consumer groups'), groups] : null,
    h('h2', { id: 'h-events' }, 'Last events ', h('button', { type: 'button', class: 'quiet', onclick: () => loadEvents() }, 'Refresh')), events);

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
      { label: 'Events', num: true }, { label: 'Dead letters', num: true }, { label: 'Last event' }, { label: 'Stream key', narrow: true }],
    (t.partition_info || []).map((p) => [p.partition, h('span', { class: 'mono' }, p.node || '–'), p.slot, f.num(p.length), f.num(p.dead_letters),
      p.last_id ? f.ago(f.idTime(p.last_id)) : 'none yet', h('span', { class: 'mono' }, p.stream)])));
    let gs, dls = [];
    try {
      gs = (await api('/v1/topics/' + seg(name) + '/groups')).groups || [];
      if (t.dead_letters) dls = (await api('/v1/topics/' + seg(name) + '/deadletters?limit=1000')).dead_letters || [];
    } catch (e) {
      fill(groups, errorBox(e, 'Groups'));
      return;
    }
    const dlBy = {};
    for (const d of dls) dlBy[d.group] = (dlBy[d.group] || 0) + 1;
    // Lag in time is shown where the API reports it (lag_seconds).
    const lagTime = gs.some((g) => g.lag_seconds !== undefined);
    fill(groups, gs.length ? table('', [{ label: 'Group' }, { label: 'Consumers' }, { label: 'Lag (events)', num: true },
      lagTime ? { label: 'Lag (time)', num: true, narrow: true } : null, { label: 'Pending', num: true }, { label: 'Oldest pending', num: true },
      { label: 'Retries scheduled', num: true, narrow: true }, { label: 'Dead letters', num: true }].filter(Boolean),
    gs.map((g) => ({
      attrs: { 'data-group': g.name },
      cells: [h('span', { class: 'mono' }, g.name), consumers(g), h('span', { class: g.lag ? 'warn' : '' }, f.num(g.lag)),
        lagTime ? f.duration(g.lag_seconds) : null,
        f.num(g.pending), g.pending ? f.duration(g.oldest_pending_seconds) : '–', f.num(g.scheduled_retries),
        dlBy[g.name] ? h('a', { class: 'bad', href: '#/deadletters/' + seg(name) + '?group=' + encodeURIComponent(g.name) }, f.num(dlBy[g.name])) : '0']
        .filter((c) => c !== null),
    }))) : empty('No consumer group reads this topic yet.', 'Subscribe with a group, for example ',
      h('code', {}, 'curl -N "' + location.origin + '/v1/topics/' + seg(name) + '/events?group=billing"'), '.'));
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
  return stop;
}

// consumers shows the group's consumers: a count, or, where the API lists
// them, each consumer with the partitions it owns.
function consumers(g) {
  if (Array.isArray(g.consumers)) {
    return h('ul', {}, g.consumers.map((c) => h('li', {}, h('span', { class: 'mono' }, c.name),
      c.partitions ? ' owns ' + c.partitions.join(', ') : '')));
  }
  return f.num(g.consumers);
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

/** One event: a summary line that opens to its attributes, headers and payload. */
export function eventView(e) {
  const p = f.payload(e);
  const attrs = [['position', e.position], ['id', e.id], ['type', e.type], ['key', e.key], ['source', e.source],
    ['subject', e.subject], ['time', e.time], ['content type', e.content_type]].filter(([, v]) => v !== undefined && v !== '');
  const hdrs = Object.entries(e.headers || {});
  return h('details', { class: 'panel event', 'data-position': e.position, 'data-id': e.id || '' },
    h('summary', {}, h('span', { class: 'mono' }, e.position), ' · ', e.type || 'no type', e.key ? ' · key ' + e.key : '',
      ' · ', f.ago(e.time || f.idTime(e.position)), ' · ', h('span', { class: 'muted' }, p.kind)),
    h('dl', { class: 'kv' }, attrs.map(([k, v]) => [h('dt', {}, k), h('dd', { class: 'mono' }, v)])),
    hdrs.length ? [h('h3', { class: 'muted' }, 'Headers'), h('dl', { class: 'kv' }, hdrs.map(([k, v]) => [h('dt', { class: 'mono' }, k), h('dd', { class: 'mono' }, v)]))] : null,
    h('pre', { 'aria-label': 'payload (' + p.kind + ')' }, p.text));
}

function card(label, value) {
  return h('div', { class: 'card' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value));
}
