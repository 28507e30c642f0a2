// console-close-codes.js: every close code of the router's README ("Close codes") and of the
// client's terminal reasons, in words for the status bar and the connection history.

/** code -> [meaning, what happens next]. */
const CLOSE_CODES = {
  1000: ['normal closure', 'The connection was closed on purpose.'],
  1001: ['server going away', 'The router is stopping; the client reconnects with backoff.'],
  1002: ['protocol error', 'A WebSocket protocol violation; the client does not reconnect.'],
  1005: ['no status code', 'The close frame carried no code; the client reconnects.'],
  1006: ['connection lost', 'Closed without a close frame (network loss, router stopped, or the upgrade was refused, e.g. HTTP 401 for a bad token); the client reconnects and resumes the session if the router kept it.'],
  1007: ['invalid UTF-8', 'A text frame was not UTF-8; the client does not reconnect.'],
  1008: ['policy violation', 'The client does not reconnect.'],
  1009: ['message too big', 'A frame was over the router\'s max_message_bytes; the client does not reconnect as is.'],
  1011: ['internal error', 'The connection\'s manager failed; the client reconnects with backoff.'],
  4000: ['closed by the client to reconnect', 'The client replaced its connection (Reconnect now): the session ended, a new one starts.'],
  4008: ['slow consumer', 'The outbound queue passed the router\'s limit and was dropped; the client reconnects with backoff.'],
  4009: ['heartbeat timeout', 'No pong within the router\'s heartbeat timeout; the client reconnects with backoff.'],
  4010: ['state lost', 'The cluster lost this connection\'s state; the client reconnects and should reload.'],
  4029: ['rate limited', 'Too many refused messages in a row; the client reconnects after a long backoff.'],
  4501: ['token expired', 'The token expired (its exp plus the router\'s leeway passed); the client asks for a fresh token, reconnects and resumes the session.'],
  4503: ['too many connections for this user', 'Past the router\'s connections per user the newest closes; the client does not reconnect.'],
  4510: ['protocol abuse', 'The client does not reconnect.'],
  4511: ['disconnected by the backend', 'The backend\'s disconnect API closed this user\'s connections; the client does not reconnect.'],
  4512: ['session resumed on another connection', 'Another connection took this session over; the client does not reconnect.'],
};

/** {code, meaning, advice} for a close code, known or not. */
export function explainClose(code) {
  const known = CLOSE_CODES[code];
  if (known) return { code, meaning: known[0], advice: known[1] };
  if (code >= 4000 && code <= 4499) return { code, meaning: 'closed by the router (reconnect allowed)', advice: 'The client reconnects with backoff.' };
  if (code >= 4500 && code <= 4999) return { code, meaning: 'closed by the router (do not reconnect as is)', advice: 'The client does not reconnect.' };
  if (code >= 3000 && code <= 3999) return { code, meaning: 'closed by the application', advice: 'The client reconnects with backoff.' };
  return { code, meaning: 'unknown close code', advice: 'The client reconnects with backoff.' };
}

/** A client's terminalReason in words. */
export const TERMINAL_TEXT = {
  client_closed: 'closed by you',
  too_many_connections: 'too many connections for this user',
  disconnected_by_backend: 'disconnected by the backend',
  message_too_big: 'message too big',
  protocol_abuse: 'protocol abuse',
  do_not_reconnect: 'the router said not to reconnect',
  max_reconnect_attempts: 'gave up reconnecting',
  protocol_error: 'protocol error',
  invalid_payload: 'invalid payload',
  policy_violation: 'policy violation',
  unsupported_data: 'unsupported data',
  extension_required: 'extension required',
  session_moved: 'the session moved to another connection',
};

/** "<code> <meaning>", with the close frame's reason when it says more. */
export function closeText(code, reason) {
  const c = explainClose(code);
  const extra = reason && !c.meaning.toLowerCase().includes(reason.toLowerCase());
  return `${code} ${c.meaning}${extra ? ` (“${reason}”)` : ''}`;
}
