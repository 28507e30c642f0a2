// The console page (GET /) in headless Chromium, against the real router serving the files
// from disk (--router.console-dir): it loads under the router's CSP without errors, mints a
// token, connects, starts agents and shows each run in its own panel, sends messages from the
// editor, reads threads, and explains the connection's state, closes and resumes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  CLIENTS_DIR, startRouter, restartRouterOn, startProxy, launchBrowser, watchPage, recordCspViolations,
  screenshot, mintToken, httpPost, waitFor, sleep,
} from './helpers.mjs';

const TIMEOUT = { timeout: 30000 };
const EXPECTED_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

async function consolePage(base, viewport = { width: 1400, height: 1100 }) {
  const context = await browser.newContext({ viewport });
  await recordCspViolations(context);
  const page = await context.newPage();
  const watch = watchPage(page);
  const res = await page.goto(`${base}/`);
  return { context, page, watch, res };
}

/** The run panels as data: [{runId, status, events: [{type, eventId, final}]}], newest first. */
function runPanels(page) {
  return page.$$eval('#runs .run', (runs) => runs.map((r) => ({
    runId: r.dataset.runId,
    status: r.dataset.status,
    agent: r.querySelector('.run-agent').textContent,
    stopVisible: !r.querySelector('.run-stop').hidden,
    events: Array.from(r.querySelectorAll('.ev')).map((li) => ({
      type: li.dataset.type,
      eventId: Number(li.dataset.eventId),
      final: li.classList.contains('final'),
    })),
  })));
}

/** Every frame of the frame log, parsed, oldest first: [{direction, frame}]. */
function loggedFrames(page) {
  return page.$$eval('#frame-log .log-entry', (entries) => entries.reverse().map((e) => {
    let frame = null;
    try { frame = JSON.parse(e.querySelector('pre').textContent); } catch { /* not JSON */ }
    return { direction: e.dataset.direction, frame };
  }));
}

/** The paths the router serves the console's and the client's files at: /<file name>. */
function servedAssets() {
  const names = (dir, re) => fs.readdirSync(path.join(CLIENTS_DIR, dir)).filter((f) => re.test(f));
  return [...names('console', /\.(js|css)$/), ...names('js', /\.js$/)].map((f) => `/${f}`);
}

const state = (page) => page.getAttribute('#status-badge', 'data-state');
const waitState = (page, s, timeout = 5000) => page.waitForSelector(`#status-badge[data-state="${s}"]`, { timeout });

