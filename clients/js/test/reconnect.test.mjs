// Reconnect policy against the real router: a server restart, terminal close codes (4503, 4511,
// 1009, 1007, 1002), 4029, 401.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRouter, makeClient, record, waitFor, sleep, httpPost, healthz, nextEvent, mintToken, TIMEOUT } from './helpers.mjs';
import { RouterError } from '../router-client.js';

const routers = [];
const clients = [];
async function router(opts) { const r = await startRouter(opts); routers.push(r); return r; }
function client(url, opts) { const c = makeClient(url, opts); clients.push(c); return c; }

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(routers.map((r) => r.stop()));
});

test('server restart (killed, another router on the same port): the client reconnects by itself, recovered:false, gap reported', TIMEOUT, async () => {
  const r1 = await router();
  const c = client(r1.url);
  const log = record(c);
  const first = await c.connect();
  for (let i = 0; i < 5; i++) await c.ping();
  assert.equal(c.lastEventId, 5);
  const port = r1.port;
  await r1.kill(); // SIGKILL: no close frame, connection refused until the new one listens
  const close = await nextEvent(c, 'close');
  assert.equal(close.code, 1006);
  assert.equal(close.terminal, false);
  assert.equal(close.willReconnect, true);
  // Let a few reconnect attempts fail against the closed port.
  await waitFor(() => log.of('reconnecting').length >= 3, { what: 'three reconnect attempts' });
  const r2 = await router({ port });
  assert.equal(r2.port, port);
  const est = await nextEvent(c, 'established', { timeoutMs: 5000 });
  assert.equal(est.recovered, false, 'a new router cannot know the session');
  assert.equal(est.resumed, true, 'the client did try to resume');
  assert.notEqual(est.sessionId, first.sessionId);
  const gaps = log.of('gap');
  assert.equal(gaps.length, 1, 'the application was told events may have been lost');
  assert.equal(gaps[0].previousSessionId, first.sessionId);
  assert.equal(gaps[0].sessionId, est.sessionId);
  assert.equal(gaps[0].lastEventId, 5);
  // Event ids restart in the new session: its first frame (id 1) must not be taken for a duplicate.
  const pong = await c.request('ping', {}, { timeoutMs: 2000 });
  assert.equal(pong.event_id, 1);
  assert.equal(c.lastEventId, 1);
  assert.equal(c.duplicatesDropped, 0);
  // Attempts grew and their delays followed the (test) backoff bounds.
  const attempts = log.of('reconnecting');
  attempts.forEach((a, i) => {
    assert.equal(a.attempt, i + 1);
    assert.ok(a.delayMs >= 0 && a.delayMs <= 400, `delay ${a.delayMs} within [0, maxDelayMs]`);
  });
  assert.equal(c.state, 'open');
});

test('server shutdown with 1001 (SIGTERM drain): the client reconnects to the next router', TIMEOUT, async () => {
  const r1 = await router();
  const c = client(r1.url, { user: 'erin' });
  const log = record(c);
  await c.connect();
  const port = r1.port;
  await r1.stop();
  const close = log.of('close')[0] ?? await nextEvent(c, 'close');
  assert.equal(close.code, 1001);
  assert.equal(close.terminal, false);
  const r2 = await router({ port });
  const est = await nextEvent(c, 'established', { timeoutMs: 5000 });
  assert.equal(est.recovered, false);
  assert.equal(log.of('gap').length, 1);
  assert.ok(await c.ping() >= 0);
  assert.ok(r2.pid);
});

test('4503 (too many connections for the user) is terminal: no reconnect', TIMEOUT, async () => {
  const r = await router({ args: ['--router.max-connections-per-user=1'] });
  const a = client(r.url, { user: 'frank' });
  await a.connect();
  const b = client(r.url, { user: 'frank' });
  const log = record(b);
  await assert.rejects(b.connect(), (e) => e instanceof RouterError && e.code === 'closed' && e.closeCode === 4503);
  assert.equal(b.state, 'closed');
  assert.equal(b.lastClose.code, 4503);
  assert.equal(b.lastClose.terminal, true);
  assert.equal(b.lastClose.terminalReason, 'too_many_connections');
  const closed = log.of('closed');
  assert.equal(closed.length, 1);
  assert.equal(closed[0].terminalReason, 'too_many_connections');
  await sleep(800); // twice the test's maxDelayMs
  assert.equal(log.of('connecting').length, 1, 'exactly one connection attempt');
  assert.equal(log.of('reconnecting').length, 0);
  await assert.rejects(b.request('ping'), (e) => e.code === 'closed');
  assert.ok(await a.ping() >= 0, 'the first connection is unaffected');
});

