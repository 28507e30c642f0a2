#!/usr/bin/env node
// Validates docs/asyncapi.yaml (AsyncAPI 2.6) and docs/openapi.yaml (OpenAPI 3.0), then checks
// the AsyncAPI document against the router's own lists (protocol/message_types.hpp,
// protocol/close_codes.hpp, protocol/error_codes.hpp, context/jwt_auth.hpp) when they are there.
//
//   cd docs/validate && npm ci && node validate.mjs [--allow-warnings]
//       [--asyncapi=PATH] [--openapi=PATH] [--protocol-dir=PATH] [--no-source-check]
//
// Exit 0: both documents are valid and consistent; the last line on stdout is the JSON array of
// the message types the AsyncAPI document pins (the `const` of each message payload's `type`).
// Exit 1: the diagnostics are on stderr. The AsyncAPI parser's warnings (its recommended rules)
// fail too, unless --allow-warnings.

import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Parser } from '@asyncapi/parser';
import SwaggerParser from '@apidevtools/swagger-parser';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..');

const options = { strict: true, sourceCheck: true };
for (const arg of process.argv.slice(2)) {
  const [key, value] = arg.split(/=(.*)/s);
  if (key === '--allow-warnings') options.strict = false;
  else if (key === '--no-source-check') options.sourceCheck = false;
  else if (key === '--asyncapi' && value) options.asyncapi = path.resolve(value);
  else if (key === '--openapi' && value) options.openapi = path.resolve(value);
  else if (key === '--protocol-dir' && value) options.protocolDir = path.resolve(value);
  else {
    console.error(`unknown argument: ${arg}`);
    process.exit(2);
  }
}
const asyncapiPath = options.asyncapi ?? path.join(repoRoot, 'docs', 'asyncapi.yaml');
const openapiPath = options.openapi ?? path.join(repoRoot, 'docs', 'openapi.yaml');
const protocolDir = options.protocolDir ?? path.join(repoRoot, 'protocol');
const jwtAuthHeader = path.join(repoRoot, 'context', 'jwt_auth.hpp');

const ADVICE = ['done', 'reconnect', 'back_off', 'refresh_token', 'stop'];
const SEVERITY = ['error', 'warning', 'information', 'hint'];

const failures = [];
const fail = (doc, message) => failures.push(`${doc}: ${message}`);
/// A file's name as diagnostics show it: relative to the repository when inside it.
const shown = (file) => {
  const rel = path.relative(repoRoot, file);
  return rel.startsWith('..') || path.isAbsolute(rel) ? file : rel;
};
const note = (message) => console.log(`note: ${message}`);

// -- AsyncAPI -------------------------------------------------------------------------------

async function validateAsyncApi() {
  const text = await readFile(asyncapiPath, 'utf8');
  // The recommended rules stay on, but one: the project has no public contact URL or e-mail.
  const parser = new Parser({ ruleset: { rules: { 'asyncapi-info-contact-properties': 'off' } } });
  const { document, diagnostics } = await parser.parse(text, { source: asyncapiPath });
  const name = shown(asyncapiPath);
  let errors = 0;
  let warnings = 0;
  for (const d of diagnostics) {
    const where = d.range ? `:${d.range.start.line + 1}:${d.range.start.character + 1}` : '';
    const at = d.path && d.path.length ? ` at ${d.path.join('.')}` : '';
    const line = `${name}${where} ${SEVERITY[d.severity] ?? d.severity} ${d.code}: ${d.message}${at}`;
    if (d.severity === 0) {
      errors += 1;
      failures.push(line);
    } else if (d.severity === 1) {
      warnings += 1;
      if (options.strict) failures.push(line);
      else console.log(line);
    }
  }
  if (!document) {
    if (errors === 0) fail(name, 'the parser returned no document');
    return null;
  }
  const doc = document.json();
  if (doc.asyncapi !== '2.6.0') fail(name, `asyncapi is "${doc.asyncapi}", expected "2.6.0"`);
  console.log(`${name}: AsyncAPI ${doc.asyncapi} parsed, ${errors} errors, ${warnings} warnings`);
  return { name, doc };
}