test('the console loads under the CSP without errors, mints a token, connects and shows runs grouped by run', TIMEOUT, async () => {
  const router = await startRouter({
    dev: true,
    args: ['--agents.demo-steps=3', '--agents.demo-step-delay-ms=120', '--agents.test-agents=1'],
  });
  const { context, page, watch, res } = await consolePage(router.base);
  try {
    // The router serves the page with its CSP: what follows runs under it.
    assert.equal(res.status(), 200);
    assert.equal(res.headers()['content-security-policy'], EXPECTED_CSP);
    // Every file of clients/console and clients/js the page may load, at /<file name>.
    for (const asset of servedAssets()) {
      const r = await fetch(router.base + asset);
      assert.equal(r.status, 200, `GET ${asset}: ${r.status} (a router built before the file existed does not serve it: build it again)`);
      assert.equal(r.headers.get('content-security-policy'), EXPECTED_CSP, asset);
    }
    assert.equal(await page.title(), 'Event router console');
    assert.equal(await state(page), 'idle');
    // Nothing inline (the CSP would refuse it), every control named, headings in order.
    const html = await (await fetch(`${router.base}/`)).text();
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=|\son[a-z]+=|javascript:/i);
    const unnamed = await page.$$eval('input, textarea, select, button', (els) => els
      .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !(e.textContent || '').trim())
      .map((e) => e.id || e.outerHTML));
    assert.deepEqual(unnamed, [], 'every control has a label or a name');
    const headings = await page.$$eval('h1, h2', (hs) => hs.map((h) => h.tagName));
    assert.equal(headings[0], 'H1');
    assert.equal(headings.filter((h) => h === 'H1').length, 1);

    // A development setup: the mint button is there.
    await page.waitForSelector('#dev-token-row:not([hidden])', { timeout: 3000 });
    assert.equal(await page.isHidden('#token-hint'), true);
    await page.fill('#user-id', 'alice');
    await page.click('#mint-token');
    await page.waitForFunction(() => document.getElementById('token').value.split('.').length === 3);
    assert.match(await page.textContent('#token-info'), /user “alice”/);

    await page.click('#connect');
    await waitState(page, 'open');
    assert.match(await page.textContent('#status-text'), /^Open: session s-/);
    assert.equal(await page.textContent('#info-user'), 'alice');
    assert.equal(await page.textContent('#info-recovered'), 'no');
    assert.match(await page.textContent('#conn-history'), /Open: user “alice”/);

    // The demo agent from the form: one panel, its events in order, the final one highlighted.
    await page.click('#start-agent');
    await page.waitForSelector('.run[data-status="completed"]', { timeout: 5000 });
    let panels = await runPanels(page);
    assert.equal(panels.length, 1);
    assert.equal(panels[0].agent, 'demo');
    assert.deepEqual(panels[0].events.map((e) => e.type), [
      'agent_started', 'agent_thinking', 'agent_thinking', 'agent_thinking',
      'tool_executing', 'tool_completed', 'agent_completed',
    ]);
    assert.deepEqual(panels[0].events.map((e) => e.final), [false, false, false, false, false, false, true]);
    assert.equal(panels[0].stopVisible, false, 'no stop button on a finished run');
    assert.equal(await page.isVisible('.run .ev.final[data-type="agent_completed"]'), true);
    const ids = panels[0].events.map((e) => e.eventId);
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'events in order');

    // Two runs at once (the editor's start_agent template, and the form): each panel holds
    // exactly its own run's events.
    await page.selectOption('#template', 'start_agent');
    await page.click('#send-message');
    await page.fill('#agent-name', 'echo');
    await page.fill('#agent-input', '{"say": "hi"}');
    await page.click('#start-agent');
    await waitFor(async () => (await runPanels(page)).filter((p) => p.status === 'completed').length === 3,
      { timeoutMs: 5000, what: 'three completed runs' });
    panels = await runPanels(page);
    const frames = (await loggedFrames(page)).filter((f) => f.direction === 'in').map((f) => f.frame);
    for (const panel of panels) {
      const own = frames.filter((f) => f.run_id === panel.runId);
      assert.deepEqual(panel.events.map((e) => e.eventId), own.map((f) => f.event_id), `panel ${panel.runId} holds its run's events`);
      assert.equal(panel.events.at(-1).type, 'agent_completed');
      assert.equal(panel.events.at(-1).final, true);
    }
    assert.equal(new Set(panels.map((p) => p.runId)).size, 3);
    assert.equal(panels[0].agent, 'echo', 'the newest run first');
    await screenshot(page, 'console-runs.png');

    // Stop: a run that never ends by itself, stopped from its panel.
    await page.fill('#agent-name', 'test-hang');
    await page.fill('#agent-input', '');
    await page.click('#start-agent');
    await page.waitForSelector('.run[data-status="running"] .run-stop:not([hidden])', { timeout: 3000 });
    await page.click('.run[data-status="running"] .run-stop');
    await page.waitForSelector('.run[data-status="stopped"] .ev.final[data-type="agent_stopped"]', { timeout: 3000 });

    // An unknown agent: the error is shown, no panel.
    await page.fill('#agent-name', 'no-such-agent');
    await page.click('#start-agent');
    await page.waitForSelector('#agent-error:not([hidden])', { timeout: 3000 });
    assert.match(await page.textContent('#agent-error'), /unknown_agent/);
    assert.equal((await runPanels(page)).length, 4);

    // The editor: ping, and a malformed message that is refused before sending.
    await page.selectOption('#template', 'ping');
    const pingId = JSON.parse(await page.inputValue('#message')).id;
    await page.click('#send-message');
    await waitFor(async () => (await loggedFrames(page)).some((f) => f.frame && f.frame.type === 'pong' && f.frame.reply_to === pingId),
      { what: 'the pong in the frame log' });
    const before = (await loggedFrames(page)).length;
    await page.fill('#message', '{"type": "ping",');
    await page.click('#send-message');
    await page.waitForSelector('#send-error:not([hidden])');
    assert.match(await page.textContent('#send-error'), /Not JSON/);
    await sleep(100);
    assert.equal((await loggedFrames(page)).length, before, 'nothing sent');
    // ... and the same text sent as is: the router answers invalid_json, the connection stays.
    await page.check('#send-raw');
    await page.click('#send-message');
    await waitFor(async () => (await loggedFrames(page)).some((f) => f.frame && f.frame.type === 'error' && f.frame.data.code === 'invalid_json'),
      { what: 'the invalid_json error' });
    await page.uncheck('#send-raw');
    assert.equal(await state(page), 'open');

    // Threads: a user_message makes a thread; the list and its history show it.
    await page.selectOption('#template', 'user_message');
    await page.fill('#message', JSON.stringify({ type: 'user_message', id: 'um-1', payload: { text: 'Hello <b>from</b> the console' } }));
    await page.click('#send-message');
    await waitFor(async () => (await runPanels(page)).filter((p) => p.status === 'completed').length === 4,
      { timeoutMs: 5000, what: 'the user_message run' });
    await page.click('#list-threads');
    await page.waitForSelector('#thread-list .thread');
    assert.equal(await page.textContent('#thread-list .thread-title'), 'Hello <b>from</b> the console', 'text, never markup');
    assert.equal(await page.$$eval('#thread-list b', (b) => b.length), 0);
    await page.click('#thread-list .thread-history-button');
    await page.waitForSelector('#thread-history .msg-agent');
    const history = await page.$$eval('#thread-history .msg', (ms) => ms.map((m) => ({ role: m.dataset.role, text: m.querySelector('.msg-content').textContent })));
    assert.equal(history[0].role, 'user');
    assert.equal(history[0].text, 'Hello <b>from</b> the console');
    assert.equal(history[1].role, 'agent');
    assert.equal(await page.isHidden('#thread-history-older'), true, 'the whole thread is shown');
    // A page of one message, asked for from the editor: "Older messages" brings the one before
    // it above it.
    const threadId = await page.$eval('#thread-list .thread', (t) => t.dataset.threadId);
    await page.fill('#message', JSON.stringify({ type: 'get_thread_history', id: 'h-1', thread_id: threadId, payload: { limit: 1 } }));
    await page.click('#send-message');
    await waitFor(async () => (await page.$$eval('#thread-history .msg', (ms) => ms.length)) === 1, { what: 'a page of one' });
    assert.equal(await page.isVisible('#thread-history-older'), true);
    await page.click('#thread-history-older');
    await waitFor(async () => (await page.$$eval('#thread-history .msg', (ms) => ms.length)) === 2, { what: 'the older page' });
    assert.deepEqual(await page.$$eval('#thread-history .msg', (ms) => ms.map((m) => m.dataset.seq)), ['1', '2']);
    assert.equal(await page.isHidden('#thread-history-older'), true, 'nothing older remains');
    // A second thread, and a list page of one asked for from the editor: "More threads" brings
    // the one after it below it.
    await page.fill('#message', JSON.stringify({ type: 'create_thread', id: 'ct-2', payload: { title: 'Second' } }));
    await page.click('#send-message');
    await waitFor(async () => (await loggedFrames(page)).some((f) => f.frame && f.frame.type === 'thread_created'),
      { what: 'the second thread' });
    await page.fill('#message', JSON.stringify({ type: 'list_threads', id: 'l-1', payload: { limit: 1 } }));
    await page.click('#send-message');
    await waitFor(async () => (await page.$$eval('#thread-list .thread-title', (ts) => ts.map((t) => t.textContent))).join() === 'Second',
      { what: 'a list page of one' });
    assert.equal(await page.isVisible('#thread-list-more'), true);
    await page.click('#thread-list-more');
    await waitFor(async () => (await page.$$eval('#thread-list .thread', (ts) => ts.length)) === 2, { what: 'the next page' });
    assert.equal(await page.$$eval('#thread-list .thread', (ts) => ts[1].dataset.threadId), threadId);
    assert.equal(await page.$$eval('#thread-list .thread-title', (ts) => ts[1].textContent), 'Hello <b>from</b> the console');
    assert.equal(await page.isHidden('#thread-list-more'), true, 'no more threads');

    // The filter of the frame log.
    await page.fill('#log-filter', 'agent_completed');
    const visibleTypes = await page.$$eval('#frame-log .log-entry:not([hidden])', (es) => es.map((e) => e.dataset.type));
    assert.ok(visibleTypes.length >= 4 && visibleTypes.every((t) => t === 'agent_completed'));
    await page.fill('#log-filter', '');

    await screenshot(page, 'console-threads.png');

    // Disconnect: closed for good with 1000, explained.
    await page.click('#disconnect');
    await waitState(page, 'closed');
    assert.equal(await page.textContent('#status-text'), 'Closed by you: 1000 normal closure (“closed from the console”).');

    assert.deepEqual(watch.problems, [], 'no console errors, warnings or page errors');
    assert.deepEqual(await watch.cspViolations(), [], 'no CSP violations');
  } finally {
    await context.close();
    await router.stop();
  }
});

