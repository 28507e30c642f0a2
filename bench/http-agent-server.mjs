// A fast HTTP agent for bench/run.sh: answers every POST with the demo agent's events
// (agent_thinking x STEPS, tool_executing, tool_completed, agent_completed) as NDJSON in one
// chunked write, keep-alive, so that router-load's agents scenario can run against an HTTP
// agent and price the hop against the built-in demo agent.
//   node bench/http-agent-server.mjs PORT [STEPS]
import http from 'node:http';

const port = Number(process.argv[2]);
const steps = Number(process.argv[3] ?? 3);
const lines = [];
for (let i = 1; i <= steps; ++i)
  lines.push({type: 'agent_thinking', data: {step: i, of: steps, text: `thinking, step ${i}`}});
lines.push({type: 'tool_executing', data: {tool: 'lookup', input: 'load'}});
lines.push({type: 'tool_completed', data: {tool: 'lookup', output: '42'}});
lines.push({type: 'agent_completed', data: {output: 'http answer', steps}});
const body = lines.map((l) => JSON.stringify(l)).join('\n') + '\n';

const server = http.createServer({keepAliveTimeout: 60000}, (req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, {'Content-Type': 'application/x-ndjson'});
    res.end(body);
  });
});
server.listen(port, '127.0.0.1', () => console.log(`http-agent-server listening on ${port}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
