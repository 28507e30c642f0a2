// console-connection.js: the console's RouterClient: connect, disconnect, and what each of the
// client's events changes on the page.
import { RouterClient } from '/router-client.js';
import { $, showError, errorText, durationText } from './console-dom.js';
import { explainClose, closeText, TERMINAL_TEXT } from './console-close-codes.js';
import { setStatus, stopCountdown, startCountdown, addHistory, updateSessionInfo, setButtons } from './console-status.js';
import { getToken, fieldHoldsMintedToken, devTokensAvailable } from './console-tokens.js';
import { loggingWebSocket } from './console-frame-log.js';
import { addRunEvent, markRunsLost } from './console-runs.js';
import { renderThreads, renderHistory, listThreads } from './console-threads.js';
import { ui } from './console-state.js';

/** The status bar's text for a `state` event of the client. */
function stateText(s) {
  switch (s.state) {
    case 'connecting':
      return `Connecting (attempt ${s.attempt + 1})${s.resuming ? ', resuming the session' : ''}…`;
    case 'open':
      return `Open: session ${s.sessionId}${s.recovered ? ' (resumed, recovered)' : ''}.`;
    case 'reconnecting': {
      const why = s.code !== undefined ? ` after ${closeText(s.code, s.reason)}` : '';
      return `Reconnecting in ${durationText(s.delayMs)} (attempt ${s.attempt})${why}.`;
    }
    case 'closed': {
      if (s.terminalReason === 'client_closed') return `Closed by you: ${closeText(s.code, s.reason)}.`;
      const x = explainClose(s.code);
      const terminal = TERMINAL_TEXT[s.terminalReason] ?? s.terminalReason;
      const why = terminal && !x.meaning.includes(terminal) ? ` (${terminal})` : '';
      return `Closed: ${closeText(s.code, s.reason)}${why}. ${x.advice}`;
    }
    default:
      return s.state;
  }
}

function onState(s) {
  stopCountdown();
  setStatus(s.state, stateText(s));
  if (s.state === 'reconnecting') startCountdown(s.delayMs);
  setButtons();
  updateSessionInfo();
}

function onConnecting(c, client) {
  addHistory('connecting', `Connecting (attempt ${c.attempt + 1})${c.resuming ? ` with resume, last_event_id ${client.lastEventId}` : ''}.`);
}

function onEstablished(e) {
  if (e.resumed && e.recovered) ui.resumes++;
  let text;
  if (e.recovered) text = `Resumed session ${e.sessionId}: recovered true (missed events replayed, none twice).`;
  else if (e.resumed) text = `New session ${e.sessionId}: the resume was refused (recovered false).`;
  else text = `Open: user “${e.userId}”, session ${e.sessionId}, recovered false.`;
  addHistory(e.recovered ? 'resumed' : 'open', text);
  showError($('connect-error'), '');
  updateSessionInfo();
}

function onGap(g) {
  addHistory('gap', `Session ${g.previousSessionId} could not be resumed: events after #${g.lastEventId} may be lost.`);
  markRunsLost('Its session ended before the run finished (the new session cannot receive its events).');
  if (g.sessionId) listThreads();
}

function onClose(c) {
  const x = explainClose(c.code);
  const next = c.initiatedByClient ? 'replaced by the client' : c.willReconnect ? 'will reconnect' : `will not reconnect (${TERMINAL_TEXT[c.terminalReason] ?? c.terminalReason})`;
  addHistory(c.willReconnect ? 'close' : 'terminal', `Closed ${closeText(c.code, c.reason)}${c.wasClean ? '' : ', no close frame'}: ${next}. ${x.advice}`);
  updateSessionInfo();
}

function onClosed(c) {
  markRunsLost(c.terminalReason === 'client_closed' ? 'The connection was closed before the run finished.' : 'The connection closed for good before the run finished.');
  setButtons();
}

