// startAgent(): the run's async iterator, callbacks, final-event promise and stop().
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRouter, makeClient, record, mintToken, TIMEOUT } from './helpers.mjs';
import { RouterError, AgentRun } from '../router-client.js';

let router;
const clients = [];
function client(opts) { const c = makeClient(router.url, opts); clients.push(c); return c; }

const DEMO = ['agent_started', 'agent_thinking', 'agent_thinking', 'agent_thinking', 'tool_executing', 'tool_completed', 'agent_completed'];

before(async () => {
  router = await startRouter({ args: ['--agents.demo-step-delay-ms=40', '--agents.test-agents=1'] });
});
after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await router.stop();
});

test('startAgent: the iterator yields the whole run in order and ends after the final event', TIMEOUT, async () => {
  const c = client();
  await c.connect();
  const seen = [];
  const run = c.startAgent('demo', { question: 42 }, { onEvent: (f) => seen.push(f.type) });
  assert.ok(run instanceof AgentRun);
  assert.equal(run.runId, null, 'run id unknown before agent_started');
  const types = [];
  for await (const ev of run) {
    types.push(ev.type);
    assert.equal(ev.run_id, run.runId);
    assert.equal(ev.reply_to, run.requestId);
  }
  assert.deepEqual(types, DEMO);
  assert.deepEqual(seen, DEMO, 'onEvent saw the same events');
  assert.match(run.runId, /^r-[0-9a-f]{32}$/);
  const final = await run.done;
  assert.equal(final.type, 'agent_completed');
  assert.deepEqual(final.data.input, { question: 42 });
  assert.equal(run.status, 'completed');
  const ids = run.events.map((e) => e.event_id);
  for (let i = 1; i < ids.length; i++) assert.equal(ids[i], ids[i - 1] + 1, 'consecutive event ids');
  // A second iteration replays the buffered run from the start.
  const again = [];
  for await (const ev of run) again.push(ev.type);
  assert.deepEqual(again, DEMO);
});

test('concurrent runs on one connection: each run gets only its own events', TIMEOUT, async () => {
  const c = client();
  await c.connect();
  const runs = [c.startAgent('demo', 1), c.startAgent('echo', { e: 1 }), c.startAgent('demo', 2)];
  const results = await Promise.all(runs.map(async (run) => {
    const got = [];
    for await (const ev of run) got.push(ev);
    return got;
  }));
  assert.deepEqual(results[0].map((e) => e.type), DEMO);
  assert.deepEqual(results[1].map((e) => e.type), ['agent_started', 'agent_completed']);
  assert.deepEqual(results[1][1].data.output, { e: 1 });
  assert.deepEqual(results[2].map((e) => e.type), DEMO);
  assert.equal(new Set(runs.map((r) => r.runId)).size, 3);
  results.forEach((events, i) => {
    for (const ev of events) assert.equal(ev.run_id, runs[i].runId);
  });
  assert.deepEqual(results[0].at(-1).data.input, 1);
  assert.deepEqual(results[2].at(-1).data.input, 2);
});

test('stop(): sends stop_agent with the run id, the run ends with agent_stopped', TIMEOUT, async () => {
  const c = client();
  await c.connect();
  const sent = [];
  const ws = c.socket;
  const origSend = ws.send.bind(ws);
  ws.send = (text, ...rest) => { sent.push(JSON.parse(text)); return origSend(text, ...rest); };
  const run = c.startAgent('test-hang', null);
  const stopping = run.stop(); // before the run id is known: waits for agent_started
  const types = [];
  for await (const ev of run) types.push(ev.type);
  const final = await stopping;
  assert.deepEqual(types, ['agent_started', 'agent_stopped']);
  assert.equal(final.type, 'agent_stopped');
  assert.equal(run.status, 'stopped');
  const stopMsg = sent.find((m) => m.type === 'stop_agent');
  assert.ok(stopMsg, 'stop_agent was sent');
  assert.equal(stopMsg.payload.run_id, run.runId);
  assert.equal(final.reply_to, stopMsg.id, 'agent_stopped answers the stop request');
  assert.equal(final.run_id, run.runId);
  assert.equal((await run.done).type, 'agent_stopped');
  // stop() on a finished run resolves with its final event without sending anything.
  const count = sent.length;
  assert.equal((await run.stop()).type, 'agent_stopped');
  assert.equal(sent.length, count);
});

test('stop() racing completion resolves with the final event', TIMEOUT, async () => {
  const c = client();
  await c.connect();
  const run = c.startAgent('echo', 'fast');
  await run.started;
  const final = await run.stop();
  assert.ok(['agent_completed', 'agent_stopped'].includes(final.type), final.type);
  assert.equal(final, run.final);
});

test('an unknown agent: the iterator throws a RouterError, done rejects', TIMEOUT, async () => {
  const c = client();
  await c.connect();
  const run = c.startAgent('no-such-agent', {});
  await assert.rejects(async () => { for await (const ev of run) assert.fail(`unexpected event ${ev.type}`); },
    (e) => e instanceof RouterError && e.code === 'unknown_agent');
  await assert.rejects(run.done, (e) => e.code === 'unknown_agent');
  assert.equal(run.status, 'failed');
  assert.equal(run.runId, null);
});

test('a failing agent ends with agent_error; too many runs reject with too_many_runs', TIMEOUT, async () => {
  const c = client();
  await c.connect();
  const failing = c.startAgent('test-throw', null);
  const types = [];
  for await (const ev of failing) types.push(ev.type);
  assert.equal(types.at(-1), 'agent_error');
  assert.equal(failing.status, 'error');
  const hanging = [1, 2, 3, 4].map(() => c.startAgent('test-hang', null));
  await Promise.all(hanging.map((r) => r.started));
  const fifth = c.startAgent('test-hang', null);
  await assert.rejects(fifth.done, (e) => e.code === 'too_many_runs');
  await Promise.all(hanging.map((r) => r.stop()));
  for (const r of hanging) assert.equal(r.final.type, 'agent_stopped');
});

test('breaking out of the iterator early leaves the run and the client working', TIMEOUT, async () => {
  const c = client();
  await c.connect();
  const log = record(c);
  const run = c.startAgent('demo', 'x');
  for await (const ev of run) { if (ev.type === 'agent_thinking') break; }
  const final = await run.done;
  assert.equal(final.type, 'agent_completed');
  assert.deepEqual(run.events.map((e) => e.type), DEMO);
  assert.equal(log.of('event').filter((f) => f.run_id === run.runId).length, DEMO.length);
});

test('examples/node-demo.mjs runs the demo agent to completion', TIMEOUT, async () => {
  const { spawn } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const script = fileURLToPath(new URL('../examples/node-demo.mjs', import.meta.url));
  const child = spawn(process.execPath, [script, `--url=${router.url}`, `--token=${mintToken('example-user')}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const code = await new Promise((resolve) => child.on('exit', resolve));
  assert.equal(code, 0, out);
  const runLines = out.split('\n').filter((l) => l.startsWith('[run '));
  assert.deepEqual(runLines.map((l) => l.split(' ')[3]), DEMO);
  assert.match(out, /\[established\] user example-user/);
  assert.match(out, /\[done\] agent_completed/);
});
