// reconnect-policy.js: what the client does after a close, and how long it waits first.
//
// The router's close codes and their advice live in protocol/close_codes.hpp (and the router's
// README, "Close codes"); the table below is the client's side of it.

import { DEFAULTS } from './client-options.js';

// Codes after which the client stops for good, with the `terminalReason` it reports: the
// router's "do not reconnect as is" codes, and the RFC 6455 protocol violations (a reconnect
// would repeat them).
const TERMINAL_REASONS = {
  1002: 'protocol_error',
  1003: 'unsupported_data',
  1007: 'invalid_payload',
  1008: 'policy_violation',
  1009: 'message_too_big',
  1010: 'extension_required',
  4503: 'too_many_connections',
  4510: 'protocol_abuse',
  4511: 'disconnected_by_backend',
  // The session lives on in another connection (a resume took it over): reconnecting here
  // would take it back, and the two would chase each other.
  4512: 'session_moved',
};

/**
 * What the client does after the server closed a connection with `code`.
 * Returns {action, reason}: action is 'reconnect', 'reconnect_slow' (4029: rate limited),
 * 'refresh_token' (4501: reconnect with a fresh token from getToken() and resume) or 'terminal'.
 */
export function closePolicy(code) {
  if (code === 4501) return { action: 'refresh_token', reason: 'token_expired' };
  if (code === 4029) return { action: 'reconnect_slow', reason: 'rate_limited' };
  if (Object.prototype.hasOwnProperty.call(TERMINAL_REASONS, code)) {
    return { action: 'terminal', reason: TERMINAL_REASONS[code] };
  }
  if (code >= 4500 && code <= 4999) return { action: 'terminal', reason: 'do_not_reconnect' };
  // 1000 from the server (not asked for by the application), 1001 going away, 1005 no status,
  // 1006 abnormal (no close frame: network loss, server killed), 1011 internal error,
  // 1012/1013/1014 restart/try again later/bad gateway, 1015 TLS, 4000-4499, 3000-3999 and
  // anything unknown: reconnect with backoff.
  return { action: 'reconnect', reason: 'reconnect' };
}

/**
 * Full-jitter exponential backoff: a delay drawn uniformly from
 * [0, min(maxDelayMs, initialDelayMs * 2^attempt)] (attempt counts from 0).
 * With `slow` (after 4029) the delay is drawn from [maxDelayMs / 2, maxDelayMs] instead.
 */
export function backoffDelay(attempt, options = {}, random = Math.random) {
  const initial = options.initialDelayMs ?? DEFAULTS.initialDelayMs;
  const max = Math.max(options.maxDelayMs ?? DEFAULTS.maxDelayMs, 0);
  if (options.slow) return Math.round(max / 2 + random() * (max / 2));
  const cap = Math.min(max, initial * Math.pow(2, Math.min(Math.max(attempt, 0), 30)));
  return Math.round(random() * cap);
}