/// A published type's schema must exclude exactly the router's own server types.
function checkReserved(name, what, schema, serverTypes) {
  const reserved = schema?.not?.enum;
  if (schema?.pattern !== '^[A-Za-z0-9_.:-]{1,64}$') fail(name, `${what}: pattern must be ^[A-Za-z0-9_.:-]{1,64}$`);
  if (!Array.isArray(reserved)) return fail(name, `${what}: no not.enum of the reserved types`);
  const missing = serverTypes.filter((t) => !reserved.includes(t));
  const extra = reserved.filter((t) => !serverTypes.includes(t));
  if (missing.length) fail(name, `${what}: reserved types not excluded: ${missing.join(', ')}`);
  if (extra.length) fail(name, `${what}: excludes types that are not the router's: ${extra.join(', ')}`);
}

/// The `const` of a message payload's `type`, or undefined.
function pinnedType(message) {
  const type = message?.payload?.properties?.type;
  return type && typeof type.const === 'string' ? type.const : undefined;
}

function messagesOf(operation) {
  if (!operation?.message) return [];
  return operation.message.oneOf ?? [operation.message];
}

function checkAsyncApi({ name, doc }) {
  const types = { client: [], server: [] };
  let backendEvents = 0;
  const backendTypeSchemas = [];
  const seen = new Set();
  const ws = doc.channels?.['/ws'];
  if (!ws) fail(name, 'no channel /ws');
  for (const [channelName, channel] of Object.entries(doc.channels ?? {})) {
    for (const [op, direction] of [['publish', 'client'], ['subscribe', 'server']]) {
      for (const message of messagesOf(channel[op])) {
        const label = message.messageId ?? message.name ?? message['x-parser-message-name'] ?? '?';
        const type = pinnedType(message);
        if (type === undefined) {
          if (message['x-backend-event'] === true && direction === 'server') {
            backendEvents += 1;
            backendTypeSchemas.push(...(message.payload?.allOf ?? [message.payload])
              .map((part) => part?.properties?.type)
              .filter((t) => t?.pattern));
            continue;
          }
          fail(name, `${channelName} ${op} message "${label}": its payload does not pin its type with type: {const: ...}`);
          continue;
        }
        if (seen.has(type)) fail(name, `message type "${type}" is documented twice`);
        seen.add(type);
        if (message.name !== undefined && message.name !== type)
          fail(name, `message "${message.name}" pins type "${type}": name and type differ`);
        types[direction].push(type);
      }
    }
  }
  if (backendEvents !== 1)
    fail(name, `expected exactly one message marked x-backend-event (a backend's published event), found ${backendEvents}`);
  else if (backendTypeSchemas.length === 0)
    fail(name, "the backend event's payload must give its type a schema with a pattern");
  else  // with allOf, the part that excludes the reserved types
    checkReserved(name, 'the backend event\'s type',
                  backendTypeSchemas.find((t) => t.not) ?? backendTypeSchemas[0], types.server);

  // Close codes: the machine-readable list and the prose of the channel.
  const closeCodes = doc['x-close-codes'];
  if (!Array.isArray(closeCodes) || closeCodes.length === 0) {
    fail(name, 'x-close-codes must be a non-empty list');
  } else {
    const codes = new Set();
    for (const [i, c] of closeCodes.entries()) {
      const where = `x-close-codes[${i}]`;
      if (!Number.isInteger(c?.code) || c.code < 1000 || c.code > 4999) fail(name, `${where}.code must be an integer in 1000-4999`);
      if (typeof c?.reason !== 'string' || !c.reason) fail(name, `${where}.reason must be a non-empty string`);
      if (!ADVICE.includes(c?.advice)) fail(name, `${where}.advice must be one of ${ADVICE.join('|')}`);
      if (typeof c?.meaning !== 'string' || !c.meaning) fail(name, `${where}.meaning must be a non-empty string`);
      if (codes.has(c?.code)) fail(name, `${where}: code ${c.code} is listed twice`);
      codes.add(c?.code);
      if (ws && !new RegExp(`\\|\\s*${c?.code}\\s*\\|`).test(ws.description ?? ''))
        fail(name, `close code ${c?.code} is not in the prose table of the /ws channel's description`);
    }
  }

  // Error codes: the enum of the error message's data.code.
  const errorMessage = messagesOf(ws?.subscribe).find((m) => pinnedType(m) === 'error');
  const errorCodes = errorMessage?.payload?.properties?.data?.properties?.code?.enum;
  if (!Array.isArray(errorCodes)) fail(name, 'the error message has no data.code enum');
  else if (!errorCodes.includes('quota_exceeded')) fail(name, 'the error code enum lacks quota_exceeded');

  const envelope = ['type', 'event_id', 'user_id', 'thread_id', 'run_id', 'reply_to', 'timestamp', 'data'];
  for (const message of messagesOf(ws?.subscribe)) {
    const type = pinnedType(message);
    if (type === undefined) continue;
    const required = message.payload.required ?? [];
    const missing = envelope.filter((k) => !required.includes(k) || !message.payload.properties?.[k]);
    if (missing.length) fail(name, `server message "${type}" lacks envelope members: ${missing.join(', ')}`);
  }

  const refusals = doc['x-auth-refusals'];
  if (!Array.isArray(refusals) || !refusals.some((r) => r?.status === 401))
    fail(name, 'x-auth-refusals must list the 401 reasons');

  return { types, closeCodes: closeCodes ?? [], errorCodes: errorCodes ?? [], refusals: refusals ?? [] };
}

