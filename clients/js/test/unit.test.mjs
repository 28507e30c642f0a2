// The client's pure parts, and its duplicate filter against a scripted server (a `ws` server in
// this process), where replays with duplicates can be produced on purpose.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocketServer } from 'ws';
import {
  RouterClient, closePolicy, backoffDelay, decodeJwtPayload, tokenExpiresAt, buildUrl, isPublishedType, DEFAULTS,
} from '../router-client.js';
import { WebSocket, mintToken, record, waitFor, TIMEOUT } from './helpers.mjs';

test("closePolicy follows the router's close codes (protocol/close_codes.hpp)", TIMEOUT, () => {
  const action = (code) => closePolicy(code).action;
  for (const code of [1000, 1001, 1005, 1006, 1011, 1012, 1013, 4000, 4008, 4009, 4010, 4499]) assert.equal(action(code), 'reconnect', String(code));
  assert.equal(action(4029), 'reconnect_slow');
  assert.equal(action(4501), 'refresh_token');
  for (const code of [1002, 1003, 1007, 1008, 1009, 1010, 4500, 4502, 4503, 4510, 4511, 4512, 4999]) assert.equal(action(code), 'terminal', String(code));
  assert.equal(closePolicy(1002).reason, 'protocol_error');
  assert.equal(closePolicy(1007).reason, 'invalid_payload');
  assert.equal(closePolicy(1009).reason, 'message_too_big');
  assert.equal(closePolicy(4503).reason, 'too_many_connections');
  assert.equal(closePolicy(4511).reason, 'disconnected_by_backend');
  assert.equal(closePolicy(4510).reason, 'protocol_abuse');
  assert.equal(closePolicy(4512).reason, 'session_moved');
});

test('backoffDelay: full jitter, exponential, capped; 4029 waits [max/2, max]', TIMEOUT, () => {
  const opts = { initialDelayMs: 500, maxDelayMs: 20000 };
  assert.equal(backoffDelay(0, opts, () => 0), 0);
  assert.equal(backoffDelay(0, opts, () => 1), 500);
  assert.equal(backoffDelay(1, opts, () => 1), 1000);
  assert.equal(backoffDelay(3, opts, () => 1), 4000);
  assert.equal(backoffDelay(6, opts, () => 1), 20000);
  assert.equal(backoffDelay(1000, opts, () => 1), 20000);
  assert.equal(backoffDelay(2, opts, () => 0.5), 1000);
  assert.equal(backoffDelay(0, { ...opts, slow: true }, () => 0), 10000);
  assert.equal(backoffDelay(0, { ...opts, slow: true }, () => 1), 20000);
  for (let i = 0; i < 200; i++) {
    const d = backoffDelay(i % 10, opts);
    assert.ok(d >= 0 && d <= Math.min(20000, 500 * 2 ** (i % 10)));
  }
  assert.equal(DEFAULTS.initialDelayMs, 500);
  assert.equal(DEFAULTS.maxDelayMs, 20000);
});

test('decodeJwtPayload / tokenExpiresAt read the claims without verifying', TIMEOUT, () => {
  const token = mintToken('zoë', { expIn: 100 });
  const claims = decodeJwtPayload(token);
  assert.equal(claims.sub, 'zoë');
  assert.equal(tokenExpiresAt(token), claims.exp * 1000);
  assert.equal(decodeJwtPayload('not-a-jwt'), null);
  assert.equal(decodeJwtPayload('a.!!!.c'), null);
  assert.equal(tokenExpiresAt(mintToken('x', { extra: { exp: 'soon' } })), null);
});

test('buildUrl sets resume and last_event_id and keeps other parameters', TIMEOUT, () => {
  assert.equal(buildUrl('ws://h:1/ws', null), 'ws://h:1/ws');
  const u = new URL(buildUrl('ws://h:1/ws?x=1&resume=old', { token: 'rt-abc', lastEventId: 42 }));
  assert.equal(u.searchParams.get('x'), '1');
  assert.equal(u.searchParams.get('resume'), 'rt-abc');
  assert.equal(u.searchParams.get('last_event_id'), '42');
  assert.equal(u.searchParams.getAll('resume').length, 1);
});

