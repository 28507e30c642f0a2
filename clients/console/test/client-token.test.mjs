// router-client.js in a browser page: a token that expires while connected. The client does not
// replace the connection ahead of exp (a browser's close frame would end the session); the
// router (with --router.jwt-leeway-s=0) closes with 4501 at the token's exp, and the client asks
// getToken() for a fresh token and reconnects at once with resume. A session closed for token
// expiry is resumable, so the run that was going on continues: recovered true, every event once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRouter, launchBrowser, openClientPage, mintToken } from './helpers.mjs';

const TIMEOUT = { timeout: 30000 };

let browser;
let router;
before(async () => {
  browser = await launchBrowser();
  router = await startRouter({
    args: ['--router.jwt-leeway-s=0', '--agents.demo-steps=30', '--agents.demo-step-delay-ms=100'],
  });
});
after(async () => {
  await browser?.close();
  await router?.stop();
});

test('4501 at exp: getToken() is called again, the client reconnects and resumes (recovered true), the run loses nothing', TIMEOUT, async () => {
  const issued = [];
  const c = await openClientPage(browser, router.base, {
    user: 'ivan',
    // The first token lives 2 s (exp is whole seconds: 1-2 s from now), the next ones an hour.
    token: (user, call) => {
      const t = mintToken(user, { expIn: call === 0 ? 2 : 3600 });
      issued.push(t);
      return t;
    },
    // The default options: in a browser the client waits for the router's 4501 by itself.
    // (The connection lives 1-2 s: long enough to count as stable, so the reconnect is at once.)
    options: { stableConnectionMs: 500 },
  });
  try {
    const first = await c.connected();
    assert.equal(first.ok, true);
    // 34 events 100 ms apart: ~3.3 s, across the token's expiry.
    await c.page.evaluate(() => {
      window.run = window.client.startAgent('demo', 'across the expiry');
      window.runDone = window.run.done.then((f) => f.type, (e) => `failed: ${e.code}`);
      window.client.once('close', () => { window.runEventsAtClose = window.run.events.length; });
    });

    const [close] = await c.waitEvents('close', 1, 5000);
    const closedAt = (await c.rec()).events.find((e) => e.type === 'close').at;
    assert.equal(close.code, 4501);
    assert.equal(close.terminal, false);
    assert.equal(close.willReconnect, true);
    const expMs = JSON.parse(Buffer.from(issued[0].split('.')[1], 'base64url')).exp * 1000;
    assert.ok(closedAt >= expMs - 100, `closed at exp, not before (${closedAt - expMs} ms)`);
    assert.ok(closedAt < expMs + 1500, `closed at exp with no leeway (${closedAt - expMs} ms)`);
    const atClose = await c.page.evaluate(() => window.runEventsAtClose);
    assert.ok(atClose >= 1 && atClose < 34, `the run was under way when the token expired (${atClose} events)`);

    const established = await c.waitEvents('established', 2, 5000);
    assert.equal(issued.length, 2, 'getToken() was asked again after 4501');
    assert.equal((await c.rec()).tokenCalls, 2);
    assert.deepEqual((await c.events('tokenRefresh')).map((t) => t.reason), ['expired']);
    assert.equal((await c.events('reconnecting'))[0].delayMs, 0, 'reconnected at once');
    assert.equal(established[1].resumed, true);
    assert.equal(established[1].recovered, true, 'the 4501 session was resumed');
    assert.equal(established[1].sessionId, first.info.sessionId);
    assert.deepEqual(await c.events('gap'), []);

    assert.equal(await c.page.evaluate(() => window.runDone), 'agent_completed');
    const types = await c.page.evaluate(() => window.run.events.map((e) => e.type));
    assert.equal(types.length, 34);
    assert.equal(types.filter((t) => t === 'agent_thinking').length, 30);
    const delivered = (await c.rec()).frames.filter((f) => f.type !== 'connection_established').map((f) => f.event_id);
    assert.deepEqual(delivered, delivered.map((_, i) => i + 1), 'every event once, in order');

    // The second connection uses the hour-long token: it stays.
    assert.ok(await c.page.evaluate(() => window.client.ping()) >= 0);
    assert.equal((await c.events('close')).length, 1);
    assert.equal(c.wire.sockets.length, 2);
    assert.deepEqual(c.watch.problems, []);
  } finally {
    await c.close();
  }
});
