// router-connection.js: the connection under a RouterClient. One WebSocket at a time, opened
// with a token from getToken(); after a close it reconnects, resumes, asks for a fresh token or
// stops for good, as the close code says (reconnect-policy.js). It keeps the session's resume
// cursor, drops duplicate frames, moves to a fresh token before the old one expires where the
// WebSocket can drop silently (terminate()), and queues what is sent while no connection is
// open. RouterClient (router-client.js) extends it with the public API: connect() and close(),
// requests and runs.

import { MAX_TIMER_MS } from './client-options.js';
import { Emitter } from './event-emitter.js';
import { InFlight } from './in-flight.js';
import { backoffDelay, closePolicy } from './reconnect-policy.js';
import {
  SUBPROTOCOL, SUBPROTOCOL_TOKEN_RE, RouterError, buildUrl, isPublishedType, tokenExpiresAt,
} from './router-protocol.js';

const OPEN = 1;

// True when `ws` can drop its TCP connection without a close frame (`terminate()`, as in the
// `ws` package): the router then keeps the session for a resume, as after a network loss.
function canDropSilently(ws) {
  return ws != null && typeof ws.terminate === 'function';
}

export class RouterConnection extends Emitter {
  /** `config` as readClientOptions() returns it. */
  constructor(config) {
    super();
    this.url = config.url;
    this._getToken = config.getToken;
    this._WS = config.WebSocket;
    this.options = config.timing;
    this._random = config.random;

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
    this._inFlight = new InFlight();
    this._connectWaiters = [];
    this._generation = 0;
  }

  // ---- one socket --------------------------------------------------------------------------

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

