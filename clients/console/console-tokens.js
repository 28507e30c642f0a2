// console-tokens.js: the token field (decoded here to show its user and expiry), demo tokens
// minted by the router on a development setup, and the client's getToken().
import { decodeJwtPayload, tokenExpiresAt } from '/router-client.js';
import { $, durationText, showError, errorText } from './console-dom.js';
import { addHistory } from './console-status.js';

let devTokens = null; // true: POST /api/v1/dev/token works here; false: it is 404; null: unknown
let minted = null;    // {user, token} of the last demo token the console minted

/** Whether this router mints demo tokens (a development setup). */
export function devTokensAvailable() { return devTokens === true; }

/** Whether the token in the field is a demo token the console minted (and mints anew). */
export function fieldHoldsMintedToken() {
  return devTokens === true && minted !== null && minted.token === $('token').value.trim();
}

/** Shows what the token in the field says (user, expiry), decoded here, not verified. */
export function describeToken() {
  const token = $('token').value.trim();
  const info = $('token-info');
  if (!token) { info.textContent = ''; return; }
  const claims = decodeJwtPayload(token);
  if (!claims) { info.textContent = 'This does not look like a JWT (three base64url parts).'; return; }
  const parts = [];
  if (typeof claims.sub === 'string') parts.push(`user “${claims.sub}”`);
  const exp = tokenExpiresAt(token);
  if (exp !== null) {
    const left = exp - Date.now();
    parts.push(left > 0 ? `expires ${new Date(exp).toISOString()} (in ${durationText(left)})` : `expired ${durationText(-left)} ago`);
  }
  info.textContent = parts.length ? `Token for ${parts.join(', ')} (decoded here, not verified).` : 'A JWT without sub/exp.';
}

async function mintDemoToken(user) {
  const res = await fetch('/api/v1/dev/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user_id: user }),
  });
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  if (res.status === 404) {
    setDevTokens(false);
    throw new Error('this router does not mint demo tokens (it has its own JWT secret): paste a token');
  }
  if (!res.ok || !body || typeof body.token !== 'string') {
    throw new Error(body && body.error ? `the router refused: ${body.error}` : `the router answered HTTP ${res.status}`);
  }
  minted = { user: body.user_id ?? user, token: body.token };
  return body.token;
}

function setDevTokens(available) {
  devTokens = available;
  $('dev-token-row').hidden = !available;
  $('dev-token-help').hidden = !available;
  $('token-hint').hidden = available;
  document.body.dataset.devTokens = available ? 'yes' : 'no';
}

/**
 * Is POST /api/v1/dev/token there? Only on a development setup (the shipped dev secret on a
 * loopback host); with a real secret the path is 404 and the console asks for a token.
 */
export async function probeDevTokens() {
  try {
    const res = await fetch('/api/v1/dev/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user_id: $('user-id').value.trim() || 'alice' }),
    });
    setDevTokens(res.status !== 404);
  } catch {
    setDevTokens(false); // not served by a router (a file, another origin): paste a token
  }
}

/**
 * The client's getToken(): the token in the field. A demo token the console minted is minted
 * anew when it expires within a minute (so a 4501 reconnect gets a fresh one by itself).
 */
export async function getToken() {
  let token = $('token').value.trim();
  if (fieldHoldsMintedToken()) {
    const exp = tokenExpiresAt(token);
    if (exp !== null && exp - Date.now() < 60000) {
      token = await mintDemoToken(minted.user);
      $('token').value = token;
      describeToken();
      addHistory('info', `Minted a fresh demo token for “${minted.user}”.`);
    }
  }
  if (!token) throw new Error('no token: paste a token (or mint a demo one)');
  return token;
}

/** The mint button: a demo token for the user name typed, into the token field. */
export async function mintFromForm() {
  showError($('connect-error'), '');
  const user = $('user-id').value.trim();
  if (!user) { showError($('connect-error'), 'Type a user name first.'); $('user-id').focus(); return; }
  const button = $('mint-token');
  button.disabled = true;
  try {
    $('token').value = await mintDemoToken(user);
    describeToken();
    addHistory('info', `Minted a demo token for “${user}”.`);
    $('connect').focus();
  } catch (err) {
    showError($('connect-error'), `No demo token: ${errorText(err)}`);
  } finally {
    button.disabled = false;
  }
}
