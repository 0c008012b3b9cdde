// Live tail: the monitor stream (GET /v1/monitor) with topic and channel
// filters, pause, and a rate indicator.
import { stream } from '../api.js';
import { h, fill, empty, field, checkbox } from '../ui.js';
import * as f from '../format.js';

const KEEP = 200; // rows shown

export function render(root, route, access) {
  fill(root, h('h1', {}, 'Live tail'));
  if (!access.admin) {
    root.append(empty('This key cannot watch the monitor.', 'The live tail needs an admin grant; it shows the events of the topics that grant covers.'));
    return null;
  }
  const [tf, topics] = field('tail-topics', 'Topics (glob)', { value: route.query.get('topics') || '*', size: 14 });
  const [cf, channels] = field('tail-channels', 'Channels (glob)', { value: route.query.get('channels') || '*', size: 14 });
  const [sf, skipCh] = checkbox('tail-skip-channels', 'Events only', route.query.get('skip_channels') === 'true');
  const pause = h('button', { type: 'button', id: 'tail-pause', class: 'quiet', 'aria-pressed': 'false' }, 'Pause');
  const clear = h('button', { type: 'button', class: 'quiet' }, 'Clear');
  const rateEl = h('span', { class: 'rate', id: 'tail-rate', 'aria-live': 'off' }, '0/s');
  const status = h('span', { class: 'muted', id: 'tail-status', role: 'status' }, 'connecting…');
  const body = h('tbody', { id: 'tail-rows' });
  const emptyRow = h('tr', {}, h('td', { colspan: 8 }, empty('Waiting for events.', 'Publish to a topic or a channel and it shows here within a second.')));
  body.append(emptyRow);
  fill(root, h('h1', {}, 'Live tail'),
    h('form', { class: 'toolbar', onsubmit: (e) => { e.preventDefault(); connect(); } },
      tf, cf, sf, h('button', { type: 'submit' }, 'Apply'), pause, clear,
      h('span', {}, 'Rate: ', rateEl), status),
    h('div', { class: 'panel stream scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Seen', 'Kind', 'Topic / channel', 'Partition', 'Position', 'Type', 'Key', 'Size']
        .map((l, i) => h('th', { scope: 'col', class: i === 3 || i === 7 ? 'num hide-narrow' : i === 4 || i === 6 ? 'hide-narrow' : undefined }, l)))),
      body)));

  let es = null, paused = false, missed = 0;
  const stamps = []; // arrival times of the last seconds, for the rate
  pause.addEventListener('click', () => {
    paused = !paused;
    pause.textContent = paused ? 'Resume' : 'Pause';
    pause.setAttribute('aria-pressed', String(paused));
    if (!paused) missed = 0;
    showStatus();
  });
  clear.addEventListener('click', () => { body.replaceChildren(emptyRow); });

  function showStatus(text) {
    status.textContent = text || (paused ? 'paused, ' + f.num(missed) + ' not shown' : 'live');
  }

  function connect() {
    if (es) es.close();
    const q = { topics: topics.value.trim() || '*', channels: channels.value.trim() || '*', skip_channels: skipCh.checked ? 'true' : '' };
    history.replaceState(null, '', '#/tail?' + new URLSearchParams(Object.entries(q).filter(([, v]) => v)));
    es = stream('/v1/monitor', q);
    es.onopen = () => showStatus();
    es.onerror = () => showStatus(es.readyState === EventSource.CLOSED ? 'closed; press Apply to reconnect' : 'reconnecting…');
    es.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch { return; }
      stamps.push(performance.now());
      if (paused) { missed++; showStatus(); return; }
      if (emptyRow.isConnected) emptyRow.remove();
      const seen = ev.seen ? new Date(ev.seen) : new Date();
      const isEvent = ev.kind === 'event';
      body.prepend(h('tr', { class: 'tail-row', 'data-kind': ev.kind, 'data-id': ev.id || '' },
        h('td', {}, seen.toLocaleTimeString()),
        h('td', {}, isEvent ? 'event' : 'message'),
        h('td', { class: 'mono' }, isEvent ? ev.topic : ev.channel + (ev.pattern ? ' (' + ev.pattern + ')' : '')),
        h('td', { class: 'num hide-narrow' }, isEvent ? ev.partition : ''),
        h('td', { class: 'mono hide-narrow' }, ev.position || ''),
        h('td', {}, ev.type || ''),
        h('td', { class: 'mono hide-narrow' }, ev.key || ''),
        h('td', { class: 'num hide-narrow' }, f.bytes(ev.size))));
      while (body.childElementCount > KEEP) body.lastElementChild.remove();
    };
  }

  const tick = setInterval(() => {
    const now = performance.now();
    while (stamps.length && now - stamps[0] > 5000) stamps.shift();
    rateEl.textContent = f.rate(stamps.length / 5);
  }, 500);
  connect();
  return () => { clearInterval(tick); if (es) es.close(); };
}
