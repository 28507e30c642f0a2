// router-client.js in a browser page (loaded from the router's origin under its CSP):
// it reconnects by itself after the router restarts, and resumes a session whose TCP
// connection was cut in the middle of a demo run without losing or repeating an event.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRouter, restartRouterOn, startProxy, launchBrowser, openClientPage, waitInPage } from './helpers.mjs';

const TIMEOUT = { timeout: 30000 };

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

test('after the router is killed and another starts on the same port, the page reconnects by itself', TIMEOUT, async () => {
  let router = await startRouter({ args: ['--router.server-id=first'] });
  const c = await openClientPage(browser, router.base, { user: 'erin' });
  try {
    const first = await c.connected();
    assert.equal(first.ok, true);
    assert.equal(first.info.serverId, 'first');
    assert.equal(first.info.userId, 'erin');

    const port = router.port;
    await router.kill(); // SIGKILL: no close frame
    const [close] = await c.waitEvents('close', 1);
    assert.equal(close.code, 1006);
    assert.equal(close.willReconnect, true);
    await c.waitEvents('reconnecting', 1);

    router = await restartRouterOn(port, { args: ['--router.server-id=second'] });
    const established = await c.waitEvents('established', 2, 10000);
    assert.equal(established[1].serverId, 'second', 'connected to the new router');
    assert.equal(established[1].userId, 'erin');
    assert.equal(established[1].resumed, true, 'it tried to resume');
    assert.equal(established[1].recovered, false, 'a new process: a new session');
    assert.notEqual(established[1].sessionId, established[0].sessionId);
    assert.equal((await c.events('gap')).length, 1, 'the gap is reported');
    assert.deepEqual(await c.events('closed'), [], 'never closed for good');

    const rtt = await c.page.evaluate(() => window.client.ping());
    assert.ok(rtt >= 0);
    assert.equal(await c.state(), 'open');
    const states = (await c.events('state')).map((s) => s.state);
    assert.deepEqual(states.slice(0, 3), ['connecting', 'open', 'reconnecting']);
    assert.equal(states.at(-1), 'open');
    assert.ok(c.wire.sockets.length >= 2);
    assert.deepEqual(c.watch.problems.filter((p) => !/WebSocket connection to .* failed/.test(p)), []);
  } finally {
    await c.close();
    await router.stop();
  }
});

test('a TCP connection cut mid-run (no close frame) is resumed: recovered true, every event exactly once, in order', TIMEOUT, async () => {
  const router = await startRouter({ args: ['--agents.demo-steps=10', '--agents.demo-step-delay-ms=100'] });
  const proxy = await startProxy(router.port);
  const c = await openClientPage(browser, router.base, { user: 'fay', url: proxy.url });
  try {
    const first = await c.connected();
    assert.equal(first.ok, true);
    await c.page.evaluate(() => {
      window.run = window.client.startAgent('demo', { question: 'resume me' });
      window.runDone = window.run.done.then((f) => f.type, (e) => `failed: ${e.code}`);
    });
    await waitInPage(c.page, () => window.run.events.length >= 3, undefined, { what: 'three run events' });

    // Both TCP connections reset at once; new connections are held 400 ms before they reach
    // the router, which meanwhile goes on with the run and buffers its events.
    proxy.cut({ holdMs: 400 });

    const established = await c.waitEvents('established', 2, 8000);
    assert.equal(established[1].resumed, true);
    assert.equal(established[1].recovered, true, 'the router kept the session');
    assert.equal(established[1].sessionId, first.info.sessionId);
    const [close] = await c.events('close');
    assert.equal(close.code, 1006);
    assert.equal(close.wasClean, false);

    assert.equal(await c.page.evaluate(() => window.runDone), 'agent_completed');
    const runEvents = await c.page.evaluate(() => window.run.events.map((e) => e.type));
    assert.deepEqual(runEvents, [
      'agent_started', ...Array(10).fill('agent_thinking'), 'tool_executing', 'tool_completed', 'agent_completed',
    ]);

    // What the client delivered: event ids 1..N, each once.
    const rec = await c.rec();
    const delivered = rec.frames.filter((f) => f.type !== 'connection_established').map((f) => f.event_id);
    assert.deepEqual(delivered, delivered.map((_, i) => i + 1), 'every event once, in order');
    assert.equal(await c.page.evaluate(() => window.client.duplicatesDropped), 0);
    assert.deepEqual(await c.events('gap'), []);

    // On the wire: the second socket starts right after the last event of the first, and
    // some of its frames were produced while the client was away (replayed from the buffer).
    const wire = c.wireFrames();
    const on = (s) => wire.filter((w) => w.socket === s).map((w) => w.frame);
    const before = on(0).filter((f) => f.type !== 'connection_established');
    const afterFrames = on(1);
    assert.equal(afterFrames[0].type, 'connection_established');
    assert.equal(afterFrames[0].data.recovered, true);
    const resumedAt = Date.parse(afterFrames[0].timestamp);
    const after = afterFrames.slice(1);
    assert.equal(after[0].event_id, before.at(-1).event_id + 1, 'no gap, no repeat at the seam');
    const allIds = [...before, ...after].map((f) => f.event_id);
    assert.equal(new Set(allIds).size, allIds.length, 'the router sent no event twice');
    const replayed = after.filter((f) => Date.parse(f.timestamp) < resumedAt);
    assert.ok(replayed.length >= 2, `events produced while away were replayed (${replayed.length})`);
    assert.ok(proxy.accepted() >= 2);
    assert.deepEqual(c.watch.problems, []);
  } finally {
    await c.close();
    await proxy.close();
    await router.stop();
  }
});
