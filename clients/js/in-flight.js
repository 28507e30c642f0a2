// in-flight.js: what a client waits for: requests awaiting the frame whose reply_to is their
// id, and agent runs awaiting their events. It matches each inbound frame to its request and
// run, and fails them when their answers can no longer come (a lost session, a terminal close).

import { MAX_TIMER_MS } from './client-options.js';
import { RouterError, errorOfFrame } from './router-protocol.js';

export class InFlight {
  constructor() {
    this._requests = new Map(); // request id -> entry awaiting its reply
    this._starts = new Map(); // request id of a start_agent/user_message -> its run, before agent_started
    this._runsById = new Map(); // run_id -> run
    this._activeRuns = new Set(); // every run that has not finished
  }

  /** True when a request or a run start already uses `id`. */
  uses(id) { return this._requests.has(id) || this._starts.has(id); }

  /**
   * Waits for the reply to request `id`: `resolve` gets the frame, `reject` a RouterError (the
   * router's `error` frame, or code `timeout` after `timeoutMs`).
   * Returns the entry to hand to the send (it records the session it was sent in).
   */
  expectReply({ id, type, timeoutMs, resolve, reject }) {
    const entry = { id, type, resolve, reject, timer: null, sentSession: null, queued: null };
    entry.timer = setTimeout(() => {
      this._requests.delete(id);
      if (entry.queued) entry.queued.cancelled = true;
      reject(new RouterError('timeout', `no reply to ${type} ${id} within ${timeoutMs} ms`));
    }, Math.min(timeoutMs, MAX_TIMER_MS));
    this._requests.set(id, entry);
    return entry;
  }

  /**
   * Waits for the start of `run` (its agent_started, or the `error` that refuses it); the run
   * fails with code `timeout` when neither comes within `timeoutMs`. Returns the entry to hand
   * to the send.
   */
  expectRunStart(run, type, timeoutMs) {
    const id = run.requestId;
    const starting = {
      run,
      timer: null,
      queued: null,
      get sentSession() { return run._sessionId; },
      set sentSession(sessionId) { run._sessionId = sessionId; },
    };
    starting.timer = setTimeout(() => {
      if (this._starts.get(id) !== starting) return;
      this._starts.delete(id);
      if (starting.queued) starting.queued.cancelled = true;
      run._fail(new RouterError('timeout', `no agent_started for ${type} ${id} within ${timeoutMs} ms`));
    }, Math.min(timeoutMs, MAX_TIMER_MS));
    this._starts.set(id, starting);
    this._activeRuns.add(run);
    return starting;
  }

  /** Hands `frame` to the run and the request it answers. */
  route(frame) {
    const run = this._runOf(frame);
    if (run) run._push(frame);
    if (frame.reply_to == null) return;
    const entry = this._requests.get(frame.reply_to);
    if (!entry) return;
    this._requests.delete(frame.reply_to);
    clearTimeout(entry.timer);
    if (frame.type === 'error') entry.reject(errorOfFrame(frame));
    else entry.resolve(frame);
  }

  // The run `frame` belongs to: by run_id, else (the first answer to a start) by reply_to.
  // An `error` answering a start fails that run instead.
  _runOf(frame) {
    const known = typeof frame.run_id === 'string' ? this._runsById.get(frame.run_id) : undefined;
    if (known) return known;
    if (frame.reply_to == null) return null;
    const starting = this._starts.get(frame.reply_to);
    if (!starting) return null;
    this._starts.delete(frame.reply_to);
    clearTimeout(starting.timer);
    if (frame.type === 'error') {
      starting.run._fail(errorOfFrame(frame));
      return null;
    }
    if (typeof frame.run_id === 'string') this._runsById.set(frame.run_id, starting.run);
    return starting.run;
  }

  /**
   * A new session replaced the one the requests and runs were sent in: their answers cannot
   * come any more. They fail with `error` (what is still queued stays, for the new session).
   * Returns the runs that failed.
   */
  failSent(error) {
    for (const [id, entry] of this._requests) {
      if (entry.sentSession === null) continue;
      this._requests.delete(id);
      clearTimeout(entry.timer);
      entry.reject(error);
    }
    const lost = Array.from(this._activeRuns).filter((run) => run._sessionId !== null);
    for (const run of lost) run._fail(error);
    return lost;
  }

  /** The client stopped for good: every request and run fails with `error`. */
  failAll(error) {
    for (const [, entry] of this._requests) { clearTimeout(entry.timer); entry.reject(error); }
    this._requests.clear();
    for (const run of Array.from(this._activeRuns)) run._fail(error);
    for (const [, starting] of this._starts) clearTimeout(starting.timer);
    this._starts.clear();
  }

  /** Forgets a run that ended (its final event, or a failure). */
  runFinished(run) {
    this._activeRuns.delete(run);
    if (run.runId) this._runsById.delete(run.runId);
    const starting = this._starts.get(run.requestId);
    if (starting && starting.run === run) { clearTimeout(starting.timer); this._starts.delete(run.requestId); }
  }
}
