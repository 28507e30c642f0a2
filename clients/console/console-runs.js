// console-runs.js: the agents form, and one panel per run (built from the run_id of the
// frames, so runs started from the message editor get panels too).
import { RouterError, FINAL_RUN_EVENTS } from '/router-client.js';
import { $, el, clockTime, timeEl, frameTime, compactJson, showError, errorText } from './console-dom.js';
import { ui } from './console-state.js';

const RUN_STATUS_TEXT = {
  running: 'running',
  completed: 'completed',
  error: 'failed (agent_error)',
  stopped: 'stopped',
  lost: 'lost with its session',
};

const runs = new Map(); // run_id -> its panel

function runPanel(runId) {
  let run = runs.get(runId);
  if (run) return run;
  const headingId = `run-h-${runs.size + 1}`;
  const status = el('span', { class: 'run-status', text: RUN_STATUS_TEXT.running });
  const title = el('span', { class: 'run-agent', text: 'agent' });
  const stop = el('button', { type: 'button', class: 'run-stop', 'aria-label': `Stop run ${runId}`, text: 'Stop' });
  const note = el('p', { class: 'run-note', role: 'status' });
  const events = el('ol', { class: 'run-events', 'aria-label': `Events of run ${runId}` });
  const meta = el('p', { class: 'run-meta' });
  const article = el('article', { class: 'run', dataset: { runId, status: 'running' }, 'aria-labelledby': headingId },
    el('header', { class: 'run-header' },
      el('h4', { id: headingId }, title, ' ', el('code', { class: 'run-id', text: runId })),
      status,
      stop),
    meta,
    events,
    note);
  run = { runId, article, status, title, stop, note, events, meta, state: 'running', count: 0 };
  stop.addEventListener('click', () => stopRun(run));
  runs.set(runId, run);
  $('runs-empty').hidden = true;
  $('runs').prepend(article);
  return run;
}

function setRunState(run, state) {
  run.state = state;
  run.article.dataset.status = state;
  run.status.textContent = RUN_STATUS_TEXT[state] ?? state;
  run.stop.hidden = state !== 'running';
}

/** Adds a frame of a run to the run's panel (made on its first frame). */
export function addRunEvent(frame) {
  const run = runPanel(frame.run_id);
  if (run.state !== 'running' && run.state !== 'lost') return; // nothing follows a final event
  const isFinal = FINAL_RUN_EVENTS.includes(frame.type);
  if (frame.type === 'agent_started' && frame.data && typeof frame.data.agent === 'string') run.title.textContent = frame.data.agent;
  if (run.count === 0) {
    const bits = [`started ${clockTime(frameTime(frame))}`];
    if (frame.thread_id) bits.push(`thread ${frame.thread_id}`);
    if (frame.reply_to) bits.push(`request ${frame.reply_to}`);
    run.meta.textContent = bits.join(' · ');
  }
  run.count++;
  const item = el('li', { class: `ev${isFinal ? ' final' : ''}`, dataset: { type: frame.type, eventId: frame.event_id } },
    el('span', { class: 'ev-id', text: `#${frame.event_id}` }), ' ',
    el('span', { class: 'ev-type', text: frame.type }), ' ',
    timeEl(frameTime(frame)), ' ',
    el('code', { class: 'ev-data', text: compactJson(frame.data ?? null) }));
  if (isFinal) item.setAttribute('aria-label', `final event: ${frame.type}`);
  run.events.append(item);
  if (isFinal) {
    setRunState(run, frame.type === 'agent_completed' ? 'completed' : frame.type === 'agent_error' ? 'error' : 'stopped');
    if (frame.type === 'agent_completed' && frame.thread_id) ui.lastThreadId = frame.thread_id;
    if (frame.type === 'agent_completed' && frame.data && frame.data.stored === false) {
      run.note.textContent = 'The result was not stored in the thread: the user\'s storage quota is used up.';
    }
  }
}

async function stopRun(run) {
  if (!ui.client || run.state !== 'running') return;
  run.stop.disabled = true;
  run.note.textContent = 'Stopping…';
  try {
    const final = await ui.client.stopAgent(run.runId);
    run.note.textContent = `Stopped: ${final.type}.`;
  } catch (err) {
    run.note.textContent = err instanceof RouterError && err.code === 'not_found'
      ? 'The router has no such running run on this connection (it ended, or belongs to another session).'
      : `Stop failed: ${errorText(err)}`;
    run.stop.disabled = false;
  }
}

/** Runs still marked running after their session ended: their events can no longer come. */
export function markRunsLost(why) {
  for (const run of runs.values()) {
    if (run.state === 'running') {
      setRunState(run, 'lost');
      run.note.textContent = why;
    }
  }
}

function parseInput(text) {
  const trimmed = text.trim();
  if (trimmed === '') return null;
  try { return JSON.parse(trimmed); } catch { return text; }
}

/** The agents form: starts the agent named, with the input (JSON, or else the text). */
export function startAgent(ev) {
  ev.preventDefault();
  showError($('agent-error'), '');
  const client = ui.client;
  if (!client || client.state === 'closed') { showError($('agent-error'), 'Connect first.'); return; }
  const agent = $('agent-name').value.trim();
  if (!agent) { showError($('agent-error'), 'Name an agent (demo, echo, or one configured on the router).'); return; }
  const threadId = $('agent-thread').value.trim() || undefined;
  let run;
  try {
    run = client.startAgent(agent, parseInput($('agent-input').value), { threadId });
  } catch (err) {
    showError($('agent-error'), errorText(err));
    return;
  }
  run.started.catch((err) => {
    if (ui.client === client) showError($('agent-error'), `${agent} did not start: ${errorText(err)}`);
  });
}

/** The newest running run's id (the last run's, else a placeholder), for the stop_agent template. */
export function runningRunId() {
  for (const run of Array.from(runs.values()).reverse()) if (run.state === 'running') return run.runId;
  const last = Array.from(runs.keys()).pop();
  return last ?? 'r-…';
}
