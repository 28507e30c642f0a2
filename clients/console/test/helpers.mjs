// Test helpers: the real router binary as a child process, tokens, Debian's Chromium driven by
// playwright-core, an in-page harness around router-client.js, and a TCP proxy the test can
// cut (a dropped connection without a close frame, which the router keeps for a resume).
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after } from 'node:test';
import { chromium } from 'playwright-core';

export const SECRET = 'console-test-secret-0123456789abcdef';
export const API_KEY = 'console-test-api-key';
export const DEV_API_KEY = 'dev-only-api-key-change-me';

const here = path.dirname(fileURLToPath(import.meta.url));
/** clients/console */
export const CONSOLE_DIR = path.resolve(here, '..');
/** clients/: served with --router.console-dir, so the tests see the files on disk. */
export const CLIENTS_DIR = path.resolve(here, '../..');
export const ARTIFACTS = path.join(here, 'artifacts');

export const CHROMIUM = process.env.ER_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

export function routerBinary() {
  const file = process.env.ER_ROUTER_BINARY
    ? path.resolve(process.env.ER_ROUTER_BINARY)
    : path.resolve(CONSOLE_DIR, '../../build/event-router');
  if (!fs.existsSync(file)) {
    throw new Error(`no router binary at ${file}: build it, or set ER_ROUTER_BINARY`);
  }
  return file;
}

function b64url(value) {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

/** An HS256 JWT for `sub`, `expIn` seconds from now, signed with the test secret. */
export function mintToken(sub, { expIn = 3600, secret = SECRET } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url({ alg: 'HS256', typ: 'JWT' });
  const payload = b64url({ sub, iat: now, exp: now + expIn });
  const sig = crypto.createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${sig}`;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` (sync or async) until it returns something truthy, which is returned. */
export async function waitFor(fn, { timeoutMs = 5000, intervalMs = 20, what = 'a condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

// ---- routers -----------------------------------------------------------------------------

const running = new Set();
process.on('exit', () => {
  for (const proc of running) {
    try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ }
  }
});
// A test that failed before stopping its routers and proxies would keep this file's process
// alive (their pipes and sockets hold the event loop): the suite would hang instead of
// reporting the failure.
const openProxies = new Set();
after(async () => {
  await Promise.all([
    ...Array.from(running, (proc) => new Promise((resolve) => {
      proc.once('exit', resolve);
      try { process.kill(proc.pid, 'SIGKILL'); } catch { resolve(); }
    })),
    ...Array.from(openProxies, (proxy) => proxy.close()),
  ]);
});

/**
 * Starts the router and resolves once it listens. `dev: true` keeps the shipped dev secret and
 * API key (POST /api/v1/dev/token works); otherwise the test secret and key are set.
 * Returns {url, port, base, pid, apiKey, kill(), stop(), exited, output()}.
 */
export async function startRouter({ port = 0, dev = false, args = [] } = {}) {
  const argv = [
    `--router.port=${port}`,
    '--router.store-path=:memory:',
    `--router.console-dir=${CLIENTS_DIR}`,
    '--router.io-threads=1',
    '--router.drain-timeout-ms=200',
    ...(dev ? [] : [`--router.jwt-secret=${SECRET}`, `--router.api-key=${API_KEY}`]),
    ...args,
  ];
  const proc = spawn(routerBinary(), argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  let out = '';
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => { running.delete(proc); resolve({ code, signal }); });
  });
  const collect = (d) => { if (out.length < 65536) out += d; };
  proc.stderr.on('data', collect);
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ }
      reject(new Error(`the router did not start within 10 s: ${out}`));
    }, 10000);
    proc.stdout.on('data', (d) => {
      collect(d);
      const m = /listening on (ws:\/\/\S+)/.exec(out);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`the router exited (${code ?? signal}) before listening: ${out}`));
    });
  });
  const u = new URL(url);
  return {
    url,
    port: Number(u.port),
    base: `http://${u.host}`,
    pid: proc.pid,
    apiKey: dev ? DEV_API_KEY : API_KEY,
    exited,
    output: () => out,
    /** SIGKILL: the router vanishes without a close frame (clients see 1006). */
    async kill() {
      if (!running.has(proc)) return exited;
      try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ }
      return exited;
    },
    /** SIGTERM (drain), SIGKILL after 5 s. */
    async stop() {
      if (!running.has(proc)) return exited;
      try { process.kill(proc.pid, 'SIGTERM'); } catch { /* gone */ }
      const t = setTimeout(() => { try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ } }, 5000);
      const result = await exited;
      clearTimeout(t);
      return result;
    },
  };
}

