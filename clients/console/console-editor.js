// console-editor.js: the message editor: a template per client message type, sent as JSON
// (checked to be an object with a type) or as the text it is.
import { $, showError, errorText } from './console-dom.js';
import { runningRunId } from './console-runs.js';
import { ui } from './console-state.js';

let messages = 0; // numbers the ids of the templates

function template(type) {
  const id = `console-${++messages}`;
  const thread = ui.lastThreadId ?? 't-…';
  switch (type) {
    case 'ping': return { type, id };
    case 'create_thread': return { type, id, payload: { title: 'A thread from the console' } };
    case 'list_threads': return { type, id, payload: { limit: 50 } };
    case 'get_thread_history': return { type, id, thread_id: thread, payload: { limit: 200 } };
    case 'user_message': return ui.lastThreadId ? { type, id, thread_id: thread, payload: { text: 'Hello from the console' } } : { type, id, payload: { text: 'Hello from the console' } };
    case 'start_agent': return { type, id, payload: { agent: 'demo', input: { question: 'hello' } } };
    case 'stop_agent': return { type, id, payload: { run_id: runningRunId() } };
    default: return { type, id };
  }
}

/** Puts the chosen type's template in the editor. */
export function useTemplate() {
  $('message').value = JSON.stringify(template($('template').value), null, 2);
  showError($('send-error'), '');
}

/** Sends the editor's text: as JSON (an object with a type) unless "send the text as is" is ticked. */
export function sendMessage(ev) {
  if (ev) ev.preventDefault();
  showError($('send-error'), '');
  const client = ui.client;
  if (!client || client.state === 'closed') { showError($('send-error'), 'Connect first.'); return; }
  const text = $('message').value;
  let message = text;
  if (!$('send-raw').checked) {
    try {
      message = JSON.parse(text);
    } catch (err) {
      showError($('send-error'), `Not JSON: ${err.message}. (Tick “send the text as is” to send it anyway.)`);
      return;
    }
    if (!message || typeof message !== 'object' || Array.isArray(message) || typeof message.type !== 'string') {
      showError($('send-error'), 'A message is a JSON object with a string "type". (Tick “send the text as is” to send it anyway.)');
      return;
    }
  }
  try {
    const sentNow = client.send(message);
    if (!sentNow) showError($('send-error'), 'Not connected right now: the message is queued and goes out after the next connection_established.');
  } catch (err) {
    showError($('send-error'), errorText(err));
  }
}