test("isPublishedType tells backend events from the router's own", TIMEOUT, () => {
  for (const t of ['pong', 'error', 'connection_established', 'thread_created', 'thread_list', 'thread_history',
    'agent_started', 'agent_completed', 'tool_executing']) assert.equal(isPublishedType(t), false, t);
  for (const t of ['news', 'order.updated', 'notice']) assert.equal(isPublishedType(t), true, t);
});

test('the constructor checks its options', TIMEOUT, () => {
  const saved = globalThis.WebSocket;
  try {
    delete globalThis.WebSocket;
    assert.throws(() => new RouterClient({ url: 'ws://h/ws', getToken: () => 't' }), /WebSocket/);
  } finally {
    if (saved) globalThis.WebSocket = saved;
  }
  assert.throws(() => new RouterClient({ getToken: () => 't', WebSocket }), /url/);
  assert.throws(() => new RouterClient({ url: 'ftp://h/ws', getToken: () => 't', WebSocket }), /scheme/);
  assert.throws(() => new RouterClient({ url: 'ws://h/ws', WebSocket }), /getToken/);
  assert.throws(() => new RouterClient({ url: 'ws://h/ws', getToken: () => 't', WebSocket, maxDelayMs: -1 }), /maxDelayMs/);
  const c = new RouterClient({ url: 'ws://h/ws', getToken: () => 't', WebSocket });
  assert.equal(c.state, 'idle');
  assert.equal(c.options.refreshBeforeExpiryMs, 30000);
});

// ---- scripted server --------------------------------------------------------------------

const servers = [];
const clients = [];
after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  for (const s of servers) {
    for (const ws of s.clients) ws.terminate();
    s.close();
  }
});
/** A client of the scripted server, closed after the tests whatever happens. */
function mockClient(options) {
  const c = new RouterClient({ WebSocket, getToken: () => mintToken('u'), ...options });
  clients.push(c);
  return c;
}

async function scriptedServer(script) {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: (protocols) => (protocols.has('router.v1') ? 'router.v1' : false) });
  servers.push(wss);
  await new Promise((r) => wss.once('listening', r));
  const connections = [];
  wss.on('connection', (ws, req) => {
    const n = connections.length;
    connections.push({ url: new URL(req.url, 'ws://x'), protocols: req.headers['sec-websocket-protocol'], received: [] });
    ws.on('message', (m) => connections[n].received.push(JSON.parse(m)));
    script(n, ws, connections[n]);
  });
  return { url: `ws://127.0.0.1:${wss.address().port}/ws`, connections };
}

const frame = (type, eventId, extra = {}) => JSON.stringify({
  type, event_id: eventId, user_id: 'u', thread_id: null, run_id: null, reply_to: null, timestamp: new Date().toISOString(), data: {}, ...extra,
});
const established = (session, rt, recovered) => frame('connection_established', 0, {
  data: { connection_id: 'c-1', session_id: session, resume_token: rt, server_id: 'mock', recovered, limits: {} },
});

test('duplicates in a replay are dropped; ids restart with a new session; the gap is reported', TIMEOUT, async () => {
  const server = await scriptedServer((n, ws) => {
    if (n === 0) {
      ws.send(established('s-1', 'rt-1', false));
      for (const id of [1, 2, 3]) ws.send(frame('note', id, { data: { id } }));
      setTimeout(() => ws.terminate(), 50);
    } else if (n === 1) {
      // A resume that replays more than it should: 2 and 3 were delivered already.
      ws.send(established('s-1', 'rt-2', true));
      for (const id of [2, 3, 4, 5]) ws.send(frame('note', id, { data: { id } }));
      ws.send(frame('note', 3, { data: { id: 3 } }));
      setTimeout(() => ws.terminate(), 50);
    } else {
      ws.send(established('s-2', 'rt-3', false));
      for (const id of [1, 2]) ws.send(frame('note', id, { data: { id, fresh: true } }));
    }
  });
  const token = mintToken('u');
  const c = mockClient({ url: server.url, getToken: () => token, initialDelayMs: 10, maxDelayMs: 20 });
  const log = record(c);
  await c.connect();
  await waitFor(() => log.of('established').length === 3 && log.of('publish').length >= 7, { what: 'three sessions' });
  await c.close();
  const delivered = log.of('publish').map((f) => `${f.data.fresh ? 's2' : 's1'}:${f.event_id}`);
  assert.deepEqual(delivered, ['s1:1', 's1:2', 's1:3', 's1:4', 's1:5', 's2:1', 's2:2']);
  assert.equal(c.duplicatesDropped, 3);
  // The resume URLs carried the right token and cursor; the token travelled as a subprotocol.
  const [c0, c1, c2] = server.connections;
  assert.equal(c0.url.searchParams.get('resume'), null);
  assert.equal(c1.url.searchParams.get('resume'), 'rt-1');
  assert.equal(c1.url.searchParams.get('last_event_id'), '3');
  assert.equal(c2.url.searchParams.get('resume'), 'rt-2');
  assert.equal(c2.url.searchParams.get('last_event_id'), '5');
  assert.deepEqual(c0.protocols.split(/,\s*/), ['router.v1', `jwt.${token}`]);
  assert.ok(!c0.url.search.includes(token));
  assert.deepEqual(log.of('established').map((e) => e.recovered), [false, true, false]);
  const gaps = log.of('gap');
  assert.equal(gaps.length, 1);
  assert.deepEqual([gaps[0].previousSessionId, gaps[0].sessionId, gaps[0].lastEventId], ['s-1', 's-2', 5]);
});

