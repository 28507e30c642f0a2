// Resume after a dropped TCP connection (no close frame): the router keeps the session for the
// resume window, the client reconnects with ?resume=&last_event_id= and nothing is lost or doubled.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRouter, makeClient, record, waitFor, httpPost, nextEvent, mintToken, sleep, WebSocket, TIMEOUT } from './helpers.mjs';

let router;
const clients = [];
function client(opts) { const c = makeClient(router.url, opts); clients.push(c); return c; }

const DEMO = ['agent_started', 'agent_thinking', 'agent_thinking', 'agent_thinking', 'agent_thinking',
  'agent_thinking', 'tool_executing', 'tool_completed', 'agent_completed'];

before(async () => {
  router = await startRouter({ args: ['--agents.demo-step-delay-ms=100', '--agents.demo-steps=5'] });
});
after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await router.stop();
});

/** Checks a session's delivered frames: consecutive ids from 1, no id twice. */
function assertExactlyOnce(frames) {
  const ids = frames.map((f) => f.event_id);
  assert.equal(new Set(ids).size, ids.length, `no event id twice: ${ids}`);
  ids.forEach((id, i) => assert.equal(id, i + 1, `event ids consecutive from 1: ${ids}`));
}

test('a dropped connection in the middle of a demo run resumes: recovered, complete, in order, once', TIMEOUT, async () => {
  // random() = 1: the reconnect waits its whole 300 ms, so the run goes on while we are away.
  const c = client({ initialDelayMs: 300, maxDelayMs: 300, random: () => 1 });
  const log = record(c);
  const first = await c.connect();
  const urls = [];
  const run = c.startAgent('demo', 'resume-me');
  const types = [];
  const iterating = (async () => { for await (const ev of run) types.push(ev.type); })();
  // Wait until the run is under way, then cut the TCP connection without a close frame.
  await waitFor(() => run.events.length >= 3, { what: 'three run events' });
  const deliveredBeforeDrop = c.lastEventId;
  const oldSocket = c.socket;
  oldSocket._socket.destroy();
  // The router keeps producing while we are away (the backoff is at least a few ms).
  const est = await nextEvent(c, 'established', { timeoutMs: 5000 });
  urls.push(c.socket.url);
  await iterating;
  await run.done;

  assert.notEqual(c.socket, oldSocket);
  assert.equal(est.recovered, true, 'the server reports recovered: true');
  assert.equal(est.resumed, true);
  assert.equal(est.sessionId, first.sessionId, 'same session');
  assert.equal(c.recovered, true);
  const u = new URL(urls[0]);
  assert.ok(u.searchParams.get('resume').startsWith('rt-'), 'resume token in the URL');
  assert.equal(u.searchParams.get('last_event_id'), String(deliveredBeforeDrop), 'last processed event id in the URL');
  assert.equal(log.of('gap').length, 0, 'no gap reported');
  assert.deepEqual(types, DEMO, 'the iterator saw the whole run in order');
  const runFrames = log.of('event').filter((f) => f.run_id === run.runId);
  assert.deepEqual(runFrames.map((f) => f.type), DEMO, 'each run event reached the application exactly once');
  assertExactlyOnce(log.of('event').filter((f) => f.type !== 'connection_established'));
  // Frames the router produced while we were away were replayed (they carry older timestamps).
  const events = log.of('event');
  const second = events.findLastIndex((f) => f.type === 'connection_established');
  const replayed = events.slice(second + 1).filter((f) => Date.parse(f.timestamp) < Date.parse(events[second].timestamp));
  assert.ok(replayed.length >= 1, 'some run events were replayed after the resume');
  const closes = log.of('close');
  assert.equal(closes.length, 1);
  assert.equal(closes[0].code, 1006);
  assert.equal(closes[0].terminal, false);
  assert.deepEqual(log.states(), ['connecting', 'open', 'reconnecting', 'connecting', 'open']);
  assert.equal(c.duplicatesDropped, 0);
});

