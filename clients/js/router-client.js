// router-client.js: JavaScript client of the event router (subprotocol router.v1).
//
// An ES module without dependencies, for browsers and Node.js 18+. In Node, pass a WebSocket
// constructor (e.g. the `ws` package) as the `WebSocket` option; browsers use the global one.
// See README.md beside this file for the API and the reconnect/resume semantics.

export const SUBPROTOCOL = 'router.v1';

export const DEFAULTS = Object.freeze({
  initialDelayMs: 500,
  maxDelayMs: 20000,
  requestTimeoutMs: 10000,
  connectTimeoutMs: 10000,
  refreshBeforeExpiryMs: 30000,
  stableConnectionMs: 5000,
  maxReconnectAttempts: Infinity,
  closeTimeoutMs: 5000,
});

// The final events of an agent run (DESIGN.md §4): exactly one of them ends every run.
export const FINAL_RUN_EVENTS = Object.freeze(['agent_completed', 'agent_error', 'agent_stopped']);

// Frame types the router itself emits. Anything else is an event published by a backend
// through POST /api/v1/publish (the router refuses these types there).
const ROUTER_TYPES = new Set(['connection_established', 'pong', 'error']);

/** True when `type` is a backend-published event type (not one of the router's own). */
export function isPublishedType(type) {
  if (typeof type !== 'string') return false;
  if (ROUTER_TYPES.has(type)) return false;
  return !(type.startsWith('agent_') || type.startsWith('tool_') || type.startsWith('thread_'));
}

/** An error reported by the router (`error` frame) or by the client (timeout, closed, ...). */
export class RouterError extends Error {
  constructor(code, message, details = {}) {
    super(message || code);
    this.name = 'RouterError';
    this.code = code;
    if (details.frame !== undefined) this.frame = details.frame;
    if (details.closeCode !== undefined) this.closeCode = details.closeCode;
    if (details.closeReason !== undefined) this.closeReason = details.closeReason;
    if (details.cause !== undefined) this.cause = details.cause;
  }
}

const TERMINAL_REASONS = {
  1002: 'protocol_error',
  1003: 'unsupported_data',
  1007: 'invalid_payload',
  1008: 'policy_violation',
  1009: 'message_too_big',
  1010: 'extension_required',
  4503: 'too_many_connections',
  4510: 'protocol_abuse',
  4511: 'disconnected_by_backend',
};

/**
 * What the client does after the server closed a connection with `code` (DESIGN.md §4).
 * Returns {action, reason}: action is 'reconnect', 'reconnect_slow' (4029: rate limited),
 * 'refresh_token' (4501: reconnect with a fresh token from getToken()) or 'terminal'.
 */
export function closePolicy(code) {
  if (code === 4501) return { action: 'refresh_token', reason: 'token_expired' };
  if (code === 4029) return { action: 'reconnect_slow', reason: 'rate_limited' };
  if (Object.prototype.hasOwnProperty.call(TERMINAL_REASONS, code)) {
    return { action: 'terminal', reason: TERMINAL_REASONS[code] };
  }
  if (code >= 4500 && code <= 4999) return { action: 'terminal', reason: 'do_not_reconnect' };
  // 1000 from the server (not asked for by the application), 1001 going away, 1005 no status,
  // 1006 abnormal (no close frame: network loss, server killed), 1011 internal error,
  // 1012/1013/1014 restart/try again later/bad gateway, 1015 TLS, 4000-4499, 3000-3999 and
  // anything unknown: reconnect with backoff.
  return { action: 'reconnect', reason: 'reconnect' };
}

/**
 * Full-jitter exponential backoff: a delay drawn uniformly from
 * [0, min(maxDelayMs, initialDelayMs * 2^attempt)] (attempt counts from 0).
 * With `slow` (after 4029) the delay is drawn from [maxDelayMs / 2, maxDelayMs] instead.
 */
export function backoffDelay(attempt, options = {}, random = Math.random) {
  const initial = options.initialDelayMs ?? DEFAULTS.initialDelayMs;
  const max = Math.max(options.maxDelayMs ?? DEFAULTS.maxDelayMs, 0);
  if (options.slow) return Math.round(max / 2 + random() * (max / 2));
  const cap = Math.min(max, initial * Math.pow(2, Math.min(Math.max(attempt, 0), 30)));
  return Math.round(random() * cap);
}

