// The event router's browser console (served by the router at GET /).
//
// Plain DOM, no framework, no innerHTML: every text that came from the network or from the
// user goes in with textContent (or as a text node). The page's CSP allows scripts, styles and
// sockets of the router's own origin only, so nothing here is inline.
//
// It uses the project's JavaScript client (/router-client.js) for everything on the socket:
// auth through the subprotocol, reconnect with backoff following the close codes, resume.
import { RouterClient, RouterError, FINAL_RUN_EVENTS, tokenExpiresAt, decodeJwtPayload } from '/router-client.js';

// ---- close codes (README "Close codes") ---------------------------------------------------

/** code -> [meaning, what happens next]. */
const CLOSE_CODES = {
  1000: ['normal closure', 'The connection was closed on purpose.'],
  1001: ['server going away', 'The router is stopping; the client reconnects with backoff.'],
  1002: ['protocol error', 'A WebSocket protocol violation; the client does not reconnect.'],
  1005: ['no status code', 'The close frame carried no code; the client reconnects.'],
  1006: ['connection lost', 'Closed without a close frame (network loss, router stopped, or the upgrade was refused, e.g. HTTP 401 for a bad token); the client reconnects and resumes the session if the router kept it.'],
  1007: ['invalid UTF-8', 'A text frame was not UTF-8; the client does not reconnect.'],
  1008: ['policy violation', 'The client does not reconnect.'],
  1009: ['message too big', 'A frame was over the router\'s max_message_bytes; the client does not reconnect as is.'],
  1011: ['internal error', 'The connection\'s manager failed; the client reconnects with backoff.'],
  4000: ['closed by the client to reconnect', 'The client replaced its connection (e.g. a token refresh).'],
  4008: ['slow consumer', 'The outbound queue passed the router\'s limit and was dropped; the client reconnects with backoff.'],
  4009: ['heartbeat timeout', 'No pong within the router\'s heartbeat timeout; the client reconnects with backoff.'],
  4010: ['state lost', 'The cluster lost this connection\'s state; the client reconnects and should reload.'],
  4029: ['rate limited', 'Too many refused messages in a row; the client reconnects after a long backoff.'],
  4501: ['token expired', 'The token expired; the client asks for a fresh token, reconnects and resumes the session.'],
  4503: ['too many connections for this user', 'Past the router\'s connections per user the newest closes; the client does not reconnect.'],
  4510: ['protocol abuse', 'The client does not reconnect.'],
  4511: ['disconnected by the backend', 'The backend\'s disconnect API closed this user\'s connections; the client does not reconnect.'],
  4512: ['session resumed on another connection', 'Another connection took this session over; the client does not reconnect.'],
};

/** {code, meaning, advice} for a close code, known or not. */
function explainClose(code) {
  const known = CLOSE_CODES[code];
  if (known) return { code, meaning: known[0], advice: known[1] };
  if (code >= 4000 && code <= 4499) return { code, meaning: 'closed by the router (reconnect allowed)', advice: 'The client reconnects with backoff.' };
  if (code >= 4500 && code <= 4999) return { code, meaning: 'closed by the router (do not reconnect as is)', advice: 'The client does not reconnect.' };
  if (code >= 3000 && code <= 3999) return { code, meaning: 'closed by the application', advice: 'The client reconnects with backoff.' };
  return { code, meaning: 'unknown close code', advice: 'The client reconnects with backoff.' };
}

const TERMINAL_TEXT = {
  client_closed: 'closed by you',
  too_many_connections: 'too many connections for this user',
  disconnected_by_backend: 'disconnected by the backend',
  message_too_big: 'message too big',
  protocol_abuse: 'protocol abuse',
  do_not_reconnect: 'the router said not to reconnect',
  max_reconnect_attempts: 'gave up reconnecting',
  protocol_error: 'protocol error',
  invalid_payload: 'invalid payload',
  policy_violation: 'policy violation',
  unsupported_data: 'unsupported data',
  extension_required: 'extension required',
};

// ---- small DOM helpers --------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

