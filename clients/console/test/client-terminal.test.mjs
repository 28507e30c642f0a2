// router-client.js in browser pages: the close codes that say "do not reconnect as is" stop it.
// 4503: a second page of the same user past router.max-connections-per-user=1;
// 4511: the backend's disconnect API; 4512: another connection resumed the session.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRouter, launchBrowser, openClientPage, httpPost, healthz, sleep } from './helpers.mjs';

const TIMEOUT = { timeout: 30000 };
// Longer than the harness's reconnect backoff (maxDelayMs 800): a reconnect would show by then.
const QUIET_MS = 1500;

let browser;
let router;
before(async () => {
  browser = await launchBrowser();
  router = await startRouter({ args: ['--router.max-connections-per-user=1', '--agents.test-agents=1'] });
});
after(async () => {
  await browser?.close();
  await router?.stop();
});

test('4503: the newest page of a user past max-connections-per-user=1 is closed and does not reconnect', TIMEOUT, async () => {
  const a = await openClientPage(browser, router.base, { user: 'gus' });
  let b;
  try {
    assert.equal((await a.connected()).ok, true);
    b = await openClientPage(browser, router.base, { user: 'gus' });
    const [close] = await b.waitEvents('close', 1);
    assert.equal(close.code, 4503);
    assert.equal(close.terminal, true);
    assert.equal(close.willReconnect, false);
    assert.equal(close.terminalReason, 'too_many_connections');
    const [closed] = await b.waitEvents('closed', 1);
    assert.equal(closed.code, 4503);
    assert.equal(await b.state(), 'closed');
    // The router refuses it right after the upgrade: no connection_established, connect() rejects.
    const result = await b.connected();
    assert.equal(result.ok, false);
    assert.equal(result.code, 'closed');
    assert.equal(result.terminalReason, 'too_many_connections');
    assert.deepEqual(b.wireFrames(), []);

    await sleep(QUIET_MS);
    assert.equal((await b.events('connecting')).length, 1, 'one attempt, no reconnect');
    assert.deepEqual(await b.events('reconnecting'), []);
    assert.equal(b.wire.sockets.length, 1, 'the page opened one WebSocket only');
    assert.equal(await b.page.evaluate(() => window.client.lastClose.terminalReason), 'too_many_connections');

    // The first page is untouched.
    assert.ok(await a.page.evaluate(() => window.client.ping()) >= 0);
    assert.equal(await a.state(), 'open');
    assert.deepEqual((await a.events('close')), []);
    assert.equal((await healthz(router.base)).connections, 1);
    assert.deepEqual(a.watch.problems, []);
    assert.deepEqual(b.watch.problems, []);
  } finally {
    await a.close();
    await b?.close();
  }
});

test('4511: the disconnect API closes the page for good; its running agent fails with code closed', TIMEOUT, async () => {
  const a = await openClientPage(browser, router.base, { user: 'hana' });
  try {
    assert.equal((await a.connected()).ok, true);
    await a.page.evaluate(() => {
      window.run = window.client.startAgent('test-hang', null);
      window.runDone = window.run.done.then((f) => f.type, (e) => `failed: ${e.code}`);
      return window.run.started;
    });

    const r = await httpPost(router.base, '/api/v1/users/hana/disconnect', undefined, router.apiKey);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { disconnected: 1 });

    const [close] = await a.waitEvents('close', 1);
    assert.equal(close.code, 4511);
    assert.equal(close.terminal, true);
    assert.equal(close.willReconnect, false);
    assert.equal(close.terminalReason, 'disconnected_by_backend');
    assert.equal(await a.page.evaluate(() => window.runDone), 'failed: closed');

    await sleep(QUIET_MS);
    assert.equal(await a.state(), 'closed');
    assert.equal((await a.events('connecting')).length, 1, 'no reconnect');
    assert.equal(a.wire.sockets.length, 1);
    assert.equal((await healthz(router.base)).connections, 0);
    assert.deepEqual(a.watch.problems, []);
  } finally {
    await a.close();
  }
});

test('4512: a resume from another connection takes the session over; the page stops and does not take it back', TIMEOUT, async () => {
  const own = await startRouter({ args: ['--agents.demo-steps=10', '--agents.demo-step-delay-ms=100'] });
  const a = await openClientPage(browser, own.base, { user: 'iris' });
  try {
    const first = await a.connected();
    assert.equal(first.ok, true);
    await a.page.evaluate(() => window.client.ping());
    // A second socket of the same user resumes the client's session while the client's socket
    // is open, as a second network path would.
    const taken = await a.page.evaluate(async () => {
      const est = window.rec.frames.find((f) => f.type === 'connection_established');
      const url = `${location.origin.replace(/^http/, 'ws')}/ws?resume=${encodeURIComponent(est.data.resume_token)}&last_event_id=${window.client.lastEventId}`;
      const ws = new WebSocket(url, ['router.v1', `jwt.${await window.nodeToken()}`]);
      window.takeover = ws;
      return new Promise((resolve, reject) => {
        ws.onmessage = (ev) => resolve(JSON.parse(ev.data));
        ws.onerror = () => reject(new Error('the takeover socket failed'));
      });
    });
    assert.equal(taken.type, 'connection_established');
    assert.equal(taken.data.recovered, true);
    assert.equal(taken.data.session_id, first.info.sessionId);

    const [close] = await a.waitEvents('close', 1);
    assert.equal(close.code, 4512);
    assert.equal(close.terminal, true);
    assert.equal(close.willReconnect, false);
    assert.equal(close.terminalReason, 'session_moved');
    await sleep(QUIET_MS);
    assert.equal(await a.state(), 'closed');
    assert.equal((await a.events('connecting')).length, 1, 'no reconnect: it would take the session back');
    // The session lives on in the other socket.
    const pong = await a.page.evaluate(() => new Promise((resolve) => {
      window.takeover.onmessage = (ev) => resolve(JSON.parse(ev.data));
      window.takeover.send(JSON.stringify({ type: 'ping', id: 'after-takeover' }));
    }));
    assert.equal(pong.type, 'pong');
    assert.equal(pong.reply_to, 'after-takeover');
    assert.deepEqual(a.watch.problems, []);
  } finally {
    await a.close();
    await own.stop();
  }
});