test('publishes made while the connection is down are replayed after the resume, once', TIMEOUT, async () => {
  // random() = 1: the backoff takes its whole (1 s) range, time enough to publish meanwhile.
  const c = client({ user: 'carol', initialDelayMs: 1000, maxDelayMs: 1000, random: () => 1 });
  const log = record(c);
  await c.connect();
  await c.ping();
  c.socket._socket.destroy();
  const reconnecting = await nextEvent(c, 'reconnecting');
  assert.equal(reconnecting.delayMs, 1000);
  // Publish while detached: the session's manager buffers them for the resume.
  await waitFor(async () => (await fetch(`${router.base}/healthz`).then((r) => r.json())).detached >= 1, { what: 'detached session' });
  for (let i = 1; i <= 3; i++) {
    const r = await httpPost(router.base, '/api/v1/publish', { user_id: 'carol', event: { type: 'note', data: { i } } });
    assert.equal(r.status, 202);
  }
  const est = await nextEvent(c, 'established', { timeoutMs: 5000 });
  assert.equal(est.recovered, true);
  await waitFor(() => log.of('publish').length >= 3, { what: 'three publishes' });
  await c.ping(); // anything replayed twice would have arrived before this pong
  assert.deepEqual(log.of('publish').map((f) => f.data.i), [1, 2, 3]);
  assertExactlyOnce(log.of('event').filter((f) => f.type !== 'connection_established'));
});

test('reconnect() with the ws package drops the socket silently and resumes the session', TIMEOUT, async () => {
  const c = client({ user: 'dave' });
  const log = record(c);
  const first = await c.connect();
  const run = c.startAgent('demo', 'r');
  await waitFor(() => run.events.length >= 2, { what: 'two run events' });
  c.reconnect();
  const est = await nextEvent(c, 'established');
  await run.done;
  assert.equal(est.recovered, true);
  assert.equal(est.sessionId, first.sessionId);
  assert.deepEqual(run.events.map((e) => e.type), DEMO);
  assert.equal(log.of('close')[0].initiatedByClient, true);
  assertExactlyOnce(log.of('event').filter((f) => f.type !== 'connection_established'));
});

test('a resume from another connection takes the session over: the old client gets 4512, its run fails, and it does not reconnect', TIMEOUT, async () => {
  const c = client({ user: 'erin' });
  const log = record(c);
  const first = await c.connect();
  await c.ping();
  const run = c.startAgent('demo', 'moves away');
  await waitFor(() => run.events.length >= 2, { what: 'two run events' });
  // Another connection of the same user resumes the session while this socket is open (as
  // after a network switch the router has not noticed yet).
  const resumeToken = log.of('event').find((f) => f.type === 'connection_established').data.resume_token;
  const url = `${router.url}?resume=${encodeURIComponent(resumeToken)}&last_event_id=${c.lastEventId}`;
  const other = new WebSocket(url, ['router.v1', `jwt.${mintToken('erin')}`]);
  const taken = [];
  other.on('message', (m) => taken.push(JSON.parse(m)));
  try {
    const closed = await nextEvent(c, 'closed');
    assert.equal(closed.code, 4512);
    assert.equal(closed.reason, 'session resumed on another connection');
    assert.equal(closed.terminalReason, 'session_moved');
    await assert.rejects(run.done, (e) => e.code === 'closed' && e.closeCode === 4512);
    await waitFor(() => taken.length >= 1, { what: 'the other connection\'s connection_established' });
    assert.equal(taken[0].data.recovered, true);
    assert.equal(taken[0].data.session_id, first.sessionId);
    // The session lives on in the other connection: the run finishes there.
    await waitFor(() => taken.some((f) => f.type === 'agent_completed' && f.run_id === run.runId), { what: 'the run to end on the other connection' });
    await sleep(800); // twice the test's maxDelayMs
    assert.equal(log.of('connecting').length, 1, 'no reconnect: it would take the session back');
    assert.equal(c.state, 'closed');
  } finally {
    other.terminate();
  }
});