test('4501: at once after a connection that lasted stableConnectionMs, with backoff after one that did not', TIMEOUT, async () => {
  const server = await scriptedServer((n, ws) => {
    ws.send(established('s-1', `rt-${n + 1}`, n > 0));
    // The first connection outlives stableConnectionMs, the second does not, the third stays.
    if (n < 2) setTimeout(() => ws.close(4501, 'token expired'), n === 0 ? 300 : 10);
  });
  // random() = 1: the backoff is its cap, min(maxDelayMs, initialDelayMs * 2^attempt).
  const c = mockClient({ url: server.url, stableConnectionMs: 200, initialDelayMs: 150, maxDelayMs: 150, random: () => 1 });
  const log = record(c);
  await c.connect();
  await waitFor(() => log.of('established').length === 3, { what: 'the second resume' });
  assert.deepEqual(log.of('close').map((e) => e.code), [4501, 4501]);
  assert.deepEqual(log.of('reconnecting').map((e) => e.delayMs), [0, 150]);
  assert.deepEqual(log.of('tokenRefresh').map((e) => e.reason), ['expired', 'expired']);
  assert.deepEqual(server.connections.map((s) => s.url.searchParams.get('resume')), [null, 'rt-1', 'rt-2']);
  assert.equal(log.of('gap').length, 0);
  await c.close();
});

test('no connection_established within connectTimeoutMs: the socket is dropped and the client retries', TIMEOUT, async () => {
  const server = await scriptedServer((n, ws) => {
    if (n >= 1) ws.send(established('s-9', 'rt-9', false)); // the first connection hears nothing
  });
  const c = mockClient({ url: server.url, connectTimeoutMs: 200, initialDelayMs: 10, maxDelayMs: 20 });
  const log = record(c);
  const t0 = Date.now();
  const info = await c.connect();
  assert.ok(Date.now() - t0 >= 190);
  assert.equal(info.sessionId, 's-9');
  assert.deepEqual(log.of('close').map((e) => [e.code, e.reason]), [[1006, 'connect timeout']]);
  assert.equal(server.connections.length, 2);
  await c.close();
});

test('a listener that throws does not stop delivery; it is reported as an error event', TIMEOUT, async () => {
  const server = await scriptedServer((n, ws) => {
    ws.send(established('s-1', 'rt-1', false));
    ws.on('message', (m) => {
      const msg = JSON.parse(m);
      ws.send(frame('pong', 1, { reply_to: msg.id }));
    });
  });
  const c = mockClient({ url: server.url });
  const errors = [];
  c.on('error', (e) => errors.push(e));
  c.on('event', () => { throw new Error('listener bug'); });
  await c.connect();
  const pong = await c.request('ping');
  assert.equal(pong.type, 'pong');
  assert.ok(errors.length >= 2 && errors.every((e) => e.message === 'listener bug' && e.source === 'listener'));
  assert.equal(server.connections[0].received[0].type, 'ping');
  assert.deepEqual(server.connections[0].received[0].payload, {});
  const closed = [];
  c.on('closed', (e) => closed.push(e));
  await c.close();
  await c.close(); // a second close() is a no-op
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(c.state, 'closed');
  assert.deepEqual(closed.map((e) => e.terminalReason), ['client_closed'], 'closed is emitted once');
});

