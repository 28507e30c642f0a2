// console-status.js: what the page says about the connection: the status bar (with the
// countdown to the next attempt), the session's details, the history of the connection, and
// which connection buttons are live.
import { $, el, timeEl, durationText } from './console-dom.js';
import { explainClose, closeText } from './console-close-codes.js';
import { ui } from './console-state.js';

const MAX_HISTORY_ENTRIES = 300;

let countdown = null; // the interval timer of the countdown to the next attempt

export function setStatus(state, text) {
  const badge = $('status-badge');
  badge.dataset.state = state;
  badge.textContent = state;
  $('status-text').textContent = text;
  document.body.dataset.connection = state;
}

export function stopCountdown() {
  clearInterval(countdown);
  countdown = null;
  $('status-countdown').textContent = '';
}

export function startCountdown(delayMs) {
  stopCountdown();
  const deadline = Date.now() + delayMs;
  const tick = () => {
    const left = deadline - Date.now();
    $('status-countdown').textContent = left > 0 ? `next attempt in ${durationText(left)}` : 'attempting…';
    if (left <= 0) stopCountdown();
  };
  countdown = setInterval(tick, 100);
  tick();
}

/** Adds a line to the connection's history (newest first); `kind` styles it. */
export function addHistory(kind, text) {
  const list = $('conn-history');
  list.prepend(el('li', { class: `hist hist-${kind}`, dataset: { kind } }, timeEl(), ' ', el('span', { text })));
  while (list.childElementCount > MAX_HISTORY_ENTRIES) list.lastElementChild.remove();
}

export function updateSessionInfo() {
  const c = ui.client;
  const set = (id, value) => { $(id).textContent = value === null || value === undefined || value === '' ? '—' : String(value); };
  set('info-user', c && c.userId);
  set('info-session', c && c.sessionId);
  set('info-connection', c && c.connectionId);
  set('info-server', c && c.serverId);
  set('info-recovered', c && c.recovered !== null ? (c.recovered ? 'yes (the session was resumed)' : 'no') : null);
  set('info-resumes', ui.resumes);
  set('info-last-event', c && c.state !== 'idle' ? c.lastEventId : null);
  set('info-duplicates', c ? c.duplicatesDropped : 0);
  if (c && c.lastClose) {
    const x = explainClose(c.lastClose.code);
    set('info-last-close', `${closeText(c.lastClose.code, c.lastClose.reason)}: ${x.advice}`);
  } else {
    set('info-last-close', null);
  }
}

export function setButtons() {
  const c = ui.client;
  const live = !!c && c.state !== 'closed';
  $('disconnect').disabled = !live;
  $('reconnect').disabled = !live;
  $('connect').textContent = live ? 'Connect again' : 'Connect';
}
