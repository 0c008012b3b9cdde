// Overview: topics with events/s sparklines, lag and dead letters; Redis
// nodes; the gateway's streams.
import { api, seg } from '../api.js';
import { h, fill, table, empty, errorBox, sparkline, every } from '../ui.js';
import * as f from '../format.js';

const POLL_MS = 3000;
const HISTORY = 100; // samples kept per topic: 5 minutes at 3 s

// Kept across visits of the page in this tab: the sparklines go on where they were.
const history = new Map(); // topic -> {last: {t, length}, rates: []}

function sample(topics, now) {
  for (const t of topics) {
    let s = history.get(t.name);
    if (!s) { s = { last: null, rates: [] }; history.set(t.name, s); }
    if (s.last) {
      const dt = (now - s.last.t) / 1000;
      // Length grows by the events stored; trimming (max_len, max_age) makes
      // the change a lower bound, and a shrinking topic counts as 0.
      const r = dt > 0 ? Math.max(0, t.length - s.last.length) / dt : 0;
      s.rates.push(r);
      if (s.rates.length > HISTORY) s.rates.shift();
    }
    s.last = { t: now, length: t.length };
  }
}

/** Sums the values of a Prometheus gauge or counter by one label. */
export function metricByLabel(text, name, label) {
  const out = {};
  const re = new RegExp('^' + name + '\\{([^}]*)\\}\\s+([0-9.eE+-]+)', 'm');
  for (const line of text.split('\n')) {
    const m = re.exec(line);
    if (!m) continue;
    const l = /(?:^|,)\s*([a-z_]+)="([^"]*)"/g;
    let lm, key = '';
    while ((lm = l.exec(m[1]))) if (lm[1] === label) key = lm[2];
    out[key] = (out[key] || 0) + Number(m[2]);
  }
  return out;
}