test('request() matches replies by reply_to when the server answers in reverse order', TIMEOUT, async () => {
  const server = await scriptedServer((n, ws) => {
    ws.send(established('s-1', 'rt-1', false));
    const got = [];
    let eventId = 0;
    ws.on('message', (m) => {
      got.push(JSON.parse(m));
      if (got.length < 4) return;
      for (const msg of got.reverse()) {
        if (msg.type === 'bad') {
          ws.send(frame('error', ++eventId, { reply_to: msg.id, data: { code: 'unknown_type', message: 'no' } }));
        } else {
          ws.send(frame(`${msg.type}_reply`, ++eventId, { reply_to: msg.id, thread_id: msg.thread_id ?? null, data: { echo: msg.payload } }));
        }
      }
      ws.send(frame('stray', ++eventId, { reply_to: 'nobody-asked' }));
    });
  });
  const c = mockClient({ url: server.url });
  const log = record(c);
  await c.connect();
  const results = await Promise.allSettled([
    c.request('a', { n: 1 }),
    c.request('b', { n: 2 }, { threadId: 't-1' }),
    c.request('bad'),
    c.request('c', { n: 3 }, { id: 'fixed-id' }),
  ]);
  assert.equal(results[0].value.type, 'a_reply');
  assert.deepEqual(results[0].value.data.echo, { n: 1 });
  assert.equal(results[1].value.type, 'b_reply');
  assert.equal(results[1].value.thread_id, 't-1');
  assert.equal(results[2].status, 'rejected');
  assert.equal(results[2].reason.code, 'unknown_type');
  assert.equal(results[3].value.type, 'c_reply');
  assert.equal(results[3].value.reply_to, 'fixed-id');
  const sent = server.connections[0].received;
  results.forEach((r, i) => assert.equal((r.value ?? r.reason.frame).reply_to, sent[i].id));
  await waitFor(() => log.of('publish').some((f) => f.type === 'stray'), { what: 'the stray frame' });
  await c.close();
});

test('router-client.d.ts declares every export and every public member', TIMEOUT, async () => {
  const fs = await import('node:fs');
  const dts = fs.readFileSync(new URL('../router-client.d.ts', import.meta.url), 'utf8');
  const mod = await import('../router-client.js');
  for (const name of Object.keys(mod)) {
    if (name === 'default') { assert.match(dts, /export default RouterClient;/); continue; }
    assert.match(dts, new RegExp(`export (const|function|class) ${name}\\b`), `${name} is declared`);
  }
  const classBlock = (name) => {
    const start = dts.indexOf(`export class ${name}`);
    return dts.slice(start, dts.indexOf('\n}\n', start));
  };
  const publicMembers = (obj) => Object.getOwnPropertyNames(obj).filter((n) => n !== 'constructor' && !n.startsWith('_'));
  // Every class RouterClient is built from, up to Object.prototype.
  const inherited = (proto) => (proto && proto !== Object.prototype ? [...publicMembers(proto), ...inherited(Object.getPrototypeOf(proto))] : []);
  const c = new mod.RouterClient({ url: 'ws://h/ws', getToken: () => 't', WebSocket });
  for (const name of [...inherited(mod.RouterClient.prototype), ...publicMembers(c)]) {
    assert.match(classBlock('RouterClient'), new RegExp(`\\b${name}[?(<:]`), `RouterClient.${name} is declared`);
  }
  const run = new mod.AgentRun(c, 'id', 'demo', null);
  for (const name of [...publicMembers(mod.AgentRun.prototype), ...publicMembers(run)]) {
    assert.match(classBlock('AgentRun'), new RegExp(`\\b${name}[?(<:]`), `AgentRun.${name} is declared`);
  }
});

test('package.json ships every module of the client, and only those', TIMEOUT, async () => {
  const fs = await import('node:fs');
  const dir = new URL('../', import.meta.url);
  const pkg = JSON.parse(fs.readFileSync(new URL('package.json', dir), 'utf8'));
  const modules = fs.readdirSync(dir).filter((f) => f.endsWith('.js')).sort();
  assert.deepEqual(pkg.files.filter((f) => f.endsWith('.js')).sort(), modules);
  assert.equal(pkg.main, 'router-client.js');
});
