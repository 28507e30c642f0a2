// Token expiry: the router's 4501, getToken() on every (re)connect, the proactive refresh.
//
// What the router does: the upgrade accepts a token up to router.jwt-leeway-s (30 s) past its
// exp, and a connection stays open until exp plus that leeway, then closes with 4501. A token
// further past exp is refused at the upgrade (401 token_expired). A session closed with 4501
// waits for a resume like a dropped one: the reconnect with a fresh token resumes it
// (recovered: true) and a run going on loses nothing. A browser WebSocket therefore waits for
// the 4501 (its close frame would end the session); only a WebSocket that can drop silently
// (`ws`'s terminate()) moves to a fresh token ahead of exp. The 4501 tests start routers with
// the leeway they need.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRouter, makeClient, record, waitFor, nextEvent, mintToken, WebSocket, TIMEOUT } from './helpers.mjs';
import { tokenExpiresAt } from '../router-client.js';

const AGENT_ARGS = ['--agents.demo-step-delay-ms=150', '--agents.demo-steps=12', '--agents.test-agents=1'];

let router;
const routers = [];
const clients = [];
function client(opts, on = router) { const c = makeClient(on.url, opts); clients.push(c); return c; }
async function routerWithLeeway(seconds) {
  const r = await startRouter({ args: [...AGENT_ARGS, `--router.jwt-leeway-s=${seconds}`] });
  routers.push(r);
  return r;
}

/** The 12-step demo run ended whole (16 events, 12 of them thinking) and every event of the
 * connection reached the application once, in order. Answers the run's final event. */
async function assertWholeRun(run, log) {
  const final = await run.done;
  assert.equal(final.type, 'agent_completed');
  const types = run.events.map((e) => e.type);
  assert.equal(types.length, 16); // started, 12 thinking, tool_executing, tool_completed, completed
  assert.equal(types[0], 'agent_started');
  assert.equal(types.filter((t) => t === 'agent_thinking').length, 12);
  const ids = log.of('event').filter((f) => f.type !== 'connection_established').map((f) => f.event_id);
  ids.forEach((id, i) => assert.equal(id, i + 1, 'every event once, in order'));
  return final;
}

before(async () => {
  router = await startRouter({ args: AGENT_ARGS });
  routers.push(router);
});
after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(routers.map((r) => r.stop()));
});

test('4501: a token past exp but inside the leeway is accepted, closed when the leeway is over, and the client resumes with a fresh token', TIMEOUT, async () => {
  const leewayS = 3;
  const lenient = await routerWithLeeway(leewayS);
  const issued = [];
  const c = client({
    user: 'kate',
    refreshBeforeExpiryMs: 0,
    token: () => {
      const t = mintToken('kate', { expIn: issued.length === 0 ? -1 : 3600 });
      issued.push(t);
      return t;
    },
  }, lenient);
  const log = record(c);
  const first = await c.connect(); // the upgrade accepts it: exp is within the leeway
  assert.equal(first.userId, 'kate');
  await waitFor(() => log.of('close').length >= 1, { timeoutMs: (leewayS + 1) * 1000, what: 'the 4501' });
  const close = log.of('close')[0];
  const closedAt = log.entries.find((e) => e.type === 'close').at;
  const deadline = tokenExpiresAt(issued[0]) + leewayS * 1000;
  assert.equal(close.code, 4501);
  assert.ok(closedAt >= deadline - 200, `closed at exp plus the leeway, not before (${closedAt - deadline} ms)`);
  assert.equal(close.terminal, false);
  assert.equal(close.willReconnect, true);
  assert.deepEqual(log.of('tokenRefresh').map((e) => e.reason), ['expired']);
  // From the log: the reconnect may be established before the close was polled.
  await waitFor(() => log.of('established').length >= 2, { what: 'the resume' });
  const second = log.of('established')[1];
  assert.equal(issued.length, 2, 'getToken() called again after 4501');
  assert.equal(second.resumed, true);
  assert.equal(second.recovered, true, 'a session closed with 4501 is resumable');
  assert.equal(second.sessionId, first.sessionId);
  assert.equal(log.of('gap').length, 0);
  assert.ok(await c.ping() >= 0);
  // The second connection used the fresh token: it stays open.
  assert.equal(c.state, 'open');
  assert.equal(log.of('close').length, 1);
});