/** Starts a router on `port`, retrying while the port is still taken by the previous one. */
export async function restartRouterOn(port, options = {}) {
  const deadline = Date.now() + 5000;
  for (;;) {
    try {
      return await startRouter({ ...options, port });
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(100);
    }
  }
}

export async function httpPost(base, pathname, body, key) {
  const res = await fetch(base + pathname, {
    method: 'POST',
    headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text };
}

export async function healthz(base) {
  return (await fetch(`${base}/healthz`)).json();
}

// ---- a TCP proxy the test can cut --------------------------------------------------------

/**
 * A TCP proxy on a free loopback port to 127.0.0.1:`targetPort`. cut() resets every
 * connection through it at once (no close frame can pass: the router sees a reset and keeps
 * the session for a resume); with `holdMs` the connections that arrive during that time wait
 * before they reach the router (so the router produces events while the client is away).
 */
export async function startProxy(targetPort) {
  const pairs = new Set();
  let holdUntil = 0;
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted++;
    client.on('error', () => {});
    client.pause();
    const join = () => {
      if (client.destroyed) return;
      const upstream = net.connect(targetPort, '127.0.0.1');
      const pair = { client, upstream };
      pairs.add(pair);
      upstream.on('error', () => {});
      const drop = () => {
        pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('close', drop);
      upstream.on('close', drop);
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    };
    const wait = holdUntil - Date.now();
    if (wait > 0) setTimeout(join, wait); else join();
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  const proxy = {
    port,
    url: `ws://127.0.0.1:${port}/ws`,
    accepted: () => accepted,
    open: () => pairs.size,
    cut({ holdMs = 0 } = {}) {
      holdUntil = Date.now() + holdMs;
      for (const { client, upstream } of Array.from(pairs)) {
        client.resetAndDestroy();
        upstream.resetAndDestroy();
      }
      pairs.clear();
    },
    /** Stops forwarding in both directions and keeps the sockets open: nothing is answered. */
    stall() {
      for (const { client, upstream } of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
      }
    },
    close() {
      openProxies.delete(proxy);
      for (const { client, upstream } of Array.from(pairs)) { client.destroy(); upstream.destroy(); }
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
  openProxies.add(proxy);
  return proxy;
}

// ---- the browser -------------------------------------------------------------------------

/**
 * Debian's Chromium, never a downloaded one. Playwright gives each launch() a fresh temporary
 * user-data dir (removed on close); each newContext() is a fresh profile on top of it.
 */
export async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (apt-get install chromium)`);
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

/**
 * Collects what a page reports: console messages of type error/warning, page errors (uncaught
 * exceptions), and CSP violations (securitypolicyviolation events, recorded by an init script).
 */
export function watchPage(page) {
  const problems = [];
  const messages = [];
  page.on('console', (m) => {
    messages.push({ type: m.type(), text: m.text() });
    if (m.type() === 'error' || m.type() === 'warning' || /Content Security Policy|Refused to/i.test(m.text())) {
      problems.push(`console.${m.type()}: ${m.text()} ${JSON.stringify(m.location())}`);
    }
  });
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  return {
    problems,
    messages,
    async cspViolations() {
      return page.evaluate(() => window.__cspViolations ?? []);
    },
  };
}

/** Records securitypolicyviolation events from the very start of every document of `context`. */
export async function recordCspViolations(context) {
  await context.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || '(inline)'} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
}

/** Polls `fn(arg)` inside the page (page.evaluate) until it returns something truthy. */
export async function waitInPage(page, fn, arg, { timeoutMs = 5000, what = 'a condition in the page' } = {}) {
  return waitFor(() => page.evaluate(fn, arg), { timeoutMs, intervalMs: 25, what });
}

export async function screenshot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, name);
  await page.evaluate(() => window.scrollTo(0, 0)); // the sticky status bar at the top
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/**
 * A page of the router's origin with router-client.js loaded as an ES module (from
 * GET /router-client.js, under the router's CSP) and a harness around one RouterClient:
 * window.rec keeps the client's events, the frames it delivered, and its getToken() calls.
 * The raw WebSocket frames are recorded on the Node side (per socket) from the DevTools protocol.
 * getToken() calls `token(user, callIndex)` in Node (default: an hour-long test token).
 */
export async function openClientPage(browser, base, { user, url, token, options = {} } = {}) {
  const context = await browser.newContext();
  await recordCspViolations(context);
  // The harness document is the client's JS file: Chromium asks for /favicon.ico, which the
  // router answers 404 (the console page itself declares an empty icon instead).
  await context.route('**/favicon.ico', (route) => route.fulfill({ status: 204, body: '' }));
  const page = await context.newPage();
  const watch = watchPage(page);
  const wire = { sockets: [], frames: [] };
  page.on('websocket', (ws) => {
    const socket = { index: wire.sockets.length, url: ws.url(), closed: false, frames: [] };
    wire.sockets.push(socket);
    ws.on('framereceived', (f) => {
      const entry = { socket: socket.index, payload: f.payload, at: Date.now() };
      socket.frames.push(entry);
      wire.frames.push(entry);
    });
    ws.on('close', () => { socket.closed = true; });
  });
  let calls = 0;
  await page.exposeFunction('nodeToken', () => (token ? token(user, calls++) : mintToken(user)));
  // A document of the router's origin (the client module itself, shown as text), so the
  // import below is same-origin under the router's CSP, and no console code runs beside it.
  const res = await page.goto(`${base}/router-client.js`);
  if (!res.ok()) throw new Error(`GET /router-client.js: ${res.status()}`);
  await page.evaluate(async ({ url, options }) => {
    const mod = await import('/router-client.js');
    const rec = { events: [], frames: [], tokenCalls: 0 };
    window.rec = rec;
    const client = new mod.RouterClient({
      url,
      getToken: async () => { rec.tokenCalls++; return window.nodeToken(); },
      initialDelayMs: 100,
      maxDelayMs: 800,
      requestTimeoutMs: 5000,
      ...options,
    });
    window.client = client;
    const plain = (type, ev) => {
      if (ev instanceof Error) return { message: ev.message, source: ev.source ?? null };
      if (type === 'gap') return { ...ev, lostRuns: ev.lostRuns.map((r) => r.runId) };
      return { ...ev };
    };
    for (const type of ['state', 'connecting', 'established', 'reconnecting', 'close', 'closed', 'gap', 'error', 'tokenRefresh']) {
      client.on(type, (ev) => rec.events.push({ type, ev: plain(type, ev), at: Date.now() }));
    }
    client.on('event', (frame) => rec.frames.push(frame));
    window.connected = client.connect().then(
      (info) => ({ ok: true, info }),
      (err) => ({ ok: false, code: err.code, terminalReason: err.terminalReason ?? null, message: err.message }),
    );
  }, { url: url ?? base.replace(/^http/, 'ws') + '/ws', options });
  return {
    page,
    context,
    watch,
    wire,
    /** The events of one type the client emitted so far (payloads). */
    async events(type) {
      return page.evaluate((t) => window.rec.events.filter((e) => e.type === t).map((e) => e.ev), type);
    },
    async rec() { return page.evaluate(() => window.rec); },
    async connected() { return page.evaluate(() => window.connected); },
    async state() { return page.evaluate(() => window.client.state); },
    /** Waits until the client has emitted `count` events of `type`; returns them. */
    async waitEvents(type, count = 1, timeoutMs = 5000) {
      return waitInPage(page, ({ type, count }) => {
        const list = window.rec.events.filter((e) => e.type === type).map((e) => e.ev);
        return list.length >= count ? list : null;
      }, { type, count }, { timeoutMs, what: `${count} '${type}' event(s)` });
    },
    /** Every raw frame the page received, parsed. */
    wireFrames() { return wire.frames.map((f) => ({ socket: f.socket, frame: JSON.parse(f.payload) })); },
    async close() { await context.close(); },
  };
}
