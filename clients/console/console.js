// The event router's browser console (served by the router at GET /), its entry module.
//
// Plain DOM, no framework, no innerHTML: every text that came from the network or from the
// user goes in with textContent (or as a text node). The page's CSP allows scripts, styles and
// sockets of the router's own origin only, so nothing here is inline.
//
// It uses the project's JavaScript client (/router-client.js) for everything on the socket:
// auth through the subprotocol, reconnect with backoff following the close codes, resume.
// The page's parts are sibling modules, served beside this one:
//   console-connection.js  the client: connect, disconnect, its events on the page
//   console-status.js      the status bar, the session's details, the connection's history
//   console-tokens.js      the token field, demo tokens, getToken()
//   console-runs.js        the agents form and the run panels
//   console-threads.js     threads and their history
//   console-editor.js      the message editor
//   console-frame-log.js   the frame log
//   console-close-codes.js close codes in words
//   console-dom.js         building elements and texts
//   console-state.js       what the modules share: the current client, the last thread
import { $ } from './console-dom.js';
import { connect, disconnect, reconnectNow } from './console-connection.js';
import { setStatus, setButtons, updateSessionInfo } from './console-status.js';
import { describeToken, mintFromForm, probeDevTokens } from './console-tokens.js';
import { startAgent } from './console-runs.js';
import { listThreads, loadMoreThreads, loadOlderHistory } from './console-threads.js';
import { useTemplate, sendMessage } from './console-editor.js';
import { filterLog, clearLog } from './console-frame-log.js';

function init() {
  $('ws-url').value = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host || '127.0.0.1:8080'}/ws`;
  $('connect-form').addEventListener('submit', connect);
  $('disconnect').addEventListener('click', disconnect);
  $('reconnect').addEventListener('click', reconnectNow);
  $('mint-token').addEventListener('click', mintFromForm);
  $('token').addEventListener('input', describeToken);
  $('agent-form').addEventListener('submit', startAgent);
  $('template').addEventListener('change', useTemplate);
  $('use-template').addEventListener('click', useTemplate);
  $('send-form').addEventListener('submit', sendMessage);
  $('message').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) sendMessage(ev);
  });
  $('list-threads').addEventListener('click', listThreads);
  $('thread-list-more').addEventListener('click', loadMoreThreads);
  $('thread-history-older').addEventListener('click', loadOlderHistory);
  $('log-filter').addEventListener('input', filterLog);
  $('log-clear').addEventListener('click', clearLog);
  setInterval(describeToken, 30000);
  useTemplate();
  setStatus('idle', 'Not connected.');
  setButtons();
  updateSessionInfo();
  probeDevTokens();
}

init();
