// request(), ping() and the thread wrappers against the real router.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRouter, makeClient, record, sleep, mintToken, TIMEOUT } from './helpers.mjs';
import { RouterError } from '../router-client.js';

let router;
const clients = [];
function client(opts) { const c = makeClient(router.url, opts); clients.push(c); return c; }

before(async () => { router = await startRouter({ args: ['--agents.demo-step-delay-ms=20'] }); });
after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await router.stop();
});

test('connect: subprotocol auth, established info, state changes', TIMEOUT, async () => {
  let tokenCalls = 0;
  const c = client({ token: () => { tokenCalls++; return mintToken('alice'); } });
  const log = record(c);
  const info = await c.connect();
  assert.equal(tokenCalls, 1);
  assert.equal(info.recovered, false);
  assert.equal(info.resumed, false);
  assert.match(info.sessionId, /^s-[0-9a-f]{32}$/);
  assert.match(info.connectionId, /^c-[0-9a-f]{32}$/);
  assert.equal(info.userId, 'alice');
  assert.equal(typeof info.limits.max_message_bytes, 'number');
  assert.equal(c.state, 'open');
  assert.equal(c.socket.protocol, 'router.v1');
  assert.deepEqual(log.states(), ['connecting', 'open']);
  const ev = log.of('event');
  assert.equal(ev.length, 1);
  assert.equal(ev[0].type, 'connection_established');
  assert.equal(ev[0].event_id, 0);
  const again = await c.connect();
  assert.equal(again.sessionId, info.sessionId, 'connect() when open resolves at once');
  assert.equal(again.resumed, false, 'and says what this connection asked for (it said true)');
});

test('a message over limits.max_message_bytes is refused by the client; the connection goes on', TIMEOUT, async () => {
  const c = client();
  const info = await c.connect();
  const limit = info.limits.max_message_bytes;
  const big = 'é'.repeat(Math.ceil(limit / 2)); // over the limit in UTF-8 bytes, not in characters
  const log = record(c);
  await assert.rejects(c.createThread(big), (e) => e instanceof RouterError && e.code === 'message_too_big');
  assert.throws(() => c.send({ type: 'create_thread', id: 'x', payload: { title: big } }),
    (e) => e instanceof RouterError && e.code === 'message_too_big');
  assert.throws(() => c.startAgent('echo', big), (e) => e instanceof RouterError && e.code === 'message_too_big');
  // Before, the router closed the connection with 1009, a terminal close for the whole client.
  assert.equal(c.state, 'open');
  assert.ok((await c.ping()) >= 0);
  assert.deepEqual(log.of('close'), []);
});

test('request() resolves each reply by reply_to, also when replies come out of order', TIMEOUT, async () => {
  const c = client();
  await c.connect();
  const created = await c.createThread('first');
  // Spy on what leaves the socket to learn the generated ids.
  const sent = [];
  const ws = c.socket;
  const origSend = ws.send.bind(ws);
  ws.send = (text, ...rest) => { sent.push(JSON.parse(text)); return origSend(text, ...rest); };
  assert.equal(created.type, 'thread_created');
  assert.match(created.thread_id, /^t-/);
  // Fire several requests at once: the thread store answers list/history on its own actor,
  // so these replies can arrive after the pongs sent later.
  const [list, p1, history, p2, bad, missing] = await Promise.allSettled([
    c.listThreads({ limit: 10 }),
    c.request('ping'),
    c.getThreadHistory(created.thread_id),
    c.request('ping', {}, { id: 'my-own-id' }),
    c.request('no_such_type'),
    c.getThreadHistory('t-00000000000000000000000000000000'),
  ]);
  assert.equal(list.status, 'fulfilled');
  assert.equal(list.value.type, 'thread_list');
  assert.deepEqual(list.value.data.threads.map((t) => t.thread_id), [created.thread_id]);
  assert.equal(p1.value.type, 'pong');
  assert.equal(history.value.type, 'thread_history');
  assert.equal(history.value.thread_id, created.thread_id);
  assert.deepEqual(history.value.data.messages, []);
  assert.equal(p2.value.type, 'pong');
  assert.equal(p2.value.reply_to, 'my-own-id');
  assert.equal(bad.status, 'rejected');
  assert.ok(bad.reason instanceof RouterError);
  assert.equal(bad.reason.code, 'unknown_type');
  assert.equal(bad.reason.frame.type, 'error');
  assert.equal(missing.status, 'rejected');
  assert.equal(missing.reason.code, 'not_found');
  // Each settled value is the frame answering exactly its own request id.
  assert.deepEqual(sent.map((m) => m.type),
    ['list_threads', 'ping', 'get_thread_history', 'ping', 'no_such_type', 'get_thread_history']);
  assert.equal(new Set(sent.map((m) => m.id)).size, 6, 'six distinct generated ids');
  assert.equal(sent[2].thread_id, created.thread_id, 'thread_id travels in the envelope');
  assert.deepEqual(sent[0].payload, { limit: 10 });
  const results = [list.value, p1.value, history.value, p2.value, bad.reason.frame, missing.reason.frame];
  results.forEach((frame, i) => assert.equal(frame.reply_to, sent[i].id, `reply ${i} answers request ${i}`));
});