test('4501 at exp (no leeway) while a run goes on: getToken() is called again, the session is resumed, the run loses nothing', TIMEOUT, async () => {
  const strict = await routerWithLeeway(0);
  const issued = [];
  const c = client({
    user: 'leo',
    refreshBeforeExpiryMs: 0, // no proactive refresh: let the router close with 4501
    token: () => {
      const t = mintToken('leo', { expIn: issued.length === 0 ? 2 : 3600 });
      issued.push(t);
      return t;
    },
  }, strict);
  const log = record(c);
  const first = await c.connect();
  assert.equal(issued.length, 1);
  const run = c.startAgent('demo', 'across the expiry'); // 16 events, 150 ms apart: ~2.2 s
  const close = await nextEvent(c, 'close', { timeoutMs: 5000 });
  const closedAt = Date.now();
  const expMs = tokenExpiresAt(issued[0]);
  assert.equal(close.code, 4501);
  assert.ok(closedAt >= expMs - 100 && closedAt < expMs + 1500, `closed at exp (${closedAt - expMs} ms)`);
  assert.ok(!run.finished, 'the run was under way at the expiry');
  const est = await nextEvent(c, 'established');
  assert.equal(issued.length, 2, 'getToken() called again after 4501');
  assert.equal(est.recovered, true);
  assert.equal(est.sessionId, first.sessionId);
  assert.equal(log.of('gap').length, 0);
  await assertWholeRun(run, log);
  assert.ok(await c.ping() >= 0);
});

test('proactive refresh before exp: the ws package drops the socket silently and resumes, a running agent loses nothing', TIMEOUT, async () => {
  const issued = [];
  const c = client({
    user: 'mia',
    // A 3 s token: shorter than refreshBeforeExpiryMs, so the refresh comes at half its life.
    token: () => {
      const t = mintToken('mia', { expIn: issued.length === 0 ? 3 : 3600 });
      issued.push(t);
      return t;
    },
  });
  const log = record(c);
  const first = await c.connect();
  const run = c.startAgent('demo', 'long'); // 16 events, 150 ms apart: ~2.2 s, across the refresh
  const est = await nextEvent(c, 'established', { timeoutMs: 4000 });
  const final = await assertWholeRun(run, log);
  assert.equal(issued.length, 2, 'getToken() was asked for a new token before exp');
  assert.deepEqual(log.of('tokenRefresh').map((e) => e.reason), ['expiring']);
  assert.equal(est.recovered, true, 'the session was resumed');
  assert.equal(est.sessionId, first.sessionId);
  assert.ok(!log.of('close').some((e) => e.code === 4501), 'no 4501: the refresh came first');
  assert.equal(log.of('gap').length, 0);
  // The refresh happened while the run was under way.
  const refreshAt = log.entries.find((e) => e.type === 'tokenRefresh').at;
  const startedAt = Date.parse(run.events[0].timestamp);
  const finishedAt = Date.parse(final.timestamp);
  assert.ok(refreshAt > startedAt && refreshAt < finishedAt, 'refresh during the run');
  // The new token is valid for an hour: no further refresh soon.
  await waitFor(() => c.state === 'open');
  assert.equal(issued.length, 2);
});

test('a browser WebSocket (no terminate()) is never closed for a refresh: the router closes with 4501 during a run, the client resumes at once with a fresh token, the run loses nothing', TIMEOUT, async () => {
  const strict = await routerWithLeeway(0);
  // A browser-like WebSocket: no terminate(), so the client could only close with a close
  // frame, which would end the session. It records every close() call: `ws` itself answers
  // the router's close frame through close() with the router's code, so a 4501 is expected.
  const closesAsked = [];
  class BrowserLikeWebSocket extends WebSocket {
    close(code, reason) { closesAsked.push(code); super.close(code, reason); }
  }
  BrowserLikeWebSocket.prototype.terminate = undefined;
  const issued = [];
  const c = client({
    user: 'noah',
    WebSocket: BrowserLikeWebSocket,
    // refreshBeforeExpiryMs keeps its default (30 s, more than the token lives): without
    // terminate() it must change nothing.
    stableConnectionMs: 500, // the first connection lives 1-2 s: long enough to count as stable
    token: () => {
      const t = mintToken('noah', { expIn: issued.length === 0 ? 2 : 3600 });
      issued.push(t);
      return t;
    },
  }, strict);
  const log = record(c);
  const first = await c.connect();
  const run = c.startAgent('demo', 'across the expiry'); // 16 events, 150 ms apart: ~2.2 s
  const close = await nextEvent(c, 'close', { timeoutMs: 5000 });
  assert.equal(close.code, 4501, 'the router closed the connection, not the client');
  assert.equal(close.initiatedByClient, false);
  assert.equal(close.willReconnect, true);
  assert.deepEqual(closesAsked, [4501], 'the client closed nothing itself');
  assert.ok(!run.finished, 'the run was under way at the expiry');
  const est = await nextEvent(c, 'established');
  assert.equal(issued.length, 2, 'getToken() called again after 4501');
  assert.equal(log.of('reconnecting')[0].delayMs, 0, 'reconnected at once');
  assert.deepEqual(log.of('tokenRefresh').map((e) => e.reason), ['expired'], 'no refresh ahead of exp');
  assert.equal(est.resumed, true);
  assert.equal(est.recovered, true, 'a session closed with 4501 is resumable');
  assert.equal(est.sessionId, first.sessionId);
  await assertWholeRun(run, log);
  assert.equal(c.duplicatesDropped, 0);
  assert.equal(log.of('gap').length, 0);
  // The second connection uses the hour-long token: it stays.
  assert.ok(await c.ping() >= 0);
  assert.equal(log.of('close').length, 1);
  assert.deepEqual(closesAsked, [4501]);
});