// -- the router's own lists -------------------------------------------------------------------

async function readIfThere(file) {
  return existsSync(file) ? readFile(file, 'utf8') : undefined;
}

function quotedStrings(text) {
  return [...text.matchAll(/"([^"\\]*)"/g)].map((m) => m[1]);
}

async function checkAgainstSources(name, found) {
  const typesHpp = await readIfThere(path.join(protocolDir, 'message_types.hpp'));
  const closeHpp = await readIfThere(path.join(protocolDir, 'close_codes.hpp'));
  const errorHpp = await readIfThere(path.join(protocolDir, 'error_codes.hpp'));
  const authHpp = await readIfThere(jwtAuthHeader);
  if (!typesHpp || !closeHpp || !errorHpp) {
    note(`the router's protocol headers are not in ${protocolDir}: the source check is skipped`);
    return;
  }

  const array = (ident) => {
    const m = typesHpp.match(new RegExp(`${ident}\\s*\\{([^}]*)\\}`));
    if (!m) fail('protocol/message_types.hpp', `no array ${ident}`);
    return m ? quotedStrings(m[1]) : [];
  };
  const client = array('client_message_types');
  const server = [...array('reply_types'), ...array('agent_event_types')];
  const compare = (what, header, documented) => {
    const missing = header.filter((t) => !documented.includes(t));
    const extra = documented.filter((t) => !header.includes(t));
    if (missing.length) fail(name, `${what} of message_types.hpp not documented: ${missing.join(', ')}`);
    if (extra.length) fail(name, `${what} documented but not in message_types.hpp: ${extra.join(', ')}`);
  };
  compare('client message types', client, found.types.client);
  compare('server message types', server, found.types.server);

  const headerCodes = [...closeHpp.matchAll(/close_reason\s+\w+\s*\{\s*(\d+)\s*,\s*"([^"]*)"\s*,\s*after_close::(\w+)\s*\}/g)]
    .map((m) => ({ code: Number(m[1]), reason: m[2], advice: m[3] }));
  if (headerCodes.length === 0) fail('protocol/close_codes.hpp', 'no close_reason found');
  for (const h of headerCodes) {
    const d = found.closeCodes.find((c) => c?.code === h.code);
    if (!d) fail(name, `close code ${h.code} (${h.reason}) of close_codes.hpp is not in x-close-codes`);
    else {
      if (d.reason !== h.reason) fail(name, `close code ${h.code}: reason "${d.reason}", close_codes.hpp says "${h.reason}"`);
      if (d.advice !== h.advice) fail(name, `close code ${h.code}: advice "${d.advice}", close_codes.hpp says "${h.advice}"`);
    }
  }
  for (const d of found.closeCodes)
    if (!headerCodes.some((h) => h.code === d?.code)) note(`close code ${d?.code} is documented but not (yet) in close_codes.hpp`);

  const headerErrors = [...errorHpp.matchAll(/=\s*"([a-z_]+)"/g)].map((m) => m[1]);
  for (const e of headerErrors)
    if (!found.errorCodes.includes(e)) fail(name, `error code ${e} of error_codes.hpp is not in the error message's code enum`);
  for (const e of found.errorCodes)
    if (!headerErrors.includes(e)) note(`error code ${e} is documented but not (yet) in error_codes.hpp`);

  if (authHpp) {
    const m = authHpp.match(/enum class auth_failure\s*\{([^}]*)\}/);
    const reasons = m ? [...m[1].matchAll(/([a-z_]+)\s*,?/g)].map((x) => x[1]) : [];
    const documented = found.refusals.filter((r) => r?.status === 401).map((r) => r.error);
    for (const r of reasons)
      if (!documented.includes(r)) fail(name, `auth refusal ${r} of context/jwt_auth.hpp is not in x-auth-refusals`);
  }
  console.log(`${name}: consistent with ${shown(protocolDir)}/{message_types,close_codes,error_codes}.hpp${authHpp ? ' and context/jwt_auth.hpp' : ''}`);
}