function base64UrlDecode(text) {
  let b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  while (b64.length % 4) b64 += '=';
  const binary = atob(b64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

/** The claims of a JWT, decoded WITHOUT verifying anything; null when it is not a JWT. */
export function decodeJwtPayload(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const claims = JSON.parse(base64UrlDecode(parts[1]));
    return claims && typeof claims === 'object' && !Array.isArray(claims) ? claims : null;
  } catch {
    return null;
  }
}

/** The token's `exp` in milliseconds since the epoch, or null when it has none. */
export function tokenExpiresAt(token) {
  const claims = decodeJwtPayload(token);
  return claims && typeof claims.exp === 'number' && Number.isFinite(claims.exp) ? claims.exp * 1000 : null;
}

/** `url` with `resume` and `last_event_id` set (other query parameters are kept). */
export function buildUrl(url, resume) {
  const u = new URL(url);
  u.searchParams.delete('resume');
  u.searchParams.delete('last_event_id');
  if (resume && resume.token) {
    u.searchParams.set('resume', resume.token);
    u.searchParams.set('last_event_id', String(resume.lastEventId ?? 0));
  }
  return u.toString();
}

const MAX_TIMER_MS = 2147483647;
const OPEN = 1;
const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/; // RFC 7230 token: what a subprotocol may hold

function defer() {
  let resolve, reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

function randomPart() {
  return Math.floor(Math.random() * 0x100000000).toString(36).padStart(7, '0');
}

// A small event emitter that works the same in browsers and Node.
class Emitter {
  constructor() { this._listeners = new Map(); }

  on(type, listener) {
    if (typeof listener !== 'function') throw new TypeError('listener must be a function');
    let list = this._listeners.get(type);
    if (!list) this._listeners.set(type, (list = []));
    list.push(listener);
    return () => this.off(type, listener);
  }

  once(type, listener) {
    const off = this.on(type, (ev) => { off(); listener(ev); });
    return off;
  }

  off(type, listener) {
    const list = this._listeners.get(type);
    if (!list) return;
    const i = list.indexOf(listener);
    if (i >= 0) list.splice(i, 1);
  }

  listenerCount(type) { return (this._listeners.get(type) || []).length; }

  _emit(type, ev) {
    const list = this._listeners.get(type);
    if (!list || list.length === 0) return;
    for (const listener of list.slice()) {
      try {
        listener(ev);
      } catch (err) {
        this._listenerFailed(type, err);
      }
    }
  }

  _listenerFailed(type, err) {
    if (type !== 'error' && this.listenerCount('error') > 0) {
      const e = err instanceof Error ? err : new Error(String(err));
      e.source = 'listener';
      this._emit('error', e);
    } else {
      console.error(`router-client: a '${type}' listener threw`, err);
    }
  }
}

/**
 * One agent run (started by startAgent() or userMessage()): an async iterable over its
 * events in order, ending after its final event.
 */
export class AgentRun {
  constructor(client, requestId, agent, threadId) {
    this._client = client;
    this.requestId = requestId;
    this.agent = agent;
    this.runId = null;
    this.threadId = threadId ?? null;
    this.events = [];
    this.final = null;
    this.status = 'pending'; // pending | running | completed | error | stopped | failed
    this.error = null;
    this._listeners = [];
    this._waiters = [];
    this._sessionId = null;
    this._started = defer();
    this._done = defer();
    // Nobody is obliged to await these: keep a rejection from being "unhandled".
    this._started.promise.catch(() => {});
    this._done.promise.catch(() => {});
    /** Resolves with the final event (agent_completed, agent_error or agent_stopped). */
    this.done = this._done.promise;
    /** Resolves with the run id once agent_started arrived. */
    this.started = this._started.promise;
  }

  get finished() { return this.final !== null || this.error !== null; }

  /** Calls `listener` with every later event of this run; returns a function that removes it. */
  onEvent(listener) {
    if (typeof listener !== 'function') throw new TypeError('listener must be a function');
    this._listeners.push(listener);
    return () => {
      const i = this._listeners.indexOf(listener);
      if (i >= 0) this._listeners.splice(i, 1);
    };
  }

  /** Sends stop_agent for this run (once its id is known); resolves with the run's final event. */
  async stop(options = {}) {
    if (this.finished) return this.done;
    const runId = await this.started;
    if (this.finished) return this.done;
    try {
      await this._client.request('stop_agent', { run_id: runId }, options);
    } catch (err) {
      // The run ended before the stop reached it: the router answers not_found after the
      // run's final event, so the run is finished by now.
      if (!(err instanceof RouterError && err.code === 'not_found' && this.finished)) throw err;
    }
    return this.done;
  }

  [Symbol.asyncIterator]() {
    let index = 0;
    let ended = false;
    return {
      next: () => {
        if (ended) return Promise.resolve({ value: undefined, done: true });
        if (index < this.events.length) return Promise.resolve({ value: this.events[index++], done: false });
        if (this.error) { ended = true; return Promise.reject(this.error); }
        if (this.final) { ended = true; return Promise.resolve({ value: undefined, done: true }); }
        return new Promise((resolve, reject) => {
          this._waiters.push(() => {
            if (index < this.events.length) resolve({ value: this.events[index++], done: false });
            else if (this.error) { ended = true; reject(this.error); }
            else { ended = true; resolve({ value: undefined, done: true }); }
          });
        });
      },
      return: (value) => {
        ended = true;
        return Promise.resolve({ value, done: true });
      },
      [Symbol.asyncIterator]() { return this; },
    };
  }

  _wake() {
    const waiters = this._waiters;
    this._waiters = [];
    for (const w of waiters) w();
  }

  _push(frame) {
    if (this.finished) return;
    if (this.runId === null && typeof frame.run_id === 'string') {
      this.runId = frame.run_id;
      this.status = 'running';
      this._started.resolve(this.runId);
    }
    if (frame.thread_id != null) this.threadId = frame.thread_id;
    if (frame.type === 'agent_started' && frame.data && typeof frame.data.agent === 'string') this.agent = frame.data.agent;
    this.events.push(frame);
    const isFinal = FINAL_RUN_EVENTS.includes(frame.type);
    if (isFinal) {
      this.final = frame;
      this.status = frame.type === 'agent_completed' ? 'completed' : frame.type === 'agent_error' ? 'error' : 'stopped';
    }
    for (const listener of this._listeners.slice()) {
      try { listener(frame); } catch (err) { this._client._listenerFailed('run event', err); }
    }
    this._wake();
    if (isFinal) {
      this._done.resolve(frame);
      this._client._runFinished(this);
    }
  }

  _fail(error) {
    if (this.finished) return;
    this.error = error;
    this.status = 'failed';
    this._started.reject(error);
    this._done.reject(error);
    this._wake();
    this._client._runFinished(this);
  }
}

/**
 * The client. Create it, add listeners, call connect().
 */
export class RouterClient extends Emitter {
  constructor(options = {}) {
    super();
    if (!options || typeof options.url !== 'string') throw new TypeError('options.url (ws:// or wss:// URL of /ws) is required');
    const u = new URL(options.url);
    if (!['ws:', 'wss:', 'http:', 'https:'].includes(u.protocol)) throw new TypeError(`unsupported URL scheme ${u.protocol}`);
    if (typeof options.getToken !== 'function') throw new TypeError('options.getToken (a function returning the JWT) is required');
    const WS = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== 'function') {
      throw new TypeError('no WebSocket implementation: pass options.WebSocket (in Node.js e.g. the `ws` package)');
    }
    this.url = options.url;
    this._getToken = options.getToken;
    this._WS = WS;
    this.options = { ...DEFAULTS };
    for (const key of Object.keys(DEFAULTS)) {
      if (options[key] !== undefined) {
        const v = options[key];
        if (typeof v !== 'number' || Number.isNaN(v) || v < 0) throw new TypeError(`options.${key} must be a number >= 0`);
        this.options[key] = v;
      }
    }
    if (this.options.maxDelayMs < this.options.initialDelayMs) this.options.maxDelayMs = this.options.initialDelayMs;
    this._random = typeof options.random === 'function' ? options.random : Math.random;

    this.state = 'idle';
    this.sessionId = null;
    this.connectionId = null;
    this.serverId = null;
    this.userId = null;
    this.limits = null;
    this.recovered = null;
    this.lastEventId = 0;
    this.lastClose = null;
    this.duplicatesDropped = 0;

    this._ws = null;
    this._resumeToken = null;
    this._token = null;
    this._attempt = 0;
    this._established = false;
    this._establishedAt = 0;
    this._clockOffsetMs = 0;
    this._appClosed = false;
    this._timers = { reconnect: null, connect: null, refresh: null };
    this._queue = [];
    this._pending = new Map();
    this._startsByRequestId = new Map();
    this._runsById = new Map();
    this._activeRuns = new Set();
    this._cyclePending = null;
    this._connectWaiters = [];
    this._idCounter = 0;
    this._idPrefix = randomPart();
    this._generation = 0;
  }

  // ---- public API ------------------------------------------------------------------------

  /** The WebSocket of the current connection (for diagnostics), or null. */
  get socket() { return this._ws; }

  /** True between connection_established and the next close. */
  get isOpen() { return this.state === 'open'; }

  /** Starts connecting; resolves with the first `established` info (rejects on a terminal close). */
  connect() {
    if (this._appClosed) return Promise.reject(new RouterError('closed', 'the client was closed'));
    if (this.state === 'open') return Promise.resolve(this._establishedInfo());
    const waiter = defer();
    this._connectWaiters.push(waiter);
    if (this.state === 'idle' || this.state === 'closed') {
      this._attempt = 0;
      this._openSocket(null);
    }
    return waiter.promise;
  }

  /**
   * Reconnects now (e.g. on the browser's `online` event). Where the WebSocket can drop its TCP
   * connection without a close frame (`terminate()`, as in the `ws` package) the session is
   * resumed; a browser WebSocket can only close with a close frame, which ends the session.
   */
  reconnect() {
    if (this._appClosed) throw new RouterError('closed', 'the client was closed');
    if (this.state === 'idle' || this.state === 'closed') { this.connect().catch(() => {}); return; }
    if (this.state === 'reconnecting') {
      clearTimeout(this._timers.reconnect);
      this._timers.reconnect = null;
      this._openSocket(null);
      return;
    }
    this._cycle('reconnect', null, true);
  }

  /** Ends the client for good: closes the socket (1000), rejects what is pending, no reconnect. */
  close(code = 1000, reason = '') {
    if (this._appClosed) return Promise.resolve();
    this._appClosed = true;
    this._clearTimers();
    const ws = this._ws;
    this._ws = null;
    const closed = new Promise((resolve) => {
      if (!ws || ws.readyState === 3) { resolve(); return; }
      const t = setTimeout(() => { try { ws.terminate?.(); } catch {} resolve(); }, this.options.closeTimeoutMs);
      ws.onclose = () => { clearTimeout(t); resolve(); };
      ws.onerror = () => {};
      ws.onmessage = null;
      try { ws.close(code, reason); } catch { try { ws.close(); } catch {} clearTimeout(t); resolve(); }
    });
    this._finish({ code, reason, terminalReason: 'client_closed' });
    return closed;
  }

  /**
   * Sends a raw message object (or string). Before the connection is established it is
   * queued and sent after the next connection_established. Returns true when sent now.
   */
  send(message) {
    if (this._appClosed || this.state === 'closed') throw new RouterError('closed', 'the client is closed');
    const text = typeof message === 'string' ? message : JSON.stringify(message);
    return this._sendText(text, null);
  }

  /**
   * Sends {type, id, thread_id?, payload} and resolves with the frame whose reply_to is that id
   * (an `error` frame rejects with a RouterError carrying data.code).
   */
  request(type, payload = {}, options = {}) {
    if (typeof type !== 'string' || !type) return Promise.reject(new TypeError('type must be a non-empty string'));
    if (this._appClosed || this.state === 'closed') return Promise.reject(new RouterError('closed', 'the client is closed'));
    const id = options.id ?? this._nextId();
    if (this._pending.has(id) || this._startsByRequestId.has(id)) return Promise.reject(new TypeError(`request id ${id} is in use`));
    const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs;
    const message = { type, id };
    if (options.threadId != null) message.thread_id = options.threadId;
    message.payload = payload ?? {};
    return new Promise((resolve, reject) => {
      const entry = { id, type, resolve, reject, timer: null, sentSession: null, queued: null };
      entry.timer = setTimeout(() => {
        this._pending.delete(id);
        if (entry.queued) entry.queued.cancelled = true;
        reject(new RouterError('timeout', `no reply to ${type} ${id} within ${timeoutMs} ms`));
        this._maybeCycle();
      }, Math.min(timeoutMs, MAX_TIMER_MS));
      this._pending.set(id, entry);
      this._sendText(JSON.stringify(message), entry);
    });
  }

  /** ping -> pong; resolves with the round trip in milliseconds. */
  async ping(options = {}) {
    const t0 = Date.now();
    await this.request('ping', {}, options);
    return Date.now() - t0;
  }

  /** create_thread -> the thread_created frame (thread_id in the envelope, the thread in data). */
  createThread(title, options = {}) {
    return this.request('create_thread', title == null ? {} : { title }, options);
  }

  /** list_threads -> the thread_list frame (data.threads). */
  listThreads(options = {}) {
    return this.request('list_threads', options.limit == null ? {} : { limit: options.limit }, options);
  }

  /** get_thread_history -> the thread_history frame (data.messages). */
  getThreadHistory(threadId, options = {}) {
    return this.request('get_thread_history', options.limit == null ? {} : { limit: options.limit }, { ...options, threadId });
  }

  /** start_agent: returns an AgentRun. */
  startAgent(agent, input, options = {}) {
    return this._startRun('start_agent', { agent, input: input === undefined ? null : input }, agent, options);
  }

  /** user_message: appends the text to the thread (created when none is given) and runs the default agent. */
  userMessage(text, options = {}) {
    return this._startRun('user_message', { text }, null, options);
  }

  /** stop_agent by run id -> the run's final event (agent_stopped) frame. */
  stopAgent(runId, options = {}) {
    return this.request('stop_agent', { run_id: runId }, options);
  }

  // ---- connection lifecycle ---------------------------------------------------------------

  _setState(state, detail = {}) {
    const previous = this.state;
    this.state = state;
    this._emit('state', { state, previous, ...detail });
  }

  async _openSocket(prefetchedToken) {
    const generation = ++this._generation;
    const resuming = this._resumeToken !== null;
    this._established = false;
    this._setState('connecting', { attempt: this._attempt, resuming });
    this._emit('connecting', { attempt: this._attempt, resuming });

    let token = prefetchedToken;
    if (token == null) {
      try {
        token = await this._getToken();
        if (typeof token !== 'string' || token === '') throw new TypeError('getToken() returned no token');
        if (!TOKEN_RE.test(token)) throw new TypeError('getToken() returned a token with characters a subprotocol cannot carry');
      } catch (err) {
        if (generation !== this._generation || this._appClosed) return;
        this._reportError(err, 'getToken');
        this._afterClose({ code: 1006, reason: 'getToken failed', wasClean: false });
        return;
      }
    }
    if (generation !== this._generation || this._appClosed) return;

    const url = buildUrl(this.url, resuming ? { token: this._resumeToken, lastEventId: this.lastEventId } : null);
    let ws;
    try {
      ws = new this._WS(url, [SUBPROTOCOL, 'jwt.' + token]);
    } catch (err) {
      this._reportError(err, 'socket');
      this._afterClose({ code: 1006, reason: 'WebSocket constructor failed', wasClean: false });
      return;
    }
    this._ws = ws;
    this._token = token;

    this._timers.connect = setTimeout(() => {
      if (ws !== this._ws) return;
      this._dropSocket(ws, 'connect_timeout');
      this._afterClose({ code: 1006, reason: 'connect timeout', wasClean: false });
    }, Math.min(this.options.connectTimeoutMs, MAX_TIMER_MS));

    ws.onopen = () => {
      if (ws !== this._ws) return;
      if (ws.protocol && ws.protocol !== SUBPROTOCOL) {
        this._reportError(new Error(`server selected subprotocol ${ws.protocol}`), 'socket');
      }
    };
    ws.onmessage = (ev) => {
      if (ws !== this._ws) return;
      this._onMessage(ev.data);
    };
    ws.onerror = (ev) => {
      if (ws !== this._ws) return;
      const err = ev && ev.error instanceof Error ? ev.error : new Error(ev && ev.message ? ev.message : 'WebSocket error');
      this._reportError(err, 'socket');
    };
    ws.onclose = (ev) => {
      if (ws !== this._ws) return;
      this._ws = null;
      this._afterClose({ code: ev.code, reason: ev.reason || '', wasClean: !!ev.wasClean });
    };
  }

  _onMessage(data) {
    if (typeof data !== 'string') {
      this._reportError(new Error('binary frame ignored: the router sends JSON text frames'), 'protocol');
      return;
    }
    let frame;
    try {
      frame = JSON.parse(data);
    } catch (err) {
      this._reportError(new Error('a frame that is not JSON was ignored'), 'protocol');
      return;
    }
    if (!frame || typeof frame !== 'object' || typeof frame.type !== 'string') {
      this._reportError(new Error('a frame without a type was ignored'), 'protocol');
      return;
    }
    if (frame.type === 'connection_established') {
      this._onEstablished(frame);
      return;
    }
    if (typeof frame.event_id === 'number') {
      if (frame.event_id <= this.lastEventId) {
        this.duplicatesDropped++;
        return;
      }
      this.lastEventId = frame.event_id;
    }
    this._emit('event', frame);
    this._route(frame);
    if (isPublishedType(frame.type)) this._emit('publish', frame);
  }

  _route(frame) {
    let run = null;
    if (typeof frame.run_id === 'string') run = this._runsById.get(frame.run_id) || null;
    if (!run && frame.reply_to != null) {
      const starting = this._startsByRequestId.get(frame.reply_to);
      if (starting) {
        this._startsByRequestId.delete(frame.reply_to);
        clearTimeout(starting.timer);
        if (frame.type === 'error') {
          const d = frame.data || {};
          starting.run._fail(new RouterError(d.code || 'error', d.message, { frame }));
        } else {
          run = starting.run;
          if (typeof frame.run_id === 'string') this._runsById.set(frame.run_id, run);
        }
      }
    }
    if (run) run._push(frame);
    if (frame.reply_to != null) {
      const entry = this._pending.get(frame.reply_to);
      if (entry) {
        this._pending.delete(frame.reply_to);
        clearTimeout(entry.timer);
        if (frame.type === 'error') {
          const d = frame.data || {};
          entry.reject(new RouterError(d.code || 'error', d.message, { frame }));
        } else {
          entry.resolve(frame);
        }
        this._maybeCycle();
      }
    }
  }

  _onEstablished(frame) {
    const d = frame.data || {};
    clearTimeout(this._timers.connect);
    this._timers.connect = null;
    const previousSessionId = this.sessionId;
    const previousLastEventId = this.lastEventId;
    const resumed = this._resumeToken !== null;
    this.recovered = d.recovered === true;
    const continued = this.recovered && previousSessionId !== null && d.session_id === previousSessionId;
    const ts = Date.parse(frame.timestamp);
    if (Number.isFinite(ts)) this._clockOffsetMs = ts - Date.now();

    let lostRuns = [];
    if (!continued) {
      // A new session: its event ids start again at 1. Whatever was in flight in the old
      // session cannot arrive any more.
      this.lastEventId = 0;
      const lost = new RouterError('session_lost', 'the connection was re-established without recovery: the session and its runs are gone');
      for (const [id, entry] of this._pending) {
        if (entry.sentSession !== null) {
          this._pending.delete(id);
          clearTimeout(entry.timer);
          entry.reject(lost);
        }
      }
      for (const run of Array.from(this._activeRuns)) {
        if (run._sessionId !== null) { lostRuns.push(run); run._fail(lost); }
      }
    }
    this.sessionId = typeof d.session_id === 'string' ? d.session_id : null;
    this.connectionId = typeof d.connection_id === 'string' ? d.connection_id : null;
    this.serverId = d.server_id ?? null;
    this.limits = d.limits ?? null;
    if (typeof frame.user_id === 'string') this.userId = frame.user_id;
    this._resumeToken = typeof d.resume_token === 'string' ? d.resume_token : null;
    this._established = true;
    this._establishedAt = Date.now();

    const info = this._establishedInfo(resumed);
    this._setState('open', { sessionId: this.sessionId, recovered: this.recovered });
    this._emit('established', info);
    this._emit('event', frame);
    if (!continued && previousSessionId !== null) {
      this._emit('gap', {
        previousSessionId,
        sessionId: this.sessionId,
        lastEventId: previousLastEventId,
        resumed,
        lostRuns,
      });
    }
    const waiters = this._connectWaiters;
    this._connectWaiters = [];
    for (const w of waiters) w.resolve(info);
    this._flushQueue();
    this._scheduleRefresh();
  }

  _establishedInfo(resumed = this._resumeToken !== null) {
    return {
      recovered: this.recovered === true,
      resumed,
      sessionId: this.sessionId,
      connectionId: this.connectionId,
      serverId: this.serverId,
      userId: this.userId,
      limits: this.limits,
      lastEventId: this.lastEventId,
    };
  }

  // Called when the current socket is gone (closed by the server, a network error, a connect
  // timeout, a failed getToken): decide between a terminal close and a reconnect.
  _afterClose({ code, reason, wasClean }) {
    clearTimeout(this._timers.connect);
    clearTimeout(this._timers.refresh);
    this._timers.connect = this._timers.refresh = null;
    this._cyclePending = null;
    if (this._appClosed) return;
    const wasEstablished = this._established;
    this._established = false;
    if (wasEstablished && Date.now() - this._establishedAt >= this.options.stableConnectionMs) this._attempt = 0;

    const policy = closePolicy(code);
    let terminal = policy.action === 'terminal';
    let terminalReason = terminal ? policy.reason : null;
    if (!terminal && this._attempt >= this.options.maxReconnectAttempts) {
      terminal = true;
      terminalReason = 'max_reconnect_attempts';
    }
    this.lastClose = { code, reason, wasClean, terminal, terminalReason };
    this._emit('close', { code, reason, wasClean, terminal, terminalReason, willReconnect: !terminal, initiatedByClient: false });
    if (terminal) {
      this._finish({ code, reason, terminalReason });
      return;
    }
    if (policy.action === 'refresh_token') this._emit('tokenRefresh', { reason: 'expired', code });
    const delayMs = backoffDelay(this._attempt, { ...this.options, slow: policy.action === 'reconnect_slow' }, this._random);
    this._attempt++;
    this._setState('reconnecting', { attempt: this._attempt, delayMs, code, reason });
    this._emit('reconnecting', { attempt: this._attempt, delayMs, code, reason });
    this._timers.reconnect = setTimeout(() => {
      this._timers.reconnect = null;
      if (!this._appClosed) this._openSocket(null);
    }, delayMs);
  }

  _finish({ code, reason, terminalReason }) {
    this._clearTimers();
    this._generation++;
    const err = new RouterError('closed', `connection closed for good: ${terminalReason} (${code}${reason ? ' ' + reason : ''})`, { closeCode: code, closeReason: reason });
    err.terminalReason = terminalReason;
    for (const [, entry] of this._pending) { clearTimeout(entry.timer); entry.reject(err); }
    this._pending.clear();
    for (const run of Array.from(this._activeRuns)) run._fail(err);
    for (const [, s] of this._startsByRequestId) clearTimeout(s.timer);
    this._startsByRequestId.clear();
    this._queue = [];
    const wasClean = this.lastClose && this.lastClose.code === code ? this.lastClose.wasClean : true;
    this.lastClose = { code, reason, wasClean, terminal: true, terminalReason };
    const info = { code, reason, terminal: true, terminalReason };
    this._setState('closed', info);
    this._emit('closed', info);
    const waiters = this._connectWaiters;
    this._connectWaiters = [];
    for (const w of waiters) w.reject(err);
  }

  _clearTimers() {
    for (const key of Object.keys(this._timers)) {
      clearTimeout(this._timers[key]);
      this._timers[key] = null;
    }
  }

  _dropSocket(ws, reason) {
    this._ws = null;
    ws.onopen = ws.onmessage = null;
    ws.onerror = () => {};
    ws.onclose = () => {};
    try {
      if (typeof ws.terminate === 'function') ws.terminate();
      else ws.close(4000, reason);
    } catch {
      try { ws.close(); } catch {}
    }
  }

  // ---- token refresh and client-initiated reconnects --------------------------------------

  _scheduleRefresh() {
    clearTimeout(this._timers.refresh);
    this._timers.refresh = null;
    const before = this.options.refreshBeforeExpiryMs;
    if (!before) return;
    const exp = tokenExpiresAt(this._token);
    if (exp === null) return;
    const remaining = exp - (Date.now() + this._clockOffsetMs);
    if (remaining <= 0) return; // already past exp: the router closes with 4501 and we reconnect
    const delay = Math.max(remaining - before, remaining / 2);
    const ws = this._ws;
    this._timers.refresh = setTimeout(() => {
      this._timers.refresh = null;
      if (ws === this._ws) this._refreshToken(ws);
    }, Math.min(delay, MAX_TIMER_MS));
  }

  async _refreshToken(ws) {
    let token;
    try {
      token = await this._getToken();
      if (typeof token !== 'string' || token === '' || !TOKEN_RE.test(token)) throw new TypeError('getToken() returned no usable token');
    } catch (err) {
      this._reportError(err, 'getToken');
      return; // the router will close with 4501 at exp, and the reconnect asks again
    }
    if (ws !== this._ws || this.state !== 'open') return;
    const oldExp = tokenExpiresAt(this._token);
    const newExp = tokenExpiresAt(token);
    if (oldExp !== null && newExp !== null && newExp <= oldExp) {
      this._reportError(new Error('getToken() returned a token that expires no later than the current one: not refreshing before expiry'), 'getToken');
      return;
    }
    this._emit('tokenRefresh', { reason: 'expiring', expiresAt: newExp });
    this._cycle('token_refresh', token, false);
  }

  // Replaces the current connection by a new one. Where the socket can drop without a close
  // frame the router keeps the session and the new connection resumes it; otherwise (browsers)
  // a close frame ends the session, so that is only done when nothing is in flight, unless forced.
  _cycle(reason, token, force) {
    const ws = this._ws;
    if (!ws) return;
    const silent = typeof ws.terminate === 'function';
    if (!silent && !force && !this._isIdle()) {
      this._cyclePending = { reason, token };
      return;
    }
    this._cyclePending = null;
    if (silent && ws.readyState === OPEN && ws.bufferedAmount > 0) {
      // What we sent must leave before the drop, or the router would never see it.
      setTimeout(() => { if (ws === this._ws) this._cycle(reason, token, force); }, 20);
      return;
    }
    clearTimeout(this._timers.refresh);
    clearTimeout(this._timers.connect);
    this._timers.refresh = this._timers.connect = null;
    this._dropSocket(ws, reason);
    this._established = false;
    const code = silent ? 1006 : 4000;
    this.lastClose = { code, reason, wasClean: !silent, terminal: false, terminalReason: null };
    this._emit('close', { code, reason, wasClean: !silent, terminal: false, terminalReason: null, willReconnect: true, initiatedByClient: true });
    // A short pause lets the router see the dropped connection before the resume arrives.
    const delayMs = silent ? 50 : 0;
    this._setState('reconnecting', { attempt: 0, delayMs, code, reason });
    this._emit('reconnecting', { attempt: 0, delayMs, code, reason });
    this._timers.reconnect = setTimeout(() => {
      this._timers.reconnect = null;
      if (!this._appClosed) this._openSocket(token);
    }, delayMs);
  }

  _isIdle() {
    return this._activeRuns.size === 0 && this._pending.size === 0;
  }

  _maybeCycle() {
    if (this._cyclePending && this._isIdle() && this.state === 'open') {
      const { reason, token } = this._cyclePending;
      this._cycle(reason, token, true);
    }
  }

  // ---- sending, runs ----------------------------------------------------------------------

  _nextId() {
    return `${this._idPrefix}-${(++this._idCounter).toString(36)}-${randomPart()}`;
  }

  _sendText(text, owner) {
    const ws = this._ws;
    if (this.state === 'open' && ws && ws.readyState === OPEN) {
      ws.send(text);
      if (owner) owner.sentSession = this.sessionId;
      return true;
    }
    const item = { text, owner, cancelled: false };
    if (owner) owner.queued = item;
    this._queue.push(item);
    return false;
  }

  _flushQueue() {
    const queue = this._queue;
    this._queue = [];
    for (const item of queue) {
      if (item.cancelled) continue;
      if (item.owner) item.owner.queued = null;
      this._sendText(item.text, item.owner);
    }
  }

  _startRun(type, payload, agent, options) {
    if (this._appClosed || this.state === 'closed') throw new RouterError('closed', 'the client is closed');
    const id = options.id ?? this._nextId();
    const run = new AgentRun(this, id, agent, options.threadId);
    if (typeof options.onEvent === 'function') run.onEvent(options.onEvent);
    const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs;
    const message = { type, id };
    if (options.threadId != null) message.thread_id = options.threadId;
    message.payload = payload;
    const starting = { run, timer: null, sentSession: null, queued: null };
    starting.timer = setTimeout(() => {
      if (this._startsByRequestId.get(id) !== starting) return;
      this._startsByRequestId.delete(id);
      if (starting.queued) starting.queued.cancelled = true;
      run._fail(new RouterError('timeout', `no agent_started for ${type} ${id} within ${timeoutMs} ms`));
    }, Math.min(timeoutMs, MAX_TIMER_MS));
    this._startsByRequestId.set(id, starting);
    this._activeRuns.add(run);
    const owner = {
      set sentSession(s) { starting.sentSession = s; run._sessionId = s; },
      get sentSession() { return starting.sentSession; },
      set queued(q) { starting.queued = q; },
      get queued() { return starting.queued; },
    };
    this._sendText(JSON.stringify(message), owner);
    return run;
  }

  _runFinished(run) {
    this._activeRuns.delete(run);
    if (run.runId) this._runsById.delete(run.runId);
    const s = this._startsByRequestId.get(run.requestId);
    if (s && s.run === run) { clearTimeout(s.timer); this._startsByRequestId.delete(run.requestId); }
    this._maybeCycle();
  }

  _reportError(err, source) {
    const e = err instanceof Error ? err : new Error(String(err));
    if (e.source === undefined) {
      try { e.source = source; } catch {}
    }
    if (this.listenerCount('error') > 0) this._emit('error', e);
  }
}

export default RouterClient;
