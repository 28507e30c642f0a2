// Two users in two browser pages (separate browser contexts), busy at the same time: runs,
// threads, backend publishes, and each probing the other's ids. No frame of one ever appears
// in the other: every frame on each page's wire carries its own user_id, and none mentions the
// other user's run or thread ids.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRouter, launchBrowser, openClientPage, httpPost } from './helpers.mjs';

const TIMEOUT = { timeout: 30000 };

let browser;
let router;
before(async () => {
  browser = await launchBrowser();
  router = await startRouter({ args: ['--agents.demo-steps=3', '--agents.demo-step-delay-ms=40'] });
});
after(async () => {
  await browser?.close();
  await router?.stop();
});

/** In the page: a thread, three runs at once (demo, echo, user_message); their ids. */
function work(page, user) {
  return page.evaluate(async (user) => {
    const c = window.client;
    const thread = await c.createThread(`${user}'s notes`);
    const runs = [
      c.startAgent('demo', { who: user }),
      c.startAgent('echo', { who: user }, { threadId: thread.thread_id }),
      c.userMessage(`hello from ${user}`),
    ];
    const finals = await Promise.all(runs.map((r) => r.done));
    const list = await c.listThreads();
    return {
      threadIds: [thread.thread_id, ...list.data.threads.map((t) => t.thread_id)],
      runIds: runs.map((r) => r.runId),
      finals: finals.map((f) => f.type),
    };
  }, user);
}

/** In the page: the answers to another user's ids and to made-up ones, as {code, message}. */
function probe(page, ids) {
  return page.evaluate(async ({ threadId, runId }) => {
    const c = window.client;
    const answer = (p) => p.then((f) => ({ ok: f.type }), (e) => ({ code: e.code, message: e.frame ? e.frame.data.message : e.message }));
    return {
      otherThread: await answer(c.getThreadHistory(threadId)),
      madeUpThread: await answer(c.getThreadHistory('t-00000000000000000000000000000000')),
      otherRun: await answer(c.stopAgent(runId)),
      madeUpRun: await answer(c.stopAgent('r-00000000000000000000000000000000')),
    };
  }, ids);
}

test('two users in two pages: no frame of one ever appears in the other', TIMEOUT, async () => {
  const alice = await openClientPage(browser, router.base, { user: 'alice' });
  const bob = await openClientPage(browser, router.base, { user: 'bob' });
  try {
    assert.equal((await alice.connected()).ok, true);
    assert.equal((await bob.connected()).ok, true);

    // Both at once, plus a backend publish to each.
    const [a, b] = await Promise.all([
      work(alice.page, 'alice'),
      work(bob.page, 'bob'),
      httpPost(router.base, '/api/v1/publish', { user_id: 'alice', event: { type: 'note', data: { for: 'alice' } } }, router.apiKey),
      httpPost(router.base, '/api/v1/publish', { user_id: 'bob', event: { type: 'note', data: { for: 'bob' } } }, router.apiKey),
    ]);
    assert.deepEqual(a.finals, ['agent_completed', 'agent_completed', 'agent_completed']);
    assert.deepEqual(b.finals, ['agent_completed', 'agent_completed', 'agent_completed']);

    // Wait for each page's publish (it may arrive after the work).
    for (const [page, user] of [[alice, 'alice'], [bob, 'bob']]) {
      await page.page.waitForFunction(() => window.rec.frames.some((f) => f.type === 'note'), undefined, { timeout: 3000 })
        .catch(() => { throw new Error(`${user} got no publish`); });
    }
    // Frames before the probes below (whose replies may echo the other's ids they asked about).
    const beforeProbe = { alice: alice.wire.frames.length, bob: bob.wire.frames.length };

    // Each probes the other's ids: exactly the answer a made-up id gets.
    const [pa, pb] = await Promise.all([
      probe(alice.page, { threadId: b.threadIds[0], runId: b.runIds[0] }),
      probe(bob.page, { threadId: a.threadIds[0], runId: a.runIds[0] }),
    ]);
    for (const p of [pa, pb]) {
      assert.equal(p.otherThread.code, 'not_found');
      assert.equal(p.otherRun.code, 'not_found');
      assert.deepEqual(p.otherThread, p.madeUpThread);
      assert.deepEqual(p.otherRun, p.madeUpRun);
    }

    const check = (page, user, other, otherIds) => {
      const raw = page.wire.frames;
      assert.ok(raw.length >= 20, `${user}: frames on the wire (${raw.length})`);
      raw.forEach(({ payload }, i) => {
        const frame = JSON.parse(payload);
        assert.equal(frame.user_id, user, `${user} got a frame of ${frame.user_id}: ${payload}`);
        if (i < beforeProbe[user]) for (const id of otherIds) assert.ok(!payload.includes(id), `${user} saw ${other}'s id ${id}`);
        assert.ok(!payload.includes(`"for":"${other}"`), `${user} saw ${other}'s publish`);
      });
      const notes = raw.map((f) => JSON.parse(f.payload)).filter((f) => f.type === 'note');
      assert.deepEqual(notes.map((n) => n.data), [{ for: user }], `${user} got its own publish, once`);
    };
    check(alice, 'alice', 'bob', [...b.threadIds, ...b.runIds]);
    check(bob, 'bob', 'alice', [...a.threadIds, ...a.runIds]);

    // What each client delivered to the application agrees.
    for (const [page, user] of [[alice, 'alice'], [bob, 'bob']]) {
      const frames = (await page.rec()).frames;
      assert.ok(frames.every((f) => f.user_id === user));
    }
    assert.deepEqual(alice.watch.problems, []);
    assert.deepEqual(bob.watch.problems, []);
  } finally {
    await alice.close();
    await bob.close();
  }
});
