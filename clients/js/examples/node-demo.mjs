#!/usr/bin/env node
// Connects to the router, starts the demo agent, prints its events, and exits.
//
//   cd clients/js && npm install          # brings the `ws` package
//   TOKEN=$(cd ../.. && build/event-router --mint-token=demo-user)   # the router's configured secret
//   node examples/node-demo.mjs --url=ws://127.0.0.1:8080/ws --token="$TOKEN"
//
// Options (or environment variables): --url (ROUTER_URL, default ws://127.0.0.1:8080/ws),
// --token (ROUTER_TOKEN), --agent (default demo), --input (JSON, default {"question":"hi"}).
import WebSocket from 'ws';
import { RouterClient } from '../router-client.js';

const args = Object.fromEntries(process.argv.slice(2).map((a) => {
  const m = /^--([^=]+)=(.*)$/.exec(a);
  if (!m) { console.error(`usage: node examples/node-demo.mjs --url=ws://HOST:PORT/ws --token=JWT [--agent=demo] [--input=JSON]`); process.exit(2); }
  return [m[1], m[2]];
}));
const url = args.url ?? process.env.ROUTER_URL ?? 'ws://127.0.0.1:8080/ws';
const token = args.token ?? process.env.ROUTER_TOKEN;
if (!token) {
  console.error('no token: pass --token=JWT or set ROUTER_TOKEN (e.g. from `event-router --mint-token=demo-user`)');
  process.exit(2);
}
const agent = args.agent ?? 'demo';
const input = args.input ? JSON.parse(args.input) : { question: 'hi' };

const client = new RouterClient({ url, WebSocket, getToken: () => token });
client.on('state', (s) => console.log(`[state] ${s.state}${s.delayMs !== undefined ? ` (retry in ${s.delayMs} ms, attempt ${s.attempt})` : ''}${s.code ? ` code ${s.code}` : ''}`));
client.on('established', (e) => console.log(`[established] user ${e.userId}, session ${e.sessionId}, recovered ${e.recovered}`));
client.on('gap', (g) => console.log(`[gap] session ${g.previousSessionId} could not be resumed: events may have been lost`));
client.on('publish', (f) => console.log(`[publish] ${f.type} ${JSON.stringify(f.data)}`));
client.on('error', (e) => console.log(`[error] ${e.message}`));
client.on('closed', (c) => console.log(`[closed] ${c.code} ${c.terminalReason}`));

try {
  await client.connect();
  console.log(`[ping] ${await client.ping()} ms`);
  const run = client.startAgent(agent, input);
  for await (const ev of run) {
    console.log(`[run ${ev.run_id}] #${ev.event_id} ${ev.type} ${JSON.stringify(ev.data)}`);
  }
  console.log(`[done] ${run.final.type}`);
} catch (err) {
  console.error(`[failed] ${err.code ?? ''} ${err.message}`);
  process.exitCode = 1;
} finally {
  await client.close();
}
