// The dashboard's shell: the key, the navigation and the hash router.
import { apiKey, setApiKey, probe } from './api.js';
import { h, fill, errorBox } from './ui.js';
import * as overview from './pages/overview.js';
import * as topic from './pages/topic.js';
import * as deadletters from './pages/deadletters.js';
import * as tail from './pages/tail.js';
import * as channels from './pages/channels.js';

const pages = { overview, topic, deadletters, tail, channels };

/** What the current key may do (see api.probe). */
export const access = { auth: 'off', admin: false, global: false, error: null };

let cleanup = null;
let refused = false; // the last key typed was refused
const main = document.getElementById('main');

/** Parses "#/topic/orders%2Feu?x=1" into {page, arg, query}. */
function parseHash() {
  const raw = window.location.hash.replace(/^#\/?/, '');
  const [p, q] = raw.split('?');
  const parts = p.split('/');
  const page = parts[0] || 'overview';
  const arg = parts.length > 1 ? decodeURIComponent(parts.slice(1).join('/')) : '';
  return { page, arg, query: new URLSearchParams(q || '') };
}

async function render() {
  if (cleanup) { try { cleanup(); } catch (e) { console.warn(e); } cleanup = null; }
  const route = parseHash();
  const mod = pages[route.page];
  for (const a of document.querySelectorAll('#nav a')) {
    const cur = a.dataset.page === route.page || (route.page === 'topic' && a.dataset.page === 'overview');
    if (cur) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (!mod) {
    fill(main, h('h1', {}, 'Not found'), h('p', {}, 'No page "' + route.page + '". ', h('a', { href: '#/' }, 'Go to the overview.')));
    return;
  }
  if (access.auth === 'none') {
    fill(main, h('h1', {}, 'API key needed'),
      h('p', {}, 'This server has API keys. Paste one in the "API key" field at the top; it is kept for this tab only.'),
      refused ? errorBox({ message: access.error }, 'The key was refused') : null);
    document.getElementById('key').focus();
    return;
  }
  fill(main);
  if (access.error) {
    // The server answered neither yes nor no (down, restarting, Redis unreachable).
    main.append(errorBox({ message: access.error }, 'The server could not say what this key may do'),
      h('p', {}, h('button', { type: 'button', onclick: async () => { await refreshAccess(); render(); } }, 'Try again')));
  }
  const c = mod.render(main, route, access);
  cleanup = typeof c === 'function' ? c : null;
}

function showSession() {
  const who = document.getElementById('who');
  const login = document.getElementById('login');
  const logout = document.getElementById('logout');
  const keyed = !!apiKey();
  login.hidden = keyed || access.auth === 'off';
  logout.hidden = !keyed;
  if (access.auth === 'off' && !keyed) who.textContent = 'API keys are off';
  else if (access.auth === 'none') who.textContent = '';
  else who.textContent = access.global ? 'admin key' : access.admin ? 'admin key (some topics)' : 'read-only key';
  document.body.dataset.access = access.admin ? 'admin' : 'readonly';
}

async function refreshAccess() {
  Object.assign(access, await probe());
  showSession();
}

document.getElementById('login').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = document.getElementById('key');
  setApiKey(input.value.trim());
  input.value = '';
  await refreshAccess();
  refused = access.auth === 'none';
  if (refused) setApiKey('');
  showSession();
  render();
});

document.getElementById('logout').addEventListener('click', async () => {
  setApiKey('');
  await refreshAccess();
  render();
});

document.getElementById('skip').addEventListener('click', (ev) => {
  ev.preventDefault();
  main.focus();
});

window.addEventListener('hashchange', () => { render(); main.focus({ preventScroll: true }); });

await refreshAccess();
render();