export function render(root, _route, access) {
  const cards = h('div', { class: 'cards', 'aria-label': 'Totals' });
  const topicsBox = h('section', { 'aria-labelledby': 'h-topics' });
  const nodesBox = h('section', { 'aria-labelledby': 'h-nodes' });
  const gwBox = h('section', { 'aria-labelledby': 'h-gw' });
  fill(root, h('h1', {}, 'Overview'), cards,
    h('h2', { id: 'h-topics' }, 'Topics'), topicsBox,
    h('h2', { id: 'h-nodes' }, 'Redis'), nodesBox,
    h('h2', { id: 'h-gw' }, 'Gateway'), gwBox);

  if (!access.admin) {
    fill(topicsBox, empty('This key cannot list topics.', 'The overview needs an admin grant. Open a topic you may read: ',
      topicJump()));
    fill(nodesBox, empty('Hidden for this key.', 'Redis nodes need the admin grant "*".'));
    fill(gwBox, empty('Hidden for this key.', 'Gateway metrics need the admin grant "*".'));
    fill(cards);
    return null;
  }

  async function poll() {
    let topics;
    try {
      topics = (await api('/v1/topics')).topics || [];
    } catch (e) {
      fill(topicsBox, errorBox(e, 'Topics'));
      return;
    }
    const now = Date.now();
    sample(topics, now);
    // Lag per topic: the sum over its groups (at most 200 topics asked per round).
    const lag = new Map();
    await Promise.all(topics.slice(0, 200).map(async (t) => {
      try {
        const gs = (await api('/v1/topics/' + seg(t.name) + '/groups')).groups || [];
        lag.set(t.name, { lag: gs.reduce((a, g) => a + Math.max(0, g.lag || 0), 0), groups: gs.length,
          age: gs.reduce((a, g) => Math.max(a, g.lag_seconds || 0), 0),
          pending: gs.reduce((a, g) => a + (g.pending || 0), 0) });
      } catch { lag.set(t.name, null); }
    }));
    let totalRate = 0, totalLag = 0, totalDL = 0;
    const rows = topics.map((t) => {
      const s = history.get(t.name);
      const r = s.rates.length ? s.rates[s.rates.length - 1] : null;
      totalRate += r || 0;
      const l = lag.get(t.name);
      totalLag += l ? l.lag : 0;
      totalDL += t.dead_letters || 0;
      return {
        attrs: { 'data-topic': t.name },
        cells: [
          h('a', { href: '#/topic/' + seg(t.name) }, t.name),
          t.partitions,
          f.num(t.length),
          h('span', { class: 'rate' }, f.rate(r)),
          sparkline(s.rates, 'events per second of ' + t.name + ' over the last ' + Math.round(s.rates.length * POLL_MS / 60000 * 10) / 10 + ' minutes'),
          l ? h('span', { class: l.lag > 0 ? 'warn lag' : 'lag', 'data-lag': l.lag }, f.num(l.lag)) : '–',
          l && l.age ? h('span', { class: 'lag-time' }, f.duration(l.age)) : '–',
          l ? f.num(l.groups) : '–',
          t.dead_letters ? h('a', { class: 'bad', href: '#/deadletters/' + seg(t.name) }, f.num(t.dead_letters)) : '0',
          f.bytes(t.memory_bytes),
        ],
      };
    });
    fill(cards,
      card('Topics', f.num(topics.length)),
      card('Events/s', f.rate(totalRate).replace('/s', '')),
      card('Total lag', f.num(totalLag)),
      card('Dead letters', f.num(totalDL)));
    fill(topicsBox, topics.length ? table('', [
      { label: 'Topic' }, { label: 'Partitions', num: true, narrow: true }, { label: 'Events', num: true },
      { label: 'Events/s', num: true }, { label: 'Last minutes', narrow: true }, { label: 'Lag', num: true },
      { label: 'Oldest unread', num: true, narrow: true }, { label: 'Groups', num: true, narrow: true }, { label: 'Dead letters', num: true }, { label: 'Memory', num: true, narrow: true },
    ], rows) : empty('No topics yet.', 'Publish an event to create one: ',
      h('code', {}, 'curl -X POST ' + location.origin + '/v1/topics/orders/events -H "Content-Type: application/json" -d \'{"data":{"order":1}}\''),
      ' or ', h('code', {}, 'herald publish orders \'{"order":1}\''), '.'));
  }

  async function pollServer() {
    if (!access.global) {
      fill(nodesBox, empty('Hidden for this key.', 'Redis nodes need the admin grant "*".'));
      fill(gwBox, empty('Hidden for this key.', 'Gateway metrics need the admin grant "*".'));
      return;
    }
    try {
      const hl = await api('/v1/health');
      const nodes = hl.nodes || [];
      const failing = hl.failing_partitions || [];
      const masters = nodes.filter((n) => n.role === 'master').length;
      fill(nodesBox,
        h('p', {}, (hl.cluster ? 'Redis Cluster' : 'Standalone Redis') + ': ' + nodes.length + ' node' + (nodes.length === 1 ? '' : 's') +
          ', ' + masters + ' master' + (masters === 1 ? '' : 's') + ', ' + (nodes.length - masters) + ' replica' + (nodes.length - masters === 1 ? '' : 's') +
          '. ' + (failing.length ? failing.length + ' partitions failing.' : 'No partition failing.')),
        table('', [{ label: 'Node' }, { label: 'Role' }, { label: 'Health' }, { label: 'Latency', num: true, narrow: true },
          { label: 'Memory', num: true }, { label: 'Replication' }], nodes.map((n) => ({
          attrs: { 'data-node': n.addr },
          cells: [h('span', { class: 'mono' }, n.addr), n.role === 'slave' ? 'replica' : n.role || '–',
            n.error ? h('span', { class: 'bad' }, 'down: ' + n.error) : h('span', { class: 'ok' }, 'ok'), f.seconds(n.latency_seconds),
            memory(n), replication(n.replication)],
        }))),
        failing.length ? table('Failing partitions', [{ label: 'Topic' }, { label: 'Partition', num: true }, { label: 'Since' }],
          failing.map((p) => [p.topic, p.partition, f.ago(p.since)])) : null);
    } catch (e) {
      fill(nodesBox, errorBox(e, 'Redis health'));
    }
    try {
      const text = await api('/metrics', { accept: 'text/plain', text: true });
      const streams = metricByLabel(text, 'herald_streams', 'kind');
      const names = { sse_group: 'SSE group streams', sse_tail: 'SSE live tails', sse_channel: 'SSE channel streams', monitor: 'Monitor streams', websocket: 'WebSockets' };
      const total = Object.values(streams).reduce((a, b) => a + b, 0);
      fill(gwBox, h('p', {}, f.num(total) + ' open stream' + (total === 1 ? '' : 's') + ' (SSE and WebSocket connections of every client).'),
        table('', [{ label: 'Kind' }, { label: 'Open', num: true }],
          Object.keys(names).map((k) => [names[k], f.num(streams[k] || 0)])));
    } catch (e) {
      fill(gwBox, errorBox(e, 'Gateway metrics'));
    }
  }

  const stops = [every(POLL_MS, poll), every(POLL_MS * 2, pollServer)];
  return () => stops.forEach((s) => s());
}

