// console-frame-log.js: every frame the page sends and receives, newest first, filtered by type.
import { $, el, timeEl, prettyJson } from './console-dom.js';

const MAX_LOG_ENTRIES = 2000;

let frames = 0; // frames logged since the log was last cleared

/**
 * Logs one frame. `socket` (inbound frames) tracks its connection: after a resume
 * (connection_established with recovered true) the frames stamped before that
 * connection_established were buffered by the router while the client was away: "replayed".
 */
export function logFrame(direction, text, socket = null) {
  let frame = null;
  try { frame = JSON.parse(text); } catch { /* shown as text */ }
  const isObject = frame && typeof frame === 'object' && !Array.isArray(frame);
  let replayed = false;
  if (socket && isObject) {
    const at = typeof frame.timestamp === 'string' ? Date.parse(frame.timestamp) : NaN;
    if (frame.type === 'connection_established') {
      socket.resumedAt = frame.data && frame.data.recovered === true ? at : null;
    } else if (socket.resumedAt != null && at < socket.resumedAt) {
      replayed = true;
    }
  }
  const type = isObject && typeof frame.type === 'string' ? frame.type : '(not a typed JSON object)';
  const summaryParts = [
    el('span', { class: `dir dir-${direction}`, text: direction === 'in' ? '↓ in' : '↑ out' }),
    ' ',
    timeEl(),
    ' ',
    el('span', { class: 'log-type', text: type }),
  ];
  if (isObject && typeof frame.event_id === 'number') summaryParts.push(' ', el('span', { class: 'log-meta', text: `#${frame.event_id}` }));
  if (isObject && typeof frame.id === 'string') summaryParts.push(' ', el('span', { class: 'log-meta', text: `id ${frame.id}` }));
  if (isObject && typeof frame.reply_to === 'string') summaryParts.push(' ', el('span', { class: 'log-meta', text: `reply to ${frame.reply_to}` }));
  if (isObject && typeof frame.run_id === 'string') summaryParts.push(' ', el('span', { class: 'log-meta', text: frame.run_id }));
  if (type === 'error' && isObject && frame.data) summaryParts.push(' ', el('span', { class: 'log-error', text: String(frame.data.code) }));
  if (replayed) summaryParts.push(' ', el('span', { class: 'log-replayed', text: 'replayed' }));
  const entry = el('li', { class: `log-entry log-${direction}`, dataset: { type, direction, replayed: replayed ? 'yes' : 'no' } },
    el('details', {},
      el('summary', {}, ...summaryParts),
      el('pre', { class: 'log-json', text: frame !== null ? prettyJson(frame) : String(text) })));
  applyFilter(entry);
  const log = $('frame-log');
  log.prepend(entry);
  while (log.childElementCount > MAX_LOG_ENTRIES) log.lastElementChild.remove();
  frames++;
  $('log-count').textContent = `${frames} frame${frames === 1 ? '' : 's'}${frames > MAX_LOG_ENTRIES ? ` (last ${MAX_LOG_ENTRIES} shown)` : ''}`;
}

function applyFilter(entry) {
  const filter = $('log-filter').value.trim().toLowerCase();
  entry.hidden = filter !== '' && !entry.dataset.type.toLowerCase().includes(filter);
}

/**
 * A WebSocket that logs every frame it sends and receives, given to the client as its
 * WebSocket constructor: the log shows the frames on the wire (duplicates the client drops
 * after a resume included).
 */
export function loggingWebSocket() {
  const Base = window.WebSocket;
  return class LoggingWebSocket extends Base {
    constructor(url, protocols) {
      super(url, protocols);
      const socket = { resumedAt: null };
      this.addEventListener('message', (ev) => {
        logFrame('in', typeof ev.data === 'string' ? ev.data : '(binary frame)', socket);
      });
    }

    send(data) {
      logFrame('out', data);
      super.send(data);
    }
  };
}

/** Shows only the entries whose type holds the filter's text. */
export function filterLog() {
  for (const entry of $('frame-log').children) applyFilter(entry);
}

export function clearLog() {
  $('frame-log').replaceChildren();
  frames = 0;
  $('log-count').textContent = '0 frames';
}