test('with a real JWT secret the mint button is hidden (the dev path is 404) and a pasted token connects; 4511 is explained and not retried', TIMEOUT, async () => {
  const router = await startRouter();
  assert.equal((await httpPost(router.base, '/api/v1/dev/token', { user_id: 'alice' })).status, 404);
  const { context, page, watch } = await consolePage(router.base);
  try {
    await page.waitForFunction(() => document.body.dataset.devTokens === 'no');
    assert.equal(await page.isHidden('#dev-token-row'), true);
    assert.equal(await page.isHidden('#mint-token'), true);
    assert.equal(await page.isVisible('#token-hint'), true);

    // Connect without a token: asked for one.
    await page.click('#connect');
    assert.match(await page.textContent('#connect-error'), /Paste a token/);

    await page.fill('#token', mintToken('carol'));
    assert.match(await page.textContent('#token-info'), /user “carol”/);
    await page.click('#connect');
    await waitState(page, 'open');
    assert.equal(await page.textContent('#info-user'), 'carol');

    // The backend's disconnect API: 4511, explained, and no reconnect.
    const r = await httpPost(router.base, '/api/v1/users/carol/disconnect', undefined, router.apiKey);
    assert.equal(r.status, 200);
    await waitState(page, 'closed');
    assert.equal(await page.textContent('#status-text'),
      'Closed: 4511 disconnected by the backend. The backend\'s disconnect API closed this user\'s connections; the client does not reconnect.');
    assert.match(await page.textContent('#info-last-close'), /4511/);
    await sleep(1200);
    assert.equal(await state(page), 'closed');
    assert.equal(await page.$$eval('#conn-history [data-kind="connecting"]', (l) => l.length), 1, 'one connection attempt only');
    await screenshot(page, 'console-4511.png');

    // The only complaint of the page: the 404 of the dev-token probe (Chromium logs every failed fetch).
    assert.deepEqual(watch.problems.filter((p) => !/status of 404/.test(p)), []);
    assert.ok(watch.problems.length <= 1);
    assert.deepEqual(await watch.cspViolations(), []);
  } finally {
    await context.close();
    await router.stop();
  }
});

