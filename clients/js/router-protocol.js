// router-protocol.js: what the router's wire protocol fixes (subprotocol router.v1): the frame
// types a run ends with, which types are the router's own, the error the client reports, the
// resume query, and reading a token's claims. No state, no socket.

export const SUBPROTOCOL = 'router.v1';

// The final events of an agent run (DESIGN.md §4): exactly one of them ends every run.
export const FINAL_RUN_EVENTS = Object.freeze(['agent_completed', 'agent_error', 'agent_stopped']);

// Frame types the router itself emits. Anything else is an event published by a backend
// through POST /api/v1/publish (the router refuses these types there).
const ROUTER_TYPES = new Set(['connection_established', 'pong', 'error']);

/** RFC 7230 token: what a subprotocol, and so the `jwt.<token>` carrier, may hold. */
export const SUBPROTOCOL_TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** True when `type` is a backend-published event type (not one of the router's own). */
export function isPublishedType(type) {
  if (typeof type !== 'string') return false;
  if (ROUTER_TYPES.has(type)) return false;
  return !(type.startsWith('agent_') || type.startsWith('tool_') || type.startsWith('thread_'));
}

/** An error reported by the router (`error` frame) or by the client (timeout, closed, ...). */
export class RouterError extends Error {
  constructor(code, message, details = {}) {
    super(message || code);
    this.name = 'RouterError';
    this.code = code;
    if (details.frame !== undefined) this.frame = details.frame;
    if (details.closeCode !== undefined) this.closeCode = details.closeCode;
    if (details.closeReason !== undefined) this.closeReason = details.closeReason;
    if (details.cause !== undefined) this.cause = details.cause;
  }
}

/** The RouterError an `error` frame answers a request with (its data.code and message). */
export function errorOfFrame(frame) {
  const d = frame.data || {};
  return new RouterError(d.code || 'error', d.message, { frame });
}

function base64UrlDecode(text) {
  let b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  while (b64.length % 4) b64 += '=';
  const binary = atob(b64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

/** The claims of a JWT, decoded WITHOUT verifying anything; null when it is not a JWT. */
export function decodeJwtPayload(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const claims = JSON.parse(base64UrlDecode(parts[1]));
    return claims && typeof claims === 'object' && !Array.isArray(claims) ? claims : null;
  } catch {
    return null;
  }
}

/** The token's `exp` in milliseconds since the epoch, or null when it has none. */
export function tokenExpiresAt(token) {
  const claims = decodeJwtPayload(token);
  return claims && typeof claims.exp === 'number' && Number.isFinite(claims.exp) ? claims.exp * 1000 : null;
}

/** `url` with `resume` and `last_event_id` set (other query parameters are kept). */
export function buildUrl(url, resume) {
  const u = new URL(url);
  u.searchParams.delete('resume');
  u.searchParams.delete('last_event_id');
  if (resume && resume.token) {
    u.searchParams.set('resume', resume.token);
    u.searchParams.set('last_event_id', String(resume.lastEventId ?? 0));
  }
  return u.toString();
}