    const token = prefetchedToken ?? await this._tokenForConnect(generation);
    if (token == null || generation !== this._generation || this._appClosed) return;

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
    this._watchSocket(ws);
  }

  // getToken()'s token for a connect; null after a failure, which counts as a failed attempt.
  async _tokenForConnect(generation) {
    try {
      const token = await this._getToken();
      if (typeof token !== 'string' || token === '') throw new TypeError('getToken() returned no token');
      if (!SUBPROTOCOL_TOKEN_RE.test(token)) throw new TypeError('getToken() returned a token with characters a subprotocol cannot carry');
      return token;
    } catch (err) {
      if (generation !== this._generation || this._appClosed) return null;
      this._reportError(err, 'getToken');
      this._afterClose({ code: 1006, reason: 'getToken failed', wasClean: false });
      return null;
    }
  }

  // The connect timeout and the socket's handlers; a socket that is no longer the current one
  // is ignored.
  _watchSocket(ws) {
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

  _dropSocket(ws, reason) {
    this._ws = null;
    ws.onopen = ws.onmessage = null;
    ws.onerror = () => {};
    ws.onclose = () => {};
    try {
      if (canDropSilently(ws)) ws.terminate();
      else ws.close(4000, reason);
    } catch {
      try { ws.close(); } catch {}
    }
  }

  // ---- inbound -----------------------------------------------------------------------------

  _onMessage(data) {
    const frame = this._parseFrame(data);
    if (!frame) return;
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
    this._inFlight.route(frame);
    if (isPublishedType(frame.type)) this._emit('publish', frame);
  }

  // The frame as an object with a type; null (reported) for anything else.
  _parseFrame(data) {
    if (typeof data !== 'string') {
      this._reportError(new Error('binary frame ignored: the router sends JSON text frames'), 'protocol');
      return null;
    }
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      this._reportError(new Error('a frame that is not JSON was ignored'), 'protocol');
      return null;
    }
    if (!frame || typeof frame !== 'object' || typeof frame.type !== 'string') {
      this._reportError(new Error('a frame without a type was ignored'), 'protocol');
      return null;
    }
    return frame;
  }

  _onEstablished(frame) {
    const d = frame.data || {};
    clearTimeout(this._timers.connect);
    this._timers.connect = null;
    const previousSessionId = this.sessionId;
    const previousLastEventId = this.lastEventId;
    const resumed = this._resumeToken !== null;
    this._resumed = resumed; // what this connection asked for: connect() when open reports it
    this.recovered = d.recovered === true;
    const continued = this.recovered && previousSessionId !== null && d.session_id === previousSessionId;
    const ts = Date.parse(frame.timestamp);
    if (Number.isFinite(ts)) this._clockOffsetMs = ts - Date.now();

    let lostRuns = [];
    if (!continued) {
      // A new session: its event ids start again at 1, and what was in flight in the old one
      // cannot be answered any more.
      this.lastEventId = 0;
      lostRuns = this._inFlight.failSent(new RouterError('session_lost', 'the connection was re-established without recovery: the session and its runs are gone'));
    }
    this._adoptSession(frame);

    const info = this._establishedInfo(resumed);
    this._setState('open', { sessionId: this.sessionId, recovered: this.recovered });
    this._emit('established', info);
    this._emit('event', frame);
    if (!continued && previousSessionId !== null) {
      this._emit('gap', { previousSessionId, sessionId: this.sessionId, lastEventId: previousLastEventId, resumed, lostRuns });
    }
    const waiters = this._connectWaiters;
    this._connectWaiters = [];
    for (const w of waiters) w.resolve(info);
    this._flushQueue();
    this._scheduleRefresh();
  }

  // What connection_established says about the session and this connection.
  _adoptSession(frame) {
    const d = frame.data || {};
    this.sessionId = typeof d.session_id === 'string' ? d.session_id : null;
    this.connectionId = typeof d.connection_id === 'string' ? d.connection_id : null;
    this.serverId = d.server_id ?? null;
    this.limits = d.limits ?? null;
    if (typeof frame.user_id === 'string') this.userId = frame.user_id;
    this._resumeToken = typeof d.resume_token === 'string' ? d.resume_token : null;
    this._established = true;
    this._establishedAt = Date.now();
  }

  _establishedInfo(resumed = this._resumed === true) {
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

  // ---- after a close -----------------------------------------------------------------------

  // Called when the current socket is gone (closed by the server, a network error, a connect
  // timeout, a failed getToken): decide between a terminal close and a reconnect.
  _afterClose({ code, reason, wasClean }) {
    clearTimeout(this._timers.connect);
    clearTimeout(this._timers.refresh);
    this._timers.connect = this._timers.refresh = null;
    if (this._appClosed) return;
    const wasStable = this._established && Date.now() - this._establishedAt >= this.options.stableConnectionMs;
    this._established = false;
    if (wasStable) this._attempt = 0;

    const policy = closePolicy(code);
    let terminalReason = policy.action === 'terminal' ? policy.reason : null;
    if (!terminalReason && this._attempt >= this.options.maxReconnectAttempts) terminalReason = 'max_reconnect_attempts';
    const terminal = terminalReason !== null;
    this.lastClose = { code, reason, wasClean, terminal, terminalReason };
    this._emit('close', { code, reason, wasClean, terminal, terminalReason, willReconnect: !terminal, initiatedByClient: false });
    if (terminal) {
      this._finish({ code, reason, terminalReason });
      return;
    }
    // After 4501 the reconnect asks getToken() again (every connect does) and resumes: the
    // router keeps a session that its token's expiry closed, but only for its resume window,
    // so a connection that ran its token's course comes back at once. A 4501 on a connection
    // that did not last (getToken() handing out tokens about to expire) backs off as usual.
    const expired = policy.action === 'refresh_token';
    if (expired) this._emit('tokenRefresh', { reason: 'expired', code });
    const delayMs = expired && wasStable ? 0
      : backoffDelay(this._attempt, { ...this.options, slow: policy.action === 'reconnect_slow' }, this._random);
    this._attempt++;
    this._reconnectAfter(delayMs, { attempt: this._attempt, code, reason }, null);
  }

  // Opens the next socket after `delayMs`, with `token` or one asked from getToken().
  _reconnectAfter(delayMs, { attempt, code, reason }, token) {
    this._setState('reconnecting', { attempt, delayMs, code, reason });
    this._emit('reconnecting', { attempt, delayMs, code, reason });
    this._timers.reconnect = setTimeout(() => {
      this._timers.reconnect = null;
      if (!this._appClosed) this._openSocket(token);
    }, delayMs);
  }

  _finish({ code, reason, terminalReason }) {
    this._clearTimers();
    this._generation++;
    const err = new RouterError('closed', `connection closed for good: ${terminalReason} (${code}${reason ? ' ' + reason : ''})`, { closeCode: code, closeReason: reason });
    err.terminalReason = terminalReason;
    this._inFlight.failAll(err);
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

  // ---- token refresh and client-initiated reconnects --------------------------------------

  // Moving to a fresh token before exp is only worth it where the socket can drop without a
  // close frame: the router then keeps the session and the new connection resumes it. A close
  // frame (all a browser WebSocket has) would end the session, so there the connection stays
  // until the router closes it with 4501, which keeps the session, and the reconnect resumes.
  _scheduleRefresh() {
    clearTimeout(this._timers.refresh);
    this._timers.refresh = null;
    const before = this.options.refreshBeforeExpiryMs;
    if (!before || !canDropSilently(this._ws)) return;
    const exp = tokenExpiresAt(this._token);
    if (exp === null) return;
    const remaining = exp - (Date.now() + this._clockOffsetMs);
    // Already past exp: the router closes with 4501 once its leeway is over, and the reconnect
    // resumes with a fresh token.
    if (remaining <= 0) return;
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
      if (typeof token !== 'string' || token === '' || !SUBPROTOCOL_TOKEN_RE.test(token)) throw new TypeError('getToken() returned no usable token');
    } catch (err) {
      this._reportError(err, 'getToken');
      return; // the router closes with 4501 after exp, and the reconnect asks again
    }
    if (ws !== this._ws || this.state !== 'open') return;
    const oldExp = tokenExpiresAt(this._token);
    const newExp = tokenExpiresAt(token);
    if (oldExp !== null && newExp !== null && newExp <= oldExp) {
      this._reportError(new Error('getToken() returned a token that expires no later than the current one: not refreshing before expiry'), 'getToken');
      return;
    }
    this._emit('tokenRefresh', { reason: 'expiring', expiresAt: newExp });
    this._cycle('token_refresh', token);
  }

  // Replaces the current connection by a new one, opened with `token` (null: getToken()'s).
  // Where the socket can drop without a close frame the router keeps the session and the new
  // connection resumes it; otherwise (browsers, reconnect() only) a close frame ends the session.
  _cycle(reason, token) {
    const ws = this._ws;
    if (!ws) return;
    const silent = canDropSilently(ws);
    if (silent && ws.readyState === OPEN && ws.bufferedAmount > 0) {
      // What we sent must leave before the drop, or the router would never see it.
      setTimeout(() => { if (ws === this._ws) this._cycle(reason, token); }, 20);
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
    this._reconnectAfter(silent ? 50 : 0, { attempt: 0, code, reason }, token);
  }

  // ---- outbound ----------------------------------------------------------------------------

  // Sends `text` now when a connection is open, else queues it for the next one. `owner` (a
  // request's or a run start's entry) learns the session it went out in, or its queue item.
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

  _runFinished(run) {
    this._inFlight.runFinished(run);
  }

  _reportError(err, source) {
    const e = err instanceof Error ? err : new Error(String(err));
    if (e.source === undefined) {
      try { e.source = source; } catch {}
    }
    if (this.listenerCount('error') > 0) this._emit('error', e);
  }
}
