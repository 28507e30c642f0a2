// agent-run.js: one agent run (started by startAgent() or userMessage()): an async iterable
// over its events in order, ending after its final event.

import { FINAL_RUN_EVENTS, RouterError } from './router-protocol.js';

function defer() {
  let resolve, reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

const STATUS_OF_FINAL = { agent_completed: 'completed', agent_error: 'error', agent_stopped: 'stopped' };

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
    // What the iteration yields next, once an event, the end or a failure is there.
    const settle = (resolve, reject) => {
      if (index < this.events.length) resolve({ value: this.events[index++], done: false });
      else if (this.error) { ended = true; reject(this.error); }
      else { ended = true; resolve({ value: undefined, done: true }); }
    };
    return {
      next: () => {
        if (ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          if (index < this.events.length || this.finished) settle(resolve, reject);
          else this._waiters.push(() => settle(resolve, reject));
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
      this.status = STATUS_OF_FINAL[frame.type];
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
