// router-client.js: JavaScript client of the event router (subprotocol router.v1).
//
// ES modules without dependencies, for browsers and Node.js 18+. In Node, pass a WebSocket
// constructor (e.g. the `ws` package) as the `WebSocket` option; browsers use the global one.
// This module is the entry point: it holds RouterClient, whose methods are the client's whole
// public API, and exports everything else that is public. Its siblings, by relative path:
//   router-connection.js  what RouterClient extends: sockets, reconnect and resume, token
//                         expiry and refresh, the outbound queue
//   in-flight.js          requests awaiting replies and runs awaiting events
//   agent-run.js          AgentRun
//   reconnect-policy.js   closePolicy (the close codes) and backoffDelay
//   router-protocol.js    protocol constants, RouterError, the resume URL, JWT claims
//   client-options.js     DEFAULTS and the checks of the options
//   event-emitter.js      the emitter under RouterConnection
// See README.md beside this file for the API and the reconnect/resume semantics.

import { AgentRun } from './agent-run.js';
import { readClientOptions } from './client-options.js';
import { RouterConnection } from './router-connection.js';
import { RouterError } from './router-protocol.js';

const utf8 = new TextEncoder(); // a message's size as the router counts it: UTF-8 bytes

export { DEFAULTS } from './client-options.js';
export { AgentRun } from './agent-run.js';
export { closePolicy, backoffDelay } from './reconnect-policy.js';
export {
  SUBPROTOCOL, FINAL_RUN_EVENTS, RouterError, isPublishedType, decodeJwtPayload, tokenExpiresAt, buildUrl,
} from './router-protocol.js';

const CLOSED = 3; // WebSocket.readyState

function randomPart() {
  return Math.floor(Math.random() * 0x100000000).toString(36).padStart(7, '0');
}

/**
 * The client. Create it, add listeners, call connect().
 */
export class RouterClient extends RouterConnection {
  constructor(options = {}) {
    super(readClientOptions(options));
    this._idCounter = 0;
    this._idPrefix = randomPart();
  }

  /** The WebSocket of the current connection (for diagnostics), or null. */
  get socket() { return this._ws; }

  /** True between connection_established and the next close. */
  get isOpen() { return this.state === 'open'; }

  /** Starts connecting; resolves with the first `established` info (rejects on a terminal close). */
  connect() {
    if (this._appClosed) return Promise.reject(new RouterError('closed', 'the client was closed'));
    if (this.state === 'open') return Promise.resolve(this._establishedInfo());
    return new Promise((resolve, reject) => {
      this._connectWaiters.push({ resolve, reject });
      if (this.state === 'idle' || this.state === 'closed') {
        this._attempt = 0;
        this._openSocket(null);
      }
    });
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
    this._cycle('reconnect', null);
  }

  /** Ends the client for good: closes the socket (1000), rejects what is pending, no reconnect. */
  close(code = 1000, reason = '') {
    if (this._appClosed) return Promise.resolve();
    this._appClosed = true;
    this._clearTimers();
    const ws = this._ws;
    this._ws = null;
    const closed = new Promise((resolve) => {
      if (!ws || ws.readyState === CLOSED) { resolve(); return; }
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
    this._checkNotClosed();
    const text = typeof message === 'string' ? message : JSON.stringify(message);
    this._checkSize(text);
    return this._sendText(text, null);
  }

  /**
   * Sends {type, id, thread_id?, payload} and resolves with the frame whose reply_to is that id
   * (an `error` frame rejects with a RouterError carrying data.code).
   */
  request(type, payload = {}, options = {}) {
    if (typeof type !== 'string' || !type) return Promise.reject(new TypeError('type must be a non-empty string'));
    if (this._isClosed()) return Promise.reject(new RouterError('closed', 'the client is closed'));
    const id = options.id ?? this._nextId();
    if (this._inFlight.uses(id)) return Promise.reject(new TypeError(`request id ${id} is in use`));
    const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs;
    const text = JSON.stringify(this._message(type, id, options.threadId, payload ?? {}));
    try {
      this._checkSize(text);
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise((resolve, reject) => {
      const entry = this._inFlight.expectReply({ id, type, timeoutMs, resolve, reject });
      this._sendText(text, entry);
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

  /**
   * list_threads -> the thread_list frame: data.threads (most recently updated first), and
   * data.has_more when more follow; page on with options.after = the last thread listed.
   */
  listThreads(options = {}) {
    const payload = {};
    if (options.limit != null) payload.limit = options.limit;
    if (options.after != null) {
      payload.after = { updated_at_ms: options.after.updated_at_ms, thread_id: options.after.thread_id };
    }
    return this.request('list_threads', payload, options);
  }

  /**
   * get_thread_history -> the thread_history frame: data.messages (oldest first), and
   * data.has_more when older ones remain; page back with options.beforeSeq = the first seq.
   */
  getThreadHistory(threadId, options = {}) {
    const payload = {};
    if (options.limit != null) payload.limit = options.limit;
    if (options.beforeSeq != null) payload.before_seq = options.beforeSeq;
    return this.request('get_thread_history', payload, { ...options, threadId });
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

  // ---- messages and runs -------------------------------------------------------------------

  _isClosed() { return this._appClosed || this.state === 'closed'; }

  _checkNotClosed() {
    if (this._isClosed()) throw new RouterError('closed', 'the client is closed');
  }

  _nextId() {
    return `${this._idPrefix}-${(++this._idCounter).toString(36)}-${randomPart()}`;
  }

  _message(type, id, threadId, payload) {
    const message = { type, id };
    if (threadId != null) message.thread_id = threadId;
    message.payload = payload;
    return message;
  }

  // A message over the router's limit (limits.max_message_bytes of connection_established)
  // would close the connection with 1009, failing everything else in flight: refused here.
  _checkSize(text) {
    const limit = this.limits?.max_message_bytes;
    if (typeof limit !== 'number') return; // not connected yet: the router's 1009 decides
    const size = utf8.encode(text).length;
    if (size > limit) {
      throw new RouterError('message_too_big', `the message is ${size} bytes; the router takes at most ${limit}`);
    }
  }

  _startRun(type, payload, agent, options) {
    this._checkNotClosed();
    const id = options.id ?? this._nextId();
    const text = JSON.stringify(this._message(type, id, options.threadId, payload));
    this._checkSize(text);
    const run = new AgentRun(this, id, agent, options.threadId);
    if (typeof options.onEvent === 'function') run.onEvent(options.onEvent);
    const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs;
    const starting = this._inFlight.expectRunStart(run, type, timeoutMs);
    this._sendText(text, starting);
    return run;
  }
}

export default RouterClient;