// A browser's client only hears of its token at the router's 4501 ('expired'): it never
// replaces a connection ahead of exp, as its close frame would end the session.
function onTokenRefresh() {
  addHistory('token', fieldHoldsMintedToken()
    ? 'Token expired (4501): minting a fresh demo token and resuming.'
    : 'Token expired (4501): paste a fresh token in the token field; the next attempt uses it.');
}

function onError(err) {
  addHistory('error', `Client error (${err.source ?? 'client'}): ${err.message}`);
}

// What each of the client's events changes on the page.
const ON_CLIENT_EVENT = {
  state: onState,
  connecting: onConnecting,
  established: onEstablished,
  gap: onGap,
  close: onClose,
  closed: onClosed,
  tokenRefresh: onTokenRefresh,
  error: onError,
  event: onFrame,
};

/** Listens to `client`'s events for as long as it is the page's client. */
function wire(client) {
  for (const [type, handler] of Object.entries(ON_CLIENT_EVENT)) {
    client.on(type, (ev) => { if (ui.client === client) handler(ev, client); });
  }
}

/** A frame the client delivered: to its run's panel, and to the thread views. */
function onFrame(frame) {
  if (typeof frame.run_id === 'string' && frame.run_id !== '') addRunEvent(frame);
  switch (frame.type) {
    case 'thread_created':
      if (frame.thread_id) ui.lastThreadId = frame.thread_id;
      break;
    case 'thread_list':
      renderThreads(frame);
      break;
    case 'thread_history':
      renderHistory(frame);
      break;
    case 'error':
      if (frame.reply_to === null || frame.reply_to === undefined) addHistory('error', `Router error ${frame.data && frame.data.code}: ${frame.data && frame.data.message}`);
      break;
    default:
      break;
  }
  if (frame.thread_id && frame.type !== 'thread_history') ui.lastThreadId = frame.thread_id;
  updateSessionInfo();
}

/** True while the previous client closes before the next one starts (see connect). */
let replacing = false;

/** The connect form: a new client with the token and URL of the form (closing the old one). */
export async function connect(ev) {
  if (ev) ev.preventDefault();
  if (replacing) return; // the Connect button is disabled meanwhile; a submit by Enter lands here
  showError($('connect-error'), '');
  const token = $('token').value.trim();
  if (!token) {
    showError($('connect-error'), devTokensAvailable() ? 'Mint a demo token (or paste one) first.' : 'Paste a token first.');
    $('token').focus();
    return;
  }
  let url;
  try {
    url = new URL($('ws-url').value.trim()).toString();
  } catch {
    showError($('connect-error'), 'The WebSocket URL is not a URL.');
    return;
  }
  const previous = ui.client;
  if (previous && previous.state !== 'closed') {
    // The old client's events no longer reach the page: until the new one reports, the page
    // says what happens instead of showing the old session as open (a close handshake that
    // gets no answer takes the client's close timeout, 5 s).
    ui.client = null;
    replacing = true;
    setStatus('connecting', 'Closing the previous connection to open a new one…');
    updateSessionInfo();
    setButtons();
    $('connect').disabled = true;
    try {
      await previous.close(1000, 'replaced');
    } finally {
      replacing = false;
      $('connect').disabled = false;
    }
    markRunsLost('The console opened a new connection before the run finished.');
    addHistory('info', 'Closed the previous connection to open a new one.');
  }
  const client = new RouterClient({ url, getToken, WebSocket: loggingWebSocket() });
  ui.client = client;
  ui.resumes = 0;
  wire(client);
  setButtons();
  client.connect().catch((err) => {
    if (ui.client === client) showError($('connect-error'), `Could not connect: ${errorText(err)}`);
  });
}

export async function disconnect() {
  const client = ui.client;
  if (!client) return;
  await client.close(1000, 'closed from the console');
  updateSessionInfo();
  setButtons();
}

/** "Reconnect now": skips the wait while reconnecting, or replaces the open connection. */
export function reconnectNow() {
  if (!ui.client) return;
  try { ui.client.reconnect(); } catch (err) { showError($('connect-error'), errorText(err)); }
}
