// client-options.js: the options of RouterClient, their defaults, and their checks.

export const DEFAULTS = Object.freeze({
  initialDelayMs: 500,
  maxDelayMs: 20000,
  requestTimeoutMs: 10000,
  connectTimeoutMs: 10000,
  refreshBeforeExpiryMs: 30000,
  stableConnectionMs: 5000,
  maxReconnectAttempts: Infinity,
  closeTimeoutMs: 5000,
});

/**
 * The checked options of a RouterClient: {url, getToken, WebSocket, timing, random}, where
 * `timing` holds every key of DEFAULTS. Throws a TypeError naming the first bad option.
 */
export function readClientOptions(options) {
  if (!options || typeof options.url !== 'string') throw new TypeError('options.url (ws:// or wss:// URL of /ws) is required');
  const u = new URL(options.url);
  if (!['ws:', 'wss:', 'http:', 'https:'].includes(u.protocol)) throw new TypeError(`unsupported URL scheme ${u.protocol}`);
  if (typeof options.getToken !== 'function') throw new TypeError('options.getToken (a function returning the JWT) is required');
  const WebSocket = options.WebSocket ?? globalThis.WebSocket;
  if (typeof WebSocket !== 'function') {
    throw new TypeError('no WebSocket implementation: pass options.WebSocket (in Node.js e.g. the `ws` package)');
  }
  const timing = { ...DEFAULTS };
  for (const key of Object.keys(DEFAULTS)) {
    const v = options[key];
    if (v === undefined) continue;
    if (typeof v !== 'number' || Number.isNaN(v) || v < 0) throw new TypeError(`options.${key} must be a number >= 0`);
    timing[key] = v;
  }
  if (timing.maxDelayMs < timing.initialDelayMs) timing.maxDelayMs = timing.initialDelayMs;
  return {
    url: options.url,
    getToken: options.getToken,
    WebSocket,
    timing,
    random: typeof options.random === 'function' ? options.random : Math.random,
  };
}

/** The longest delay setTimeout takes (2^31 - 1 ms); longer timeouts are cut to it. */
export const MAX_TIMER_MS = 2147483647;
