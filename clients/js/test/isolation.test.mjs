// Two users on one router: no frame of one ever reaches the other's client.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRouter, makeClient, record, waitFor, httpPost, TIMEOUT } from './helpers.mjs';

let router;
const clients = [];
function client(opts) { const c = makeClient(router.url, opts); clients.push(c); return c; }

before(async () => { router = await startRouter({ args: ['--agents.demo-step-delay-ms=10'] }); });
after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await router.stop();
});

test("two users, two tabs each, busy at once: every frame a client gets is its own user's", TIMEOUT, async () => {
  const users = ['olivia', 'peter'];
  const tabs = users.flatMap((user) => [0, 1].map((tab) => ({ user, tab, c: client({ user }) })));
  for (const t of tabs) { t.log = record(t.c); await t.c.connect(); }

  const work = tabs.map(async ({ user, tab, c }) => {
    const thread = await c.createThread(`${user}-${tab}`);
    const runs = [c.startAgent('demo', `${user}-${tab}-a`), c.userMessage(`${user} says hi`, { threadId: thread.thread_id }),
      c.startAgent('echo', { user, tab })];
    const pings = Array.from({ length: 20 }, () => c.ping());
    const finals = await Promise.all(runs.map((r) => r.done));
    await Promise.all(pings);
    const list = await c.listThreads();
    return { thread, runs, finals, list };
  });
  const publishes = [];
  for (let i = 0; i < 5; i++) {
    for (const user of users) publishes.push(httpPost(router.base, '/api/v1/publish', { user_id: user, event: { type: 'notice', data: { for: user, i } } }));
  }
  const results = await Promise.all(work);
  for (const p of await Promise.all(publishes)) {
    assert.equal(p.status, 202);
    assert.equal(p.json.delivered, 2, 'each user has two connections');
  }
  await Promise.all(tabs.map(({ log }) => waitFor(() => log.of('publish').length >= 5, { what: 'five publishes' })));
  for (const t of tabs) await t.c.ping(); // flush: anything else would have arrived by now

  const ownRunIds = new Map(users.map((u) => [u, new Set()]));
  const ownThreadIds = new Map(users.map((u) => [u, new Set()]));
  tabs.forEach((t, i) => {
    for (const r of results[i].runs) ownRunIds.get(t.user).add(r.runId);
    ownThreadIds.get(t.user).add(results[i].thread.thread_id);
    for (const r of results[i].runs) ownThreadIds.get(t.user).add(r.threadId);
  });

  tabs.forEach((t, i) => {
    const frames = t.log.of('event');
    assert.ok(frames.length > 40, `${t.user}/${t.tab} got traffic`);
    for (const f of frames) {
      assert.equal(f.user_id, t.user, `frame ${f.type} #${f.event_id} is stamped with ${t.user}`);
      if (f.run_id) assert.ok(ownRunIds.get(t.user).has(f.run_id), `run ${f.run_id} belongs to ${t.user}`);
      if (f.thread_id) assert.ok(ownThreadIds.get(t.user).has(f.thread_id), `thread ${f.thread_id} belongs to ${t.user}`);
      assert.ok(!JSON.stringify(f).includes(users.find((u) => u !== t.user)), 'no trace of the other user');
    }
    const pubs = t.log.of('publish');
    assert.deepEqual(pubs.map((p) => [p.type, p.data.for, p.data.i]).sort(), [0, 1, 2, 3, 4].map((n) => ['notice', t.user, n]));
    for (const fin of results[i].finals) assert.equal(fin.type, 'agent_completed');
    const threads = results[i].list.data.threads;
    for (const th of threads) assert.ok(ownThreadIds.get(t.user).has(th.thread_id));
    // A run of this tab never shows up in the other tab of the same user either.
    const otherTab = tabs.find((o) => o.user === t.user && o.tab !== t.tab);
    const otherRuns = new Set(results[tabs.indexOf(otherTab)].runs.map((r) => r.runId));
    assert.ok(!frames.some((f) => f.run_id && otherRuns.has(f.run_id)), 'runs are per connection');
  });
});

test("another user's run id is answered exactly like a made-up one", TIMEOUT, async () => {
  const a = client({ user: 'quinn' });
  const b = client({ user: 'rita' });
  await a.connect();
  await b.connect();
  const run = a.startAgent('demo', 'secret');
  const runId = await run.started;
  const theirs = await b.stopAgent(runId).then(() => null, (e) => e);
  const madeUp = await b.stopAgent('r-0123456789abcdef0123456789abcdef').then(() => null, (e) => e);
  assert.equal(theirs.code, 'not_found');
  assert.equal(madeUp.code, 'not_found');
  assert.equal(theirs.message, madeUp.message);
  assert.equal((await run.done).type, 'agent_completed', "the owner's run carried on");
});
