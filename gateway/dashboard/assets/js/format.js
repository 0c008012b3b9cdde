// Number, time and payload formatting.

const units = [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];

/** 1234 -> "1.2k", 12 -> "12", 0.5 -> "0.5". */
export function num(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  const a = Math.abs(n);
  for (const [v, s] of units) {
    if (a >= v) {
      const x = n / v;
      return (Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(1).replace(/\.0$/, '')) + s;
    }
  }
  if (Number.isInteger(n)) return String(n);
  return a >= 10 ? n.toFixed(0) : n.toFixed(1).replace(/\.0$/, '');
}

/** Events per second: "1.2k/s". */
export function rate(r) { return r === null || r === undefined ? '–' : num(r) + '/s'; }

/** Bytes: "1.5 MB". */
export function bytes(b) {
  if (b === null || b === undefined) return '–';
  const us = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (Math.abs(b) >= 1024 && i < us.length - 1) { b /= 1024; i++; }
  return (i === 0 ? String(b) : b.toFixed(b >= 100 ? 0 : 1)) + ' ' + us[i];
}

/** A duration in seconds: "3 s", "4 min", "2.5 h", "3 d". */
export function duration(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return '–';
  if (s < 1) return s <= 0 ? '0 s' : (s * 1000).toFixed(0) + ' ms';
  if (s < 60) return s.toFixed(0) + ' s';
  if (s < 3600) return (s / 60).toFixed(0) + ' min';
  if (s < 86400) return (s / 3600).toFixed(1).replace(/\.0$/, '') + ' h';
  return (s / 86400).toFixed(1).replace(/\.0$/, '') + ' d';
}

/** "3 s ago" for a Date, an ISO string or milliseconds. */
export function ago(t) {
  const ms = t instanceof Date ? t.getTime() : typeof t === 'number' ? t : Date.parse(t);
  if (!ms || Number.isNaN(ms) || ms <= 0) return '–';
  const s = (Date.now() - ms) / 1000;
  return s < 1 ? 'just now' : duration(s) + ' ago';
}

/** The milliseconds of a stream id "1717000000000-3" or a position "0/1717000000000-3". */
export function idTime(id) {
  if (!id) return 0;
  const s = id.includes('/') ? id.split('/')[1] : id;
  return Number(s.split('-')[0]) || 0;
}

/** A latency in nanoseconds: "0.4 ms". */
export function nanos(ns) {
  if (ns === null || ns === undefined) return '–';
  const ms = ns / 1e6;
  return ms < 10 ? ms.toFixed(2) + ' ms' : ms.toFixed(0) + ' ms';
}

/** A short duration in seconds (latency): "0.4 ms". */
export function seconds(s) {
  return s === null || s === undefined ? '–' : nanos(s * 1e9);
}

/** An event's payload as text: JSON pretty-printed, text as is, binary as a hex dump. */
export function payload(e) {
  if (e.data_base64 !== undefined && e.data_base64 !== '') {
    let bin;
    try { bin = atob(e.data_base64); } catch { return { kind: 'binary', text: e.data_base64 }; }
    return { kind: 'binary, ' + bin.length + ' bytes', text: hexdump(bin) };
  }
  if (e.data === undefined) return { kind: 'empty', text: '' };
  if (typeof e.data === 'string') {
    try {
      const v = JSON.parse(e.data);
      if (typeof v === 'object' && v !== null) return { kind: 'JSON', text: JSON.stringify(v, null, 2) };
    } catch { /* plain text */ }
    return { kind: 'text', text: e.data };
  }
  return { kind: 'JSON', text: JSON.stringify(e.data, null, 2) };
}

/** Classic 16-bytes-a-line hex dump of a binary string. */
export function hexdump(bin) {
  const lines = [];
  for (let off = 0; off < bin.length && off < 64 * 1024; off += 16) {
    const chunk = bin.slice(off, off + 16);
    let hex = '', asc = '';
    for (let i = 0; i < 16; i++) {
      if (i < chunk.length) {
        const c = chunk.charCodeAt(i);
        hex += c.toString(16).padStart(2, '0') + ' ';
        asc += c >= 32 && c < 127 ? chunk[i] : '.';
      } else hex += '   ';
      if (i === 7) hex += ' ';
    }
    lines.push(off.toString(16).padStart(8, '0') + '  ' + hex + ' ' + asc);
  }
  return lines.join('\n');
}