/** Creates an element: `props` sets attributes (class, text, dataset, on*), children are nodes or strings (text). */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = String(value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child); // a string becomes a text node: never parsed as HTML
  }
  return node;
}

function pad(n, width = 2) { return String(n).padStart(width, '0'); }

function clockTime(date = new Date()) {
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

function timeEl(date = new Date()) {
  return el('time', { datetime: date.toISOString(), text: clockTime(date) });
}

function frameTime(frame) {
  const t = frame && typeof frame.timestamp === 'string' ? new Date(frame.timestamp) : null;
  return t && !Number.isNaN(t.getTime()) ? t : new Date();
}

function compactJson(value, max = 400) {
  let text;
  try { text = JSON.stringify(value); } catch { text = String(value); }
  if (text === undefined) text = String(value);
  return text.length > max ? text.slice(0, max - 1) + '…' : text;
}

function prettyJson(value) {
  try { return JSON.stringify(value, null, 2); } catch { return String(value); }
}

function showError(node, message) {
  node.textContent = message || '';
  node.hidden = !message;
}

function errorText(err) {
  if (err instanceof RouterError) return `${err.code}: ${err.message}`;
  return err && err.message ? err.message : String(err);
}

function durationText(ms) {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  const s = ms / 1000;
  if (s < 90) return `${s.toFixed(1)} s`;
  const m = s / 60;
  if (m < 90) return `${Math.round(m)} min`;
  return `${(m / 60).toFixed(1)} h`;
}

// ---- state --------------------------------------------------------------------------------

const ui = {
  client: null,
  devTokens: null,      // true: POST /api/v1/dev/token works here; false: it is 404; null: unknown
  minted: null,         // {user, token} of the last demo token the console minted
  runs: new Map(),      // run_id -> panel record
  lastThreadId: null,
  threadTitles: new Map(),
  resumes: 0,
  frames: 0,
  messageCounter: 0,
  countdown: null,
};

const MAX_LOG_ENTRIES = 2000;
const MAX_HISTORY_ENTRIES = 300;

// ---- connection status --------------------------------------------------------------------

function setStatus(state, text) {
  const badge = $('status-badge');
  badge.dataset.state = state;
  badge.textContent = state;
  $('status-text').textContent = text;
  document.body.dataset.connection = state;
}

function stopCountdown() {
  if (ui.countdown) clearInterval(ui.countdown.timer);
  ui.countdown = null;
  $('status-countdown').textContent = '';
}

function startCountdown(delayMs) {
  stopCountdown();
  const deadline = Date.now() + delayMs;
  const tick = () => {
    const left = deadline - Date.now();
    $('status-countdown').textContent = left > 0 ? `next attempt in ${durationText(left)}` : 'attempting…';
    if (left <= 0) stopCountdown();
  };
  ui.countdown = { timer: setInterval(tick, 100) };
  tick();
}

function addHistory(kind, text) {
  const list = $('conn-history');
  list.prepend(el('li', { class: `hist hist-${kind}`, dataset: { kind } }, timeEl(), ' ', el('span', { text })));
  while (list.childElementCount > MAX_HISTORY_ENTRIES) list.lastElementChild.remove();
}

function closeText(code, reason) {
  const c = explainClose(code);
  const extra = reason && !c.meaning.toLowerCase().includes(reason.toLowerCase());
  return `${code} ${c.meaning}${extra ? ` (“${reason}”)` : ''}`;
}

function updateSessionInfo() {
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

function setButtons() {
  const c = ui.client;
  const live = !!c && c.state !== 'closed';
  $('disconnect').disabled = !live;
  $('reconnect').disabled = !live;
  $('connect').textContent = live ? 'Connect again' : 'Connect';
}

// ---- tokens -------------------------------------------------------------------------------

function describeToken() {
  const token = $('token').value.trim();
  const info = $('token-info');
  if (!token) { info.textContent = ''; return; }
  const claims = decodeJwtPayload(token);
  if (!claims) { info.textContent = 'This does not look like a JWT (three base64url parts).'; return; }
  const parts = [];
  if (typeof claims.sub === 'string') parts.push(`user “${claims.sub}”`);
  const exp = tokenExpiresAt(token);
  if (exp !== null) {
    const left = exp - Date.now();
    parts.push(left > 0 ? `expires ${new Date(exp).toISOString()} (in ${durationText(left)})` : `expired ${durationText(-left)} ago`);
  }
  info.textContent = parts.length ? `Token for ${parts.join(', ')} (decoded here, not verified).` : 'A JWT without sub/exp.';
}

async function mintDemoToken(user) {
  const res = await fetch('/api/v1/dev/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user_id: user }),
  });
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  if (res.status === 404) {
    setDevTokens(false);
    throw new Error('this router does not mint demo tokens (it has its own JWT secret): paste a token');
  }
  if (!res.ok || !body || typeof body.token !== 'string') {
    throw new Error(body && body.error ? `the router refused: ${body.error}` : `the router answered HTTP ${res.status}`);
  }
  ui.minted = { user: body.user_id ?? user, token: body.token };
  return body.token;
}

function setDevTokens(available) {
  ui.devTokens = available;
  $('dev-token-row').hidden = !available;
  $('dev-token-help').hidden = !available;
  $('token-hint').hidden = available;
  document.body.dataset.devTokens = available ? 'yes' : 'no';
}

/**
 * Is POST /api/v1/dev/token there? Only on a development setup (the shipped dev secret on a
 * loopback host); with a real secret the path is 404 and the console asks for a token.
 */
async function probeDevTokens() {
  try {
    const res = await fetch('/api/v1/dev/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user_id: $('user-id').value.trim() || 'alice' }),
    });
    setDevTokens(res.status !== 404);
  } catch {
    setDevTokens(false); // not served by a router (a file, another origin): paste a token
  }
}