test('4511 (disconnect API) is terminal: no reconnect, pending runs fail', TIMEOUT, async () => {
  const r = await router({ args: ['--agents.test-agents=1'] });
  const c = client(r.url, { user: 'grace' });
  const log = record(c);
  await c.connect();
  const run = c.startAgent('test-hang', null);
  await run.started;
  const res = await httpPost(r.base, '/api/v1/users/grace/disconnect');
  assert.equal(res.status, 200);
  assert.equal(res.json.disconnected, 1);
  const closed = await nextEvent(c, 'closed');
  assert.equal(closed.code, 4511);
  assert.equal(closed.terminalReason, 'disconnected_by_backend');
  await assert.rejects(run.done, (e) => e.code === 'closed' && e.closeCode === 4511);
  await sleep(800);
  assert.equal(log.of('connecting').length, 1, 'only the first connection attempt');
  assert.equal(log.of('reconnecting').length, 0);
  assert.equal((await healthz(r.base)).connections, 0);
  // The application may decide to connect again: that is a new session.
  const again = await c.connect();
  assert.equal(again.recovered, false);
});

test('1009 (message too big) is terminal', TIMEOUT, async () => {
  const r = await router({ args: ['--router.max-message-bytes=256'] });
  const c = client(r.url, { user: 'heidi' });
  const log = record(c);
  await c.connect();
  // Past the client's own check (it refuses such a message): straight on the socket.
  c.socket.send(JSON.stringify({ type: 'ping', id: 'big', payload: { pad: 'x'.repeat(1000) } }));
  const closed = await nextEvent(c, 'closed');
  assert.equal(closed.code, 1009);
  assert.equal(closed.terminalReason, 'message_too_big');
  await sleep(800);
  assert.equal(log.of('connecting').length, 1, 'only the first connection attempt');
  assert.equal(log.of('reconnecting').length, 0);
  assert.equal(c.state, 'closed');
});

test('1007 (a text frame that is not UTF-8) is terminal', TIMEOUT, async () => {
  const r = await router();
  const c = client(r.url, { user: 'heidi' });
  const log = record(c);
  await c.connect();
  c.socket.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false }); // `ws` sends the bytes as they are
  const closed = await nextEvent(c, 'closed');
  assert.equal(closed.code, 1007);
  assert.equal(closed.terminalReason, 'invalid_payload');
  await sleep(800);
  assert.equal(log.of('connecting').length, 1, 'only the first connection attempt');
  assert.equal(log.of('reconnecting').length, 0);
});

test('1002 (a frame breaking RFC 6455: unmasked) is terminal', TIMEOUT, async () => {
  const r = await router();
  const c = client(r.url, { user: 'heidi' });
  const log = record(c);
  await c.connect();
  c.socket._socket.write(Buffer.from([0x81, 0x02, 0x68, 0x69])); // a client's frame must be masked
  const closed = await nextEvent(c, 'closed');
  assert.equal(closed.code, 1002);
  assert.equal(closed.terminalReason, 'protocol_error');
  await sleep(800);
  assert.equal(log.of('connecting').length, 1, 'only the first connection attempt');
  assert.equal(log.of('reconnecting').length, 0);
});

test('4029 (rate limited) reconnects, but only after a long backoff', TIMEOUT, async () => {
  const r = await router({ args: ['--router.messages-per-second=1', '--router.messages-burst=3'] });
  const c = client(r.url, { user: 'ivan', initialDelayMs: 50, maxDelayMs: 1000 });
  const log = record(c);
  await c.connect();
  for (let i = 0; i < 10; i++) c.send({ type: 'ping', id: `flood-${i}` });
  const close = await nextEvent(c, 'close');
  assert.equal(close.code, 4029);
  assert.equal(close.terminal, false);
  const rec = log.of('reconnecting')[0];
  assert.ok(rec.delayMs >= 500 && rec.delayMs <= 1000, `4029 backoff ${rec.delayMs} in [max/2, max], not the initial 50 ms`);
  const t0 = Date.now();
  const est = await nextEvent(c, 'established', { timeoutMs: 3000 });
  assert.ok(Date.now() - t0 >= rec.delayMs - 20);
  assert.equal(est.recovered, false);
  const limited = log.of('event').filter((f) => f.type === 'error' && f.data.code === 'rate_limited');
  assert.ok(limited.length >= 1, 'the router answered rate_limited before closing');
});

test('an invalid token (HTTP 401) is retried with backoff, calling getToken each time', TIMEOUT, async () => {
  const r = await router();
  let calls = 0;
  const c = client(r.url, { token: () => (++calls < 3 ? mintToken('judy', { expIn: -3600 }) : mintToken('judy')) });
  const log = record(c);
  const est = await c.connect();
  assert.equal(calls, 3);
  assert.equal(est.userId, 'judy');
  assert.deepEqual(log.of('close').map((e) => e.code), [1006, 1006]);
  assert.ok(log.of('error').some((e) => /401/.test(e.message)), 'the 401 surfaced as an error event');
});
