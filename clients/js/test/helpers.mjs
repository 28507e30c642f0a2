// Test helpers: start the real router binary, mint tokens, wait for client events.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { RouterClient } from '../router-client.js';

export { WebSocket };

export const SECRET = 'js-client-test-secret-0123456789abcdef';
export const API_KEY = 'js-client-test-api-key';

const here = path.dirname(fileURLToPath(import.meta.url));

export function routerBinary() {
  const fromEnv = process.env.ER_ROUTER_BINARY;
  if (fromEnv) {
    if (!fs.existsSync(fromEnv)) throw new Error(`ER_ROUTER_BINARY=${fromEnv} does not exist`);
    return fromEnv;
  }
  const built = path.resolve(here, '../../../build/event-router');
  if (fs.existsSync(built)) return built;
  throw new Error('set ER_ROUTER_BINARY to the event-router binary (e.g. build/event-router)');
}

function b64url(value) {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

/** An HS256 JWT for `sub` signed with `secret`; `expIn` seconds from now (may be negative). */
export function mintToken(sub, { expIn = 3600, secret = SECRET, extra = {} } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url({ alg: 'HS256', typ: 'JWT' });
  const payload = b64url({ sub, iat: now, exp: now + expIn, ...extra });
  const sig = crypto.createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${sig}`;
}

const running = new Set();
process.on('exit', () => {
  for (const proc of running) {
    try { process.kill(proc.pid, 'SIGKILL'); } catch {}
  }
});

/**
 * Starts the router as a child process and resolves once it listens.
 * Returns {url, port, base, pid, stderr(), signal(sig), stop(), kill(), exited}.
 */
export async function startRouter({ port = 0, args = [] } = {}) {
  const argv = [
    `--router.port=${port}`,
    '--router.store-path=:memory:',
    `--router.jwt-secret=${SECRET}`,
    `--router.api-key=${API_KEY}`,
    '--router.resume-window-ms=30000',
    '--router.drain-timeout-ms=300',
    '--router.io-threads=1',
    ...args,
  ];
  const proc = spawn(routerBinary(), argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  let stdout = '';
  let stderr = '';
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => { running.delete(proc); resolve({ code, signal }); });
  });
  proc.stderr.on('data', (d) => { if (stderr.length < 65536) stderr += d; });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      try { process.kill(proc.pid, 'SIGKILL'); } catch {}
      reject(new Error(`router did not start within 10 s: ${stdout} ${stderr}`));
    }, 10000);
    proc.stdout.on('data', (d) => {
      stdout += d;
      const m = /listening on (ws:\/\/\S+)/.exec(stdout);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`router exited (${code ?? signal}) before listening: ${stderr}`));
    });
  });
  const u = new URL(url);
  const router = {
    url,
    port: Number(u.port),
    base: `http://${u.host}`,
    pid: proc.pid,
    exited,
    stderr: () => stderr,
    signal(sig) { try { process.kill(proc.pid, sig); } catch {} },
    /** SIGSTOP, then waits until every thread of the router is stopped (Linux /proc). */
    async pause() {
      router.signal('SIGSTOP');
      await waitFor(() => {
        try {
          const tasks = fs.readdirSync(`/proc/${proc.pid}/task`);
          return tasks.every((t) => /^\d+ \(.*\) [tT] /.test(fs.readFileSync(`/proc/${proc.pid}/task/${t}/stat`, 'utf8')));
        } catch {
          return false;
        }
      }, { timeoutMs: 5000, intervalMs: 2, what: 'the router to stop' });
    },
    resume() { router.signal('SIGCONT'); },
    /** SIGKILL: the server vanishes without close frames (clients see 1006). */
    async kill() {
      router.signal('SIGCONT');
      router.signal('SIGKILL');
      return exited;
    },
    /** SIGTERM (the router drains, closing clients with 1001); SIGKILL after 5 s. */
    async stop() {
      if (!running.has(proc)) return exited;
      router.signal('SIGCONT');
      router.signal('SIGTERM');
      const t = setTimeout(() => router.signal('SIGKILL'), 5000);
      const result = await exited;
      clearTimeout(t);
      return result;
    },
  };
  return router;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value (returned); throws after timeoutMs. */
export async function waitFor(fn, { timeoutMs = 5000, intervalMs = 10, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Resolves with the next `type` event of `client` that passes `filter`. */
export function nextEvent(client, type, { timeoutMs = 5000, filter = () => true } = {}) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`no '${type}' event within ${timeoutMs} ms`)); }, timeoutMs);
    const off = client.on(type, (ev) => {
      if (!filter(ev)) return;
      clearTimeout(timer);
      off();
      resolve(ev);
    });
  });
}

const RECORDED = ['state', 'connecting', 'established', 'reconnecting', 'close', 'closed', 'gap', 'event', 'publish', 'error', 'tokenRefresh'];

/** Records every event of the client: log.of(type) lists the payloads of one type. */
export function record(client) {
  const entries = [];
  for (const type of RECORDED) client.on(type, (ev) => entries.push({ type, ev, at: Date.now() }));
  return {
    entries,
    of: (type) => entries.filter((e) => e.type === type).map((e) => e.ev),
    states: () => entries.filter((e) => e.type === 'state').map((e) => e.ev.state),
  };
}

/** A RouterClient on the `ws` package with fast test backoff; `token` may be a function. */
export function makeClient(url, { user = 'alice', token, ...options } = {}) {
  const getToken = typeof token === 'function' ? token : () => token ?? mintToken(user);
  return new RouterClient({
    url,
    WebSocket,
    getToken,
    initialDelayMs: 50,
    maxDelayMs: 400,
    requestTimeoutMs: 5000,
    ...options,
  });
}

export async function httpPost(base, pathname, body, key = API_KEY) {
  const res = await fetch(base + pathname, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch {}
  return { status: res.status, json, text };
}

export async function healthz(base) {
  const res = await fetch(base + '/healthz');
  return res.json();
}

/** Per-test options: a hang fails the test instead of blocking the suite. */
export const TIMEOUT = { timeout: 20000 };
