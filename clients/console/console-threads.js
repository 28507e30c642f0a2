// console-threads.js: the user's threads and the history of one of them.
import { $, el, timeEl, compactJson, showError, errorText } from './console-dom.js';
import { ui } from './console-state.js';

const threadTitles = new Map(); // thread_id -> title, from the last thread_list
/** The history shown: its thread, its oldest message's seq, whether older ones remain. */
const shown = { threadId: null, firstSeq: null, hasMore: false };

/**
 * The list shown: its last thread (the position of the page after it), whether more follow,
 * and the id of the "More threads" request whose answer goes below it.
 */
const listed = { last: null, hasMore: false, moreId: null, asked: 0 };

/** Whether thread `a` comes after thread `b` in the list (most recently updated first). */
function listedAfter(a, b) {
  return a.updated_at_ms < b.updated_at_ms
    || (a.updated_at_ms === b.updated_at_ms && String(a.thread_id) > String(b.thread_id));
}

/**
 * Shows a thread_list frame, each thread with its History and Use for agents buttons: the
 * answer to "More threads" goes below the list shown when it follows it; any other page
 * replaces it. While more threads follow, "More threads" asks for the page after the last one
 * shown.
 */
export function renderThreads(frame) {
  const threads = frame.data && Array.isArray(frame.data.threads) ? frame.data.threads : [];
  const list = $('thread-list');
  const next = frame.reply_to != null && frame.reply_to === listed.moreId && listed.last !== null
    && threads.length > 0 && listedAfter(threads[0], listed.last);
  if (!next) list.replaceChildren();
  if (!next || threads.length > 0) {
    listed.last = threads.length > 0 ? threads[threads.length - 1] : null;
    listed.hasMore = frame.data?.has_more === true;
  }
  $('thread-list-more').hidden = !listed.hasMore;
  $('threads-empty').hidden = list.children.length + threads.length > 0;
  $('threads-empty').textContent = 'No threads yet (user_message and create_thread make them).';
  for (const t of threads) {
    const id = String(t.thread_id ?? '');
    const title = typeof t.title === 'string' && t.title !== '' ? t.title : '(untitled)';
    threadTitles.set(id, title);
    const updated = typeof t.updated_at_ms === 'number' ? new Date(t.updated_at_ms) : null;
    list.append(el('li', { class: 'thread', dataset: { threadId: id } },
      el('div', { class: 'thread-main' },
        el('span', { class: 'thread-title', text: title }), ' ',
        el('code', { class: 'thread-id', text: id })),
      el('div', { class: 'thread-meta' },
        `${t.message_count ?? 0} message${t.message_count === 1 ? '' : 's'}`,
        updated ? ` · updated ${updated.toLocaleString()}` : ''),
      el('div', { class: 'buttons' },
        el('button', { type: 'button', class: 'thread-history-button', 'aria-label': `Show the history of ${title}`, text: 'History', onclick: () => loadHistory(id) }),
        el('button', { type: 'button', class: 'thread-use-button', 'aria-label': `Run agents on ${title}`, text: 'Use for agents', onclick: () => { $('agent-thread').value = id; $('agent-name').focus(); } }))));
  }
  if (threads.length > 0 && !ui.lastThreadId) ui.lastThreadId = String(threads[0].thread_id);
}

function messageContent(content) {
  if (content && typeof content === 'object' && typeof content.text === 'string') return content.text;
  if (typeof content === 'string') return content;
  return compactJson(content, 2000);
}

/**
 * Shows a thread_history frame: a page older than the one shown, of the same thread, goes
 * above it; any other page replaces it. While older messages remain, "Older messages" asks for
 * the page before.
 */
export function renderHistory(frame) {
  const messages = frame.data && Array.isArray(frame.data.messages) ? frame.data.messages : [];
  const id = frame.thread_id ?? '';
  const title = threadTitles.get(id);
  $('thread-history-h').textContent = `History of ${title ? `“${title}” ` : ''}${id}`;
  const list = $('thread-history');
  const older = shown.threadId === id && shown.firstSeq !== null && messages.length > 0
    && messages[messages.length - 1].seq < shown.firstSeq;
  if (!older) list.replaceChildren();
  const items = messages.map((m) => {
    const at = typeof m.created_at_ms === 'number' ? new Date(m.created_at_ms) : null;
    return el('li', { class: `msg msg-${m.role === 'agent' ? 'agent' : 'user'}`, dataset: { role: String(m.role), seq: String(m.seq) } },
      el('div', { class: 'msg-head' },
        el('span', { class: 'msg-role', text: String(m.role) }), ' ',
        el('span', { class: 'msg-seq', text: `#${m.seq}` }),
        at ? ' ' : null, at ? timeEl(at) : null,
        m.run_id ? ' ' : null, m.run_id ? el('code', { class: 'msg-run', text: String(m.run_id) }) : null),
      el('p', { class: 'msg-content', text: messageContent(m.content) }));
  });
  list.prepend(...items);
  if (!older || messages.length > 0) {
    shown.threadId = id;
    shown.firstSeq = messages.length > 0 ? messages[0].seq : null;
    shown.hasMore = frame.data?.has_more === true;
  }
  $('thread-history-empty').hidden = list.children.length > 0;
  $('thread-history-empty').textContent = 'This thread has no messages.';
  $('thread-history-older').hidden = !shown.hasMore;
}

/** Asks for the page before the oldest message shown. */
export async function loadOlderHistory() {
  showError($('threads-error'), '');
  if (!ui.client || ui.client.state === 'closed') { showError($('threads-error'), 'Connect first.'); return; }
  if (!shown.threadId || shown.firstSeq === null) return;
  try {
    await ui.client.getThreadHistory(shown.threadId, { beforeSeq: shown.firstSeq });
  } catch (err) {
    showError($('threads-error'), `get_thread_history failed: ${errorText(err)}`);
  }
}

/** Asks for the page after the last thread shown. */
export async function loadMoreThreads() {
  showError($('threads-error'), '');
  if (!ui.client || ui.client.state === 'closed') { showError($('threads-error'), 'Connect first.'); return; }
  if (listed.last === null) return;
  try {
    listed.moreId = `more-threads-${++listed.asked}`;
    await ui.client.listThreads({ after: listed.last, id: listed.moreId });
  } catch (err) {
    showError($('threads-error'), `list_threads failed: ${errorText(err)}`);
  }
}

export async function listThreads() {
  showError($('threads-error'), '');
  if (!ui.client || ui.client.state === 'closed') { showError($('threads-error'), 'Connect first.'); return; }
  try {
    await ui.client.listThreads(); // the thread_list frame is rendered by onFrame
  } catch (err) {
    showError($('threads-error'), `list_threads failed: ${errorText(err)}`);
  }
}

export async function loadHistory(threadId) {
  showError($('threads-error'), '');
  if (!ui.client || ui.client.state === 'closed') { showError($('threads-error'), 'Connect first.'); return; }
  try {
    await ui.client.getThreadHistory(threadId);
  } catch (err) {
    showError($('threads-error'), `get_thread_history failed: ${errorText(err)}`);
  }
}