// -- OpenAPI --------------------------------------------------------------------------------

async function validateOpenApi(serverTypes) {
  const name = shown(openapiPath);
  let api;
  try {
    api = await SwaggerParser.validate(openapiPath);
  } catch (error) {
    fail(name, `invalid OpenAPI document:\n${error.message}`);
    return;
  }
  if (!/^3\.0\.\d+$/.test(api.openapi ?? '')) fail(name, `openapi is "${api.openapi}", expected 3.0.x`);
  const required = {
    '/api/v1/publish': 'post',
    '/api/v1/users/{user_id}/disconnect': 'post',
    '/healthz': 'get',
    '/metrics': 'get',
  };
  for (const [p, method] of Object.entries(required))
    if (!api.paths?.[p]?.[method]) fail(name, `no ${method.toUpperCase()} ${p}`);
  const statuses = new Set();
  for (const [p, item] of Object.entries(api.paths ?? {})) {
    for (const [method, op] of Object.entries(item)) {
      for (const [status, response] of Object.entries(op?.responses ?? {})) {
        if (!/^[45]/.test(status)) continue;
        statuses.add(status);
        const schema = response?.content?.['application/json']?.schema;
        if (!schema?.required?.includes('error') || !schema?.properties?.error)
          fail(name, `${method.toUpperCase()} ${p} ${status}: the body must be JSON {"error": ...}`);
      }
    }
  }
  const publishType = api.paths?.['/api/v1/publish']?.post?.requestBody?.content?.['application/json']?.schema
    ?.properties?.event?.properties?.type;
  if (serverTypes) checkReserved(name, 'the publish body\'s event.type', publishType, serverTypes);
  for (const s of ['400', '401', '404', '405', '413', '431', '503'])
    if (!statuses.has(s)) fail(name, `no operation documents the ${s} refusal`);
  console.log(`${name}: OpenAPI ${api.openapi} valid, ${Object.keys(api.paths ?? {}).length} paths`);
}

// -- main -----------------------------------------------------------------------------------

let types = null;
try {
  const parsed = await validateAsyncApi();
  let serverTypes;
  if (parsed) {
    const found = checkAsyncApi(parsed);
    if (options.sourceCheck) await checkAgainstSources(parsed.name, found);
    types = [...found.types.client, ...found.types.server];
    serverTypes = found.types.server;
  }
  await validateOpenApi(serverTypes);
} catch (error) {
  failures.push(`validation aborted: ${error?.stack ?? error}`);
}

if (failures.length) {
  console.error(`\n${failures.length} problem(s):`);
  for (const f of failures) console.error(`- ${f}`);
  console.error('FAILED');
  process.exit(1);
}
console.log(`OK: ${types.length} message types pinned by const, plus a backend's published event (any unreserved type)`);
console.log(JSON.stringify(types));
