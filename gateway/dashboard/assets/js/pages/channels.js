// Channels: live Redis Pub/Sub. Subscribe to a channel or a pattern, publish
// a message, and see which channels have subscribers.
import { api, seg, stream } from '../api.js';
import { h, fill, table, empty, errorBox, field, checkbox, select, toast, every } from '../ui.js';
import * as f from '../format.js';

export function render(root, route, access) {
  const listBox = h('section', { 'aria-labelledby': 'h-chlist' });
  const [sf, subName] = field('ch-sub', 'Channel or pattern', { value: route.query.get('channel') || '', placeholder: 'chat or chat.*', required: true });
  const [pf, isPattern] = checkbox('ch-pattern', 'Pattern (glob)', route.query.get('pattern') === 'true');
  const subStatus = h('span', { class: 'muted', role: 'status', id: 'ch-status' }, 'not subscribed');
  const msgs = h('div', { class: 'panel stream', id: 'ch-messages', 'aria-live': 'polite' },
    empty('No subscription.', 'Type a channel name (or a pattern like chat.* with the box ticked) and press Subscribe.'));
  const [cf, pubName] = field('ch-pub', 'Channel', { placeholder: 'chat', required: true });
  const [tf, pubType] = select('ch-type', 'Content type', [['text/plain', 'text/plain'], ['application/json', 'application/json']], 'text/plain');
  const [mf, pubBody] = field('ch-body', 'Message', { tag: 'textarea', rows: 3, cols: 40 });
  let es = null;
  fill(root, h('h1', {}, 'Channels'),
    h('p', { class: 'muted' }, 'Live messages over Redis Pub/Sub: fire and forget, nothing is stored. redis-cli SUBSCRIBE and PUBLISH see the same channels.'),
    h('h2', {}, 'Subscribe'),
    h('form', { class: 'toolbar', onsubmit: (e) => { e.preventDefault(); subscribe(); } },
      sf, pf, h('button', { type: 'submit', id: 'ch-subscribe' }, 'Subscribe'),
      h('button', { type: 'button', class: 'quiet', onclick: () => { if (es) es.close(); es = null; subStatus.textContent = 'not subscribed'; } }, 'Stop'),
      subStatus),
    msgs,
    h('h2', {}, 'Publish'),
    h('form', { class: 'toolbar', onsubmit: (e) => { e.preventDefault(); publish(); } },
      cf, tf, mf, h('button', { type: 'submit', id: 'ch-publish' }, 'Publish')),
    h('h2', { id: 'h-chlist' }, 'Channels with subscribers'), listBox);

  function subscribe() {
    const name = subName.value.trim();
    if (!name) return;
    if (es) es.close();
    fill(msgs, empty('Subscribed; no message yet.', 'Publish one below, or with redis-cli PUBLISH.'));
    es = stream('/v1/channels/' + seg(name), { pattern: isPattern.checked ? 'true' : '' });
    subStatus.textContent = 'connecting…';
    es.onopen = () => { subStatus.textContent = 'subscribed to ' + (isPattern.checked ? 'pattern ' : '') + name; };
    es.onerror = () => { subStatus.textContent = es.readyState === EventSource.CLOSED ? 'refused or closed (check the key\'s subscribe grant for channel:' + name + ')' : 'reconnecting…'; };
    es.addEventListener('gap', () => msgs.prepend(h('p', { class: 'warn' }, 'Messages may have been missed while the gateway reconnected to Redis.')));
    es.onmessage = (m) => {
      let v;
      try { v = JSON.parse(m.data); } catch { return; }
      if (msgs.querySelector('.empty')) msgs.replaceChildren();
      const data = v.data_base64 !== undefined ? f.payload(v).text : typeof v.data === 'string' ? v.data : JSON.stringify(v.data, null, 2);
      msgs.prepend(h('div', { class: 'ch-message' }, h('span', { class: 'muted' }, new Date().toLocaleTimeString() + ' '),
        h('span', { class: 'mono' }, v.channel), v.pattern ? h('span', { class: 'muted' }, ' via ' + v.pattern) : '', h('pre', {}, data)));
      while (msgs.childElementCount > 200) msgs.lastElementChild.remove();
    };
  }

  async function publish() {
    const name = pubName.value.trim();
    if (!name) return;
    try {
      const r = await api('/v1/channels/' + seg(name) + '/messages', { method: 'POST', body: pubBody.value, contentType: pubType.value });
      toast('Published to ' + name + ': ' + f.num(r.receivers) + ' receiver' + (r.receivers === 1 ? '' : 's'));
    } catch (e) {
      toast('Publish failed: ' + e.message);
    }
  }

  let stop = () => {};
  if (access.global) {
    stop = every(5000, async () => {
      try {
        const r = await api('/v1/channels');
        const chs = r.channels || [];
        fill(listBox, chs.length ? table('', [{ label: 'Channel' }, { label: 'Subscribers', num: true }],
          chs.map((c) => [h('span', { class: 'mono' }, c.name), f.num(c.subscribers)])) : empty('No channel has a subscriber.', 'Subscribe above to see one here.'),
        h('p', { class: 'muted' }, f.num(r.pattern_subscriptions || 0) + ' pattern subscriptions.'));
      } catch (e) {
        fill(listBox, errorBox(e, 'Channels'));
      }
    });
  } else {
    fill(listBox, empty('Hidden for this key.', 'The channel list needs the admin grant "*"; subscribing and publishing work with the key\'s own grants.'));
  }
  if (subName.value) subscribe();
  return () => { stop(); if (es) es.close(); };
}