test('the console shows a resume (recovered) after a dropped connection, and reconnecting with its delay after the router restarts', TIMEOUT, async () => {
  let router = await startRouter({ args: ['--agents.demo-steps=10', '--agents.demo-step-delay-ms=100'] });
  const proxy = await startProxy(router.port);
  const { context, page, watch } = await consolePage(router.base);
  try {
    await page.waitForFunction(() => document.body.dataset.devTokens === 'no');
    await page.fill('#token', mintToken('dave'));
    await page.click('.advanced summary');
    await page.fill('#ws-url', proxy.url);
    await page.click('#connect');
    await waitState(page, 'open');
    const session = await page.textContent('#info-session');

    // A demo run, and the TCP connection cut under it: no close frame, the router keeps the
    // session; the console resumes it and the run's panel completes with every event once.
    await page.click('#start-agent');
    await page.waitForSelector('.run .ev[data-type="agent_thinking"]');
    proxy.cut({ holdMs: 300 });
    await waitFor(async () => (await page.textContent('#info-resumes')) === '1', { timeoutMs: 6000, what: 'a resume' });
    await waitState(page, 'open');
    assert.equal(await page.textContent('#info-session'), session, 'the same session');
    assert.equal(await page.textContent('#info-recovered'), 'yes (the session was resumed)');
    assert.match(await page.textContent('#conn-history'), /Resumed session s-[0-9a-f]+: recovered true/);
    assert.match(await page.textContent('#conn-history'), /1006 connection lost, no close frame: will reconnect/);
    await page.waitForSelector('.run[data-status="completed"]', { timeout: 5000 });
    const [panel] = await runPanels(page);
    assert.equal(panel.events.length, 14); // started, 10 thinking, tool_executing, tool_completed, completed
    const ids = panel.events.map((e) => e.eventId);
    ids.forEach((id, i) => assert.equal(id, ids[0] + i, 'every event once, in order'));
    // The frame log marks what the router replayed from its buffer after the resume.
    const replayed = await page.$$eval('#frame-log .log-entry[data-replayed="yes"]', (es) => es.map((e) => e.dataset.type));
    assert.ok(replayed.length >= 1 && replayed.every((t) => t === 'agent_thinking'), `replayed: ${replayed}`);
    await screenshot(page, 'console-resumed.png');

    // The router killed: "reconnecting" with the delay and the close explained, then open again
    // on the new router (a new session: recovered false). First a new client, straight to the router,
    // while the old one's connection answers nothing: its close handshake takes the close timeout,
    // and meanwhile the page says so instead of showing the old session as open.
    await page.fill('#ws-url', router.url);
    proxy.stall();
    await page.click('#connect');
    await waitFor(() => page.evaluate(() => document.getElementById('status-text').textContent
      === 'Closing the previous connection to open a new one…'
      && document.getElementById('info-session').textContent === '—'
      && document.getElementById('connect').disabled), { what: 'the page saying the old connection closes' });
    // Both read in one turn of the page: read one after the other, the replaced client's stale
    // "Open" and the new client's first update (its session still "—") could pass together,
    // and the router would be killed under the new client's first attempt.
    await waitFor(() => page.evaluate((old) => {
      const status = document.getElementById('status-text').textContent;
      const current = document.getElementById('info-session').textContent;
      return status.startsWith('Open') && current.startsWith('s-') && current !== old;
    }, session), { timeoutMs: 10000, what: 'the new connection' });
    await proxy.close();
    await page.evaluate(() => {
      window.__statusTexts = [];
      const node = document.getElementById('status-text');
      new MutationObserver(() => window.__statusTexts.push(node.textContent))
        .observe(node, { childList: true, characterData: true, subtree: true });
    });
    const port = router.port;
    await router.kill();
    await waitFor(() => page.evaluate(() => window.__statusTexts.some((t) => t.startsWith('Reconnecting'))), { what: 'reconnecting' });
    const text = await page.evaluate(() => window.__statusTexts.find((t) => t.startsWith('Reconnecting')));
    assert.match(text, /^Reconnecting in \d+(\.\d)? (ms|s) \(attempt 1\) after 1006 connection lost/);
    router = await restartRouterOn(port);
    await waitState(page, 'open', 15000);
    assert.equal(await page.textContent('#info-recovered'), 'no');
    assert.match(await page.textContent('#conn-history'), /the resume was refused \(recovered false\)/);
    assert.match(await page.textContent('#conn-history'), /could not be resumed/);

    // Chromium logs the refused connection attempts while the router was down; nothing else.
    assert.deepEqual(watch.problems.filter((p) => !/status of 404|WebSocket connection to .* failed/.test(p)), []);
    assert.deepEqual(await watch.cspViolations(), []);
  } finally {
    await context.close();
    await proxy.close().catch(() => {});
    await router.stop();
  }
});