test('ping() measures a round trip; ids are unique', TIMEOUT, async () => {
  const c = client();
  await c.connect();
  const log = record(c);
  const rtts = await Promise.all(Array.from({ length: 20 }, () => c.ping()));
  for (const rtt of rtts) assert.ok(rtt >= 0 && rtt < 5000);
  const pongs = log.of('event').filter((f) => f.type === 'pong');
  assert.equal(pongs.length, 20);
  assert.equal(new Set(pongs.map((f) => f.reply_to)).size, 20);
});

test('request() times out when no reply comes (router stopped with SIGSTOP); a late reply is ignored', TIMEOUT, async () => {
  const c = client();
  await c.connect();
  const log = record(c);
  await router.pause();
  let err;
  const t0 = Date.now();
  try {
    await c.request('ping', {}, { timeoutMs: 300, id: 'late-ping' });
  } catch (e) { err = e; }
  const elapsed = Date.now() - t0;
  router.resume();
  assert.ok(err instanceof RouterError, 'rejected with a RouterError');
  assert.equal(err.code, 'timeout');
  assert.ok(elapsed >= 290 && elapsed < 3000, `timed out after ${elapsed} ms`);
  // The router answers the ping once it runs again: that reply reaches 'event' but no request.
  const next = await c.ping();
  assert.ok(next >= 0);
  const late = log.of('event').filter((f) => f.reply_to === 'late-ping');
  assert.equal(late.length, 1, 'the late pong arrived and was delivered as an event');
  assert.equal(c.state, 'open');
});

test('requests made before connect() are queued and sent once established', TIMEOUT, async () => {
  const c = client();
  const p = c.request('ping');
  const t = c.createThread('queued');
  assert.equal(c.state, 'idle');
  await c.connect();
  assert.equal((await p).type, 'pong');
  assert.equal((await t).data.title, 'queued');
});

test('userMessage() runs the default agent on a new thread and stores the message', TIMEOUT, async () => {
  const c = client();
  await c.connect();
  const run = c.userMessage('hello agent');
  const final = await run.done;
  assert.equal(final.type, 'agent_completed');
  assert.match(run.threadId, /^t-/);
  assert.equal(run.agent, 'demo');
  const history = await c.getThreadHistory(run.threadId);
  assert.deepEqual(history.data.messages.map((m) => m.role), ['user', 'agent']);
  assert.deepEqual(history.data.messages[0].content, { text: 'hello agent' });
  assert.equal(history.data.has_more, false);
  const newest = await c.getThreadHistory(run.threadId, { limit: 1 });
  assert.deepEqual(newest.data.messages.map((m) => m.seq), [2]);
  assert.equal(newest.data.has_more, true);
  const older = await c.getThreadHistory(run.threadId, { beforeSeq: 2 });
  assert.deepEqual(older.data.messages.map((m) => m.role), ['user']);
  assert.equal(older.data.has_more, false);
  // The thread list pages on in the same way, after the last thread listed.
  await c.createThread('second');
  // The whole list says which comes first (threads updated in one millisecond go by id).
  const all = (await c.listThreads({ limit: 1000 })).data.threads.map((t) => t.thread_id);
  const firstPage = await c.listThreads({ limit: 1 });
  assert.deepEqual(firstPage.data.threads.map((t) => t.thread_id), all.slice(0, 1));
  assert.equal(firstPage.data.has_more, true);
  const nextPage = await c.listThreads({ limit: 1, after: firstPage.data.threads.at(-1) });
  assert.deepEqual(nextPage.data.threads.map((t) => t.thread_id), all.slice(1, 2));
  assert.equal(nextPage.data.has_more, all.length > 2); // the user's other tests' threads may follow
});

test('close() ends the client for good: pending requests reject, nothing reconnects', TIMEOUT, async () => {
  const c = client();
  await c.connect();
  const log = record(c);
  await router.pause();
  const pending = c.request('ping', {}, { timeoutMs: 5000 }).then(() => null, (e) => e);
  await sleep(20);
  const closing = c.close();
  router.resume();
  await closing;
  const err = await pending;
  assert.ok(err instanceof RouterError && err.code === 'closed', 'the pending request was rejected with closed');
  assert.equal(c.state, 'closed');
  assert.deepEqual(log.of('closed').map((e) => [e.terminal, e.terminalReason]), [[true, 'client_closed']]);
  await assert.rejects(c.request('ping'), (e) => e.code === 'closed');
  await assert.rejects(c.connect(), (e) => e.code === 'closed');
  await sleep(300);
  assert.equal(log.of('connecting').length, 0, 'no reconnect after close()');
});