/** A node's memory: used, and of its maxmemory when it has one. */
function memory(n) {
  if (n.error || !n.memory_used_bytes) return '–';
  const used = h('span', { class: 'memory', 'data-bytes': n.memory_used_bytes }, f.bytes(n.memory_used_bytes));
  if (!n.memory_max_bytes) return used;
  const pct = n.memory_used_bytes / n.memory_max_bytes * 100;
  return h('span', { class: pct >= 90 ? 'bad' : pct >= 75 ? 'warn' : '' }, used, ' of ', f.bytes(n.memory_max_bytes), ' (' + pct.toFixed(0) + '%)');
}

/** A node's replication: a master's replicas, or a replica's link to its master. */
function replication(r) {
  if (!r) return '–';
  if (r.master) {
    const up = r.master_link_status === 'up';
    return h('span', { class: 'repl' }, 'of ', h('span', { class: 'mono' }, r.master), ', link ',
      h('span', { class: up ? 'ok' : 'bad' }, r.master_link_status || 'unknown'),
      r.sync_in_progress ? ', syncing' : '',
      !up && r.master_link_down_seconds ? ' for ' + f.duration(r.master_link_down_seconds) : '',
      r.lag_bytes >= 0 ? ', ' + f.bytes(r.lag_bytes) + ' behind' : '',
      r.master_last_io_seconds !== undefined ? ', last I/O ' + f.duration(r.master_last_io_seconds) + ' ago' : '');
  }
  const rs = r.replicas || [];
  if (!rs.length) return h('span', { class: 'repl muted' }, 'no replica');
  return h('ul', { class: 'repl plain' }, rs.map((x) => h('li', {}, h('span', { class: 'mono' }, x.addr), ' ',
    h('span', { class: x.state === 'online' ? 'ok' : 'warn' }, x.state), ', ' + f.bytes(x.lag_bytes) + ' behind, acked ' + f.duration(x.lag_seconds) + ' ago')));
}

function card(label, value) {
  return h('div', { class: 'card' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value));
}

/** A small form that opens a topic by name. */
export function topicJump() {
  const input = h('input', { id: 'jump', name: 'jump', placeholder: 'orders', required: true });
  return h('form', { class: 'toolbar', onsubmit: (e) => { e.preventDefault(); location.hash = '#/topic/' + seg(input.value.trim()); } },
    h('div', { class: 'field' }, h('label', { for: 'jump' }, 'Topic'), input), h('button', { type: 'submit' }, 'Open'));
}