/**
 * The client's getToken(): the token in the field. A demo token the console minted is minted
 * anew when it expires within a minute (so a 4501 reconnect gets a fresh one by itself).
 */
async function getToken() {
  let token = $('token').value.trim();
  if (ui.devTokens && ui.minted && ui.minted.token === token) {
    const exp = tokenExpiresAt(token);
    if (exp !== null && exp - Date.now() < 60000) {
      token = await mintDemoToken(ui.minted.user);
      $('token').value = token;
      describeToken();
      addHistory('info', `Minted a fresh demo token for “${ui.minted.user}”.`);
    }
  }
  if (!token) throw new Error('no token: paste a token (or mint a demo one)');
  return token;
}

// ---- the frame log ------------------------------------------------------------------------

/**
 * Logs one frame. `socket` (inbound frames) tracks its connection: after a resume
 * (connection_established with recovered true) the frames stamped before that
 * connection_established were buffered by the router while the client was away: "replayed".
 */
function logFrame(direction, text, socket = null) {
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
  ui.frames++;
  $('log-count').textContent = `${ui.frames} frame${ui.frames === 1 ? '' : 's'}${ui.frames > MAX_LOG_ENTRIES ? ` (last ${MAX_LOG_ENTRIES} shown)` : ''}`;
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
function loggingWebSocket() {
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

// ---- runs ---------------------------------------------------------------------------------

const RUN_STATUS_TEXT = {
  running: 'running',
  completed: 'completed',
  error: 'failed (agent_error)',
  stopped: 'stopped',
  lost: 'lost with its session',
};

function runPanel(runId) {
  let run = ui.runs.get(runId);
  if (run) return run;
  const headingId = `run-h-${ui.runs.size + 1}`;
  const status = el('span', { class: 'run-status', text: RUN_STATUS_TEXT.running });
  const title = el('span', { class: 'run-agent', text: 'agent' });
  const stop = el('button', { type: 'button', class: 'run-stop', 'aria-label': `Stop run ${runId}`, text: 'Stop' });
  const note = el('p', { class: 'run-note', role: 'status' });
  const events = el('ol', { class: 'run-events', 'aria-label': `Events of run ${runId}` });
  const meta = el('p', { class: 'run-meta' });
  const article = el('article', { class: 'run', dataset: { runId, status: 'running' }, 'aria-labelledby': headingId },
    el('header', { class: 'run-header' },
      el('h4', { id: headingId }, title, ' ', el('code', { class: 'run-id', text: runId })),
      status,
      stop),
    meta,
    events,
    note);
  run = { runId, article, status, title, stop, note, events, meta, state: 'running', count: 0 };
  stop.addEventListener('click', () => stopRun(run));
  ui.runs.set(runId, run);
  $('runs-empty').hidden = true;
  $('runs').prepend(article);
  return run;
}

function setRunState(run, state) {
  run.state = state;
  run.article.dataset.status = state;
  run.status.textContent = RUN_STATUS_TEXT[state] ?? state;
  run.stop.hidden = state !== 'running';
}

function addRunEvent(frame) {
  const run = runPanel(frame.run_id);
  if (run.state !== 'running' && run.state !== 'lost') return; // nothing follows a final event
  const isFinal = FINAL_RUN_EVENTS.includes(frame.type);
  if (frame.type === 'agent_started' && frame.data && typeof frame.data.agent === 'string') run.title.textContent = frame.data.agent;
  if (run.count === 0) {
    const bits = [`started ${clockTime(frameTime(frame))}`];
    if (frame.thread_id) bits.push(`thread ${frame.thread_id}`);
    if (frame.reply_to) bits.push(`request ${frame.reply_to}`);
    run.meta.textContent = bits.join(' · ');
  }
  run.count++;
  const item = el('li', { class: `ev${isFinal ? ' final' : ''}`, dataset: { type: frame.type, eventId: frame.event_id } },
    el('span', { class: 'ev-id', text: `#${frame.event_id}` }), ' ',
    el('span', { class: 'ev-type', text: frame.type }), ' ',
    timeEl(frameTime(frame)), ' ',
    el('code', { class: 'ev-data', text: compactJson(frame.data ?? null) }));
  if (isFinal) item.setAttribute('aria-label', `final event: ${frame.type}`);
  run.events.append(item);
  if (isFinal) {
    setRunState(run, frame.type === 'agent_completed' ? 'completed' : frame.type === 'agent_error' ? 'error' : 'stopped');
    if (frame.type === 'agent_completed' && frame.thread_id) ui.lastThreadId = frame.thread_id;
  }
}

async function stopRun(run) {
  if (!ui.client || run.state !== 'running') return;
  run.stop.disabled = true;
  run.note.textContent = 'Stopping…';
  try {
    const final = await ui.client.stopAgent(run.runId);
    run.note.textContent = `Stopped: ${final.type}.`;
  } catch (err) {
    run.note.textContent = err instanceof RouterError && err.code === 'not_found'
      ? 'The router has no such running run on this connection (it ended, or belongs to another session).'
      : `Stop failed: ${errorText(err)}`;
    run.stop.disabled = false;
  }
}

/** Runs still marked running after their session ended: their events can no longer come. */
function markRunsLost(why) {
  for (const run of ui.runs.values()) {
    if (run.state === 'running') {
      setRunState(run, 'lost');
      run.note.textContent = why;
    }
  }
}

function parseInput(text) {
  const trimmed = text.trim();
  if (trimmed === '') return null;
  try { return JSON.parse(trimmed); } catch { return text; }
}

function startAgent(ev) {
  ev.preventDefault();
  showError($('agent-error'), '');
  const client = ui.client;
  if (!client || client.state === 'closed') { showError($('agent-error'), 'Connect first.'); return; }
  const agent = $('agent-name').value.trim();
  if (!agent) { showError($('agent-error'), 'Name an agent (demo, echo, or one configured on the router).'); return; }
  const threadId = $('agent-thread').value.trim() || undefined;
  let run;
  try {
    run = client.startAgent(agent, parseInput($('agent-input').value), { threadId });
  } catch (err) {
    showError($('agent-error'), errorText(err));
    return;
  }
  run.started.catch((err) => {
    if (ui.client === client) showError($('agent-error'), `${agent} did not start: ${errorText(err)}`);
  });
}

// ---- threads ------------------------------------------------------------------------------

function renderThreads(frame) {
  const threads = frame.data && Array.isArray(frame.data.threads) ? frame.data.threads : [];
  const list = $('thread-list');
  list.replaceChildren();
  $('threads-empty').hidden = threads.length > 0;
  $('threads-empty').textContent = 'No threads yet (user_message and create_thread make them).';
  for (const t of threads) {
    const id = String(t.thread_id ?? '');
    const title = typeof t.title === 'string' && t.title !== '' ? t.title : '(untitled)';
    ui.threadTitles.set(id, title);
    const updated = typeof t.updated_at_ms === 'number' ? new Date(t.updated_at_ms) : null;
    list.append(el('li', { class: 'thread', dataset: { threadId: id } },
      el('div', { class: 'thread-main' },
        el('span', { class: 'thread-title', text: title }), ' ',
        el('code', { class: 'thread-id', text: id })),
      el('div', { class: 'thread-meta' },
        `${t.message_count ?? 0} message${t.message_count === 1 ? '' : 's'}`,
        updated ? ` · updated ${updated.toLocaleString()}` : ''),
      el('div', { class: 'buttons' },
        el('button', { type: 'button', class: 'thread-history-button', 'aria-label': `Show the history of ${title}`, text: 'History', onclick: () => loadHistory(id) }),
        el('button', { type: 'button', class: 'thread-use-button', 'aria-label': `Run agents on ${title}`, text: 'Use for agents', onclick: () => { $('agent-thread').value = id; $('agent-name').focus(); } }))));
  }
  if (threads.length > 0 && !ui.lastThreadId) ui.lastThreadId = String(threads[0].thread_id);
}

function messageContent(content) {
  if (content && typeof content === 'object' && typeof content.text === 'string') return content.text;
  if (typeof content === 'string') return content;
  return compactJson(content, 2000);
}

function renderHistory(frame) {
  const messages = frame.data && Array.isArray(frame.data.messages) ? frame.data.messages : [];
  const id = frame.thread_id ?? '';
  const title = ui.threadTitles.get(id);
  $('thread-history-h').textContent = `History of ${title ? `“${title}” ` : ''}${id}`;
  const list = $('thread-history');
  list.replaceChildren();
  $('thread-history-empty').hidden = messages.length > 0;
  $('thread-history-empty').textContent = 'This thread has no messages.';
  for (const m of messages) {
    const at = typeof m.created_at_ms === 'number' ? new Date(m.created_at_ms) : null;
    list.append(el('li', { class: `msg msg-${m.role === 'agent' ? 'agent' : 'user'}`, dataset: { role: String(m.role), seq: String(m.seq) } },
      el('div', { class: 'msg-head' },
        el('span', { class: 'msg-role', text: String(m.role) }), ' ',
        el('span', { class: 'msg-seq', text: `#${m.seq}` }),
        at ? ' ' : null, at ? timeEl(at) : null,
        m.run_id ? ' ' : null, m.run_id ? el('code', { class: 'msg-run', text: String(m.run_id) }) : null),
      el('p', { class: 'msg-content', text: messageContent(m.content) })));
  }
}

async function listThreads() {
  showError($('threads-error'), '');
  if (!ui.client || ui.client.state === 'closed') { showError($('threads-error'), 'Connect first.'); return; }
  try {
    await ui.client.listThreads(); // the thread_list frame is rendered by onFrame
  } catch (err) {
    showError($('threads-error'), `list_threads failed: ${errorText(err)}`);
  }
}

async function loadHistory(threadId) {
  showError($('threads-error'), '');
  if (!ui.client || ui.client.state === 'closed') { showError($('threads-error'), 'Connect first.'); return; }
  try {
    await ui.client.getThreadHistory(threadId);
  } catch (err) {
    showError($('threads-error'), `get_thread_history failed: ${errorText(err)}`);
  }
}

// ---- the message editor -------------------------------------------------------------------

function runningRunId() {
  for (const run of Array.from(ui.runs.values()).reverse()) if (run.state === 'running') return run.runId;
  const last = Array.from(ui.runs.keys()).pop();
  return last ?? 'r-…';
}

function template(type) {
  const id = `console-${++ui.messageCounter}`;
  const thread = ui.lastThreadId ?? 't-…';
  switch (type) {
    case 'ping': return { type, id };
    case 'create_thread': return { type, id, payload: { title: 'A thread from the console' } };
    case 'list_threads': return { type, id, payload: { limit: 50 } };
    case 'get_thread_history': return { type, id, thread_id: thread, payload: { limit: 200 } };
    case 'user_message': return ui.lastThreadId ? { type, id, thread_id: thread, payload: { text: 'Hello from the console' } } : { type, id, payload: { text: 'Hello from the console' } };
    case 'start_agent': return { type, id, payload: { agent: 'demo', input: { question: 'hello' } } };
    case 'stop_agent': return { type, id, payload: { run_id: runningRunId() } };
    default: return { type, id };
  }
}

function useTemplate() {
  $('message').value = JSON.stringify(template($('template').value), null, 2);
  showError($('send-error'), '');
}

function sendMessage(ev) {
  if (ev) ev.preventDefault();
  showError($('send-error'), '');
  const client = ui.client;
  if (!client || client.state === 'closed') { showError($('send-error'), 'Connect first.'); return; }
  const text = $('message').value;
  let message = text;
  if (!$('send-raw').checked) {
    try {
      message = JSON.parse(text);
    } catch (err) {
      showError($('send-error'), `Not JSON: ${err.message}. (Tick “send the text as is” to send it anyway.)`);
      return;
    }
    if (!message || typeof message !== 'object' || Array.isArray(message) || typeof message.type !== 'string') {
      showError($('send-error'), 'A message is a JSON object with a string "type". (Tick “send the text as is” to send it anyway.)');
      return;
    }
  }
  try {
    const sentNow = client.send(message);
    if (!sentNow) showError($('send-error'), 'Not connected right now: the message is queued and goes out after the next connection_established.');
  } catch (err) {
    showError($('send-error'), errorText(err));
  }
}

// ---- connecting ---------------------------------------------------------------------------

function wire(client) {
  const mine = (fn) => (ev) => { if (ui.client === client) fn(ev); };

  client.on('state', mine((s) => {
    stopCountdown();
    switch (s.state) {
      case 'connecting':
        setStatus('connecting', `Connecting (attempt ${s.attempt + 1})${s.resuming ? ', resuming the session' : ''}…`);
        break;
      case 'open':
        setStatus('open', `Open: session ${s.sessionId}${s.recovered ? ' (resumed, recovered)' : ''}.`);
        break;
      case 'reconnecting': {
        const why = s.code !== undefined ? ` after ${closeText(s.code, s.reason)}` : '';
        setStatus('reconnecting', `Reconnecting in ${durationText(s.delayMs)} (attempt ${s.attempt})${why}.`);
        startCountdown(s.delayMs);
        break;
      }
      case 'closed': {
        const x = explainClose(s.code);
        if (s.terminalReason === 'client_closed') {
          setStatus('closed', `Closed by you: ${closeText(s.code, s.reason)}.`);
        } else {
          const terminal = TERMINAL_TEXT[s.terminalReason] ?? s.terminalReason;
          const why = terminal && !x.meaning.includes(terminal) ? ` (${terminal})` : '';
          setStatus('closed', `Closed: ${closeText(s.code, s.reason)}${why}. ${x.advice}`);
        }
        break;
      }
      default:
        setStatus(s.state, s.state);
    }
    setButtons();
    updateSessionInfo();
  }));

  client.on('connecting', mine((c) => {
    addHistory('connecting', `Connecting (attempt ${c.attempt + 1})${c.resuming ? ` with resume, last_event_id ${client.lastEventId}` : ''}.`);
  }));

  client.on('established', mine((e) => {
    if (e.resumed && e.recovered) ui.resumes++;
    let text;
    if (e.recovered) text = `Resumed session ${e.sessionId}: recovered true (missed events replayed, none twice).`;
    else if (e.resumed) text = `New session ${e.sessionId}: the resume was refused (recovered false).`;
    else text = `Open: user “${e.userId}”, session ${e.sessionId}, recovered false.`;
    addHistory(e.recovered ? 'resumed' : 'open', text);
    showError($('connect-error'), '');
    updateSessionInfo();
  }));

  client.on('gap', mine((g) => {
    addHistory('gap', `Session ${g.previousSessionId} could not be resumed: events after #${g.lastEventId} may be lost.`);
    markRunsLost('Its session ended before the run finished (the new session cannot receive its events).');
    if (g.sessionId) listThreads();
  }));

  client.on('close', mine((c) => {
    const x = explainClose(c.code);
    const next = c.initiatedByClient ? 'replaced by the client' : c.willReconnect ? 'will reconnect' : `will not reconnect (${TERMINAL_TEXT[c.terminalReason] ?? c.terminalReason})`;
    addHistory(c.willReconnect ? 'close' : 'terminal', `Closed ${closeText(c.code, c.reason)}${c.wasClean ? '' : ', no close frame'}: ${next}. ${x.advice}`);
    updateSessionInfo();
  }));

  client.on('closed', mine((c) => {
    markRunsLost(c.terminalReason === 'client_closed' ? 'The connection was closed before the run finished.' : 'The connection closed for good before the run finished.');
    setButtons();
  }));

  client.on('tokenRefresh', mine((t) => {
    if (t.reason === 'expired') {
      const canMint = ui.devTokens && ui.minted && ui.minted.token === $('token').value.trim();
      addHistory('token', canMint
        ? 'Token expired (4501): minting a fresh demo token and resuming.'
        : 'Token expired (4501): paste a fresh token in the token field; the next attempt uses it.');
    } else {
      addHistory('token', 'Token about to expire: asking for a fresh one.');
    }
  }));

  client.on('error', mine((err) => {
    addHistory('error', `Client error (${err.source ?? 'client'}): ${err.message}`);
  }));

  client.on('event', mine(onFrame));
}

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

async function connect(ev) {
  if (ev) ev.preventDefault();
  showError($('connect-error'), '');
  const token = $('token').value.trim();
  if (!token) {
    showError($('connect-error'), ui.devTokens ? 'Mint a demo token (or paste one) first.' : 'Paste a token first.');
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
    ui.client = null;
    await previous.close(1000, 'replaced');
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

async function disconnect() {
  const client = ui.client;
  if (!client) return;
  await client.close(1000, 'closed from the console');
  updateSessionInfo();
  setButtons();
}

// ---- start --------------------------------------------------------------------------------

function init() {
  $('ws-url').value = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host || '127.0.0.1:8080'}/ws`;
  $('connect-form').addEventListener('submit', connect);
  $('disconnect').addEventListener('click', disconnect);
  $('reconnect').addEventListener('click', () => {
    if (!ui.client) return;
    try { ui.client.reconnect(); } catch (err) { showError($('connect-error'), errorText(err)); }
  });
  $('mint-token').addEventListener('click', async () => {
    showError($('connect-error'), '');
    const user = $('user-id').value.trim();
    if (!user) { showError($('connect-error'), 'Type a user name first.'); $('user-id').focus(); return; }
    const button = $('mint-token');
    button.disabled = true;
    try {
      $('token').value = await mintDemoToken(user);
      describeToken();
      addHistory('info', `Minted a demo token for “${user}”.`);
      $('connect').focus();
    } catch (err) {
      showError($('connect-error'), `No demo token: ${errorText(err)}`);
    } finally {
      button.disabled = false;
    }
  });
  $('token').addEventListener('input', describeToken);
  $('agent-form').addEventListener('submit', startAgent);
  $('template').addEventListener('change', useTemplate);
  $('use-template').addEventListener('click', useTemplate);
  $('send-form').addEventListener('submit', sendMessage);
  $('message').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) sendMessage(ev);
  });
  $('list-threads').addEventListener('click', listThreads);
  $('log-filter').addEventListener('input', () => { for (const entry of $('frame-log').children) applyFilter(entry); });
  $('log-clear').addEventListener('click', () => {
    $('frame-log').replaceChildren();
    ui.frames = 0;
    $('log-count').textContent = '0 frames';
  });
  setInterval(describeToken, 30000);
  useTemplate();
  setStatus('idle', 'Not connected.');
  setButtons();
  updateSessionInfo();
  probeDevTokens();
}

init();
