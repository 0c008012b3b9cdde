// The seek form of a consumer group: move it to the beginning, the end, a
// time or a position, after a confirmation.
import { api, seg } from '../api.js';
import { h, toast, confirmAction, select, field } from '../ui.js';

/** A local datetime-local value ("2026-01-02T15:04") for a Date. */
function localInput(d) {
  const p = (n) => String(n).padStart(2, '0');
  return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' + p(d.getHours()) + ':' + p(d.getMinutes());
}

/**
 * The form that seeks group g of topic; done is called after a seek ran
 * (or the form was closed).
 */
export function form(topic, g, done) {
  const [toF, to] = select('seek-to', 'Move to', [['beginning', 'the beginning (replay everything stored)'], ['end', 'the end (skip everything unread)'],
    ['time', 'a time'], ['position', 'a position']], 'beginning');
  const [timeF, time] = field('seek-time', 'Time (your local time)', { type: 'datetime-local', step: 1, value: localInput(new Date(Date.now() - 3600e3)) });
  const [posF, pos] = field('seek-pos', 'Position (partition/stream id)', { placeholder: '0/1717000000000-0', spellcheck: 'false' });
  const err = h('p', { class: 'bad', role: 'alert', id: 'seek-error' });
  const show = () => { timeF.hidden = to.value !== 'time'; posF.hidden = to.value !== 'position'; };
  to.addEventListener('change', show);
  show();

  async function submit(ev) {
    ev.preventDefault();
    err.textContent = '';
    let target = to.value, what = '';
    switch (to.value) {
      case 'beginning': what = 'the beginning: every event still stored is delivered again'; break;
      case 'end': what = 'the end: every event not yet delivered is skipped'; break;
      case 'time': {
        const d = new Date(time.value);
        if (!time.value || Number.isNaN(d.getTime())) { err.textContent = 'Pick a time.'; time.focus(); return; }
        target = d.toISOString();
        what = d.toLocaleString() + ': events from then on are delivered (again), earlier ones skipped';
        break;
      }
      case 'position':
        target = pos.value.trim();
        if (!/^\d+\/\d+(-\d+)?$/.test(target)) { err.textContent = 'A position is <partition>/<ms>-<seq>, e.g. 0/1717000000000-0.'; pos.focus(); return; }
        what = 'position ' + target + ' (that partition only)';
        break;
    }
    const ok = await confirmAction('Seek group ' + g.name + '?', 'Move group ' + g.name + ' of ' + topic + ' to ' + what +
      '. Events it has pending before the new point are acknowledged unhandled. Running consumers continue from there.', 'Seek');
    if (!ok) return;
    try {
      const r = await api('/v1/topics/' + seg(topic) + '/groups/' + seg(g.name) + '/seek', { method: 'POST', body: { to: target } });
      toast('Group ' + g.name + ' moved to ' + r.to + (r.dropped ? '; ' + r.dropped + ' pending dropped.' : '.'));
      done();
    } catch (e) {
      err.textContent = 'Seek failed: ' + e.message;
    }
  }

  return h('form', { class: 'panel seek-form', id: 'seek-form', 'aria-labelledby': 'seek-title', onsubmit: submit },
    h('h3', { id: 'seek-title' }, 'Seek group ', h('span', { class: 'mono' }, g.name)),
    h('div', { class: 'toolbar' }, toF, timeF, posF,
      h('button', { type: 'submit', id: 'seek-go' }, 'Seek…'),
      h('button', { type: 'button', class: 'quiet', onclick: () => done() }, 'Close')),
    err);
}
