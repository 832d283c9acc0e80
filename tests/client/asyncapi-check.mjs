// Validates docs/asyncapi.yaml with the AsyncAPI parser (schema + the parser's built-in
// rules), then checks that it names exactly the events the code emits (src/domain/event.rs,
// plus the protocol events below, which the code must name too), that every message
// declares its audience (`x-audience`) and carries `offset` exactly when it is addressed,
// that every server declares the connect token, and that every message example matches
// its payload schema.
//
// Usage: node tests/client/asyncapi-check.mjs [path/to/asyncapi.yaml]
// Prints every diagnostic; exits 1 on any error (or on a warning with --strict), 2 when the
// document cannot be read.
import { readFile, readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';

/** Events that are no change of the domain (not in Event::NAMES) but part of the protocol. */
const PROTOCOL_EVENTS = ['session.resync'];
/** Who may hear a message (`x-audience`), and whether its argument then carries `offset`. */
const AUDIENCES = { parties: true, participants: true, everyone: false, connection: false };

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const strict = args.includes('--strict');
const file = args.find((a) => !a.startsWith('--')) ?? path.join(root, 'docs', 'asyncapi.yaml');

let source;
try {
  source = await readFile(file, 'utf8');
} catch (e) {
  console.error(`asyncapi-check: cannot read ${file}: ${e.message}`);
  process.exit(2);
}

const severityName = {
  [DiagnosticSeverity.Error]: 'error',
  [DiagnosticSeverity.Warning]: 'warning',
  [DiagnosticSeverity.Information]: 'info',
  [DiagnosticSeverity.Hint]: 'hint',
};
let errors = 0;
let warnings = 0;
const report = (severity, where, message) => {
  if (severity === 'error') errors += 1;
  if (severity === 'warning') warnings += 1;
  console.log(`${severity.padEnd(7)} ${where || '(document)'}: ${message}`);
};

const parser = new Parser();
const { document, diagnostics } = await parser.parse(source, { source: file });
for (const d of diagnostics) {
  const line = d.range ? `line ${d.range.start.line + 1}` : '';
  const where = [line, d.path?.length ? d.path.join('.') : ''].filter(Boolean).join(' ');
  report(severityName[d.severity] ?? String(d.severity), where, `${d.message} [${d.code}]`);
}

if (document) {
  // The event names must be exactly those the code emits.
  const eventRs = await readFile(path.join(root, 'src', 'domain', 'event.rs'), 'utf8').catch(() => null);
  const names = eventRs?.match(/const NAMES[^=]*=\s*\[([^\]]*)\]/);
  const documented = new Set(document.allMessages().all().map((m) => m.name()));
  if (!names) {
    report('warning', 'src/domain/event.rs', 'could not find Event::NAMES; event names not cross-checked');
  } else {
    const emitted = new Set([...names[1].matchAll(/"([^"]+)"/g)].map((m) => m[1]));
    // A protocol event counts as emitted when some source file under src/ names it.
    const sources = await sourceTexts(path.join(root, 'src'));
    for (const n of PROTOCOL_EVENTS) if (sources.some((text) => text.includes(`"${n}"`))) emitted.add(n);
    for (const n of emitted) if (!documented.has(n)) report('error', 'messages', `event "${n}" is emitted but not documented`);
    for (const n of documented) if (!emitted.has(n)) report('error', 'messages', `event "${n}" is documented but never emitted`);
  }

  // Every message says who hears it; addressed ones may carry `offset` (never required),
  // the others never do. Only protocol events go to one connection.
  for (const m of document.allMessages().all()) {
    const where = `messages.${m.id()}`;
    const audience = m.extensions().get('x-audience')?.value();
    if (!(audience in AUDIENCES)) {
      report('error', where, `x-audience is ${JSON.stringify(audience)}, expected one of ${Object.keys(AUDIENCES).join(', ')}`);
      continue;
    }
    if ((audience === 'connection') !== PROTOCOL_EVENTS.includes(m.name())) {
      report('error', where, `x-audience "${audience}" does not fit ${PROTOCOL_EVENTS.includes(m.name()) ? 'a protocol event' : 'an event of the domain'}`);
    }
    const payload = m.payload()?.json() ?? {};
    const hasOffset = Boolean(payload.properties?.offset);
    if (hasOffset !== AUDIENCES[audience]) {
      report('error', where, `audience "${audience}" ${AUDIENCES[audience] ? 'needs' : 'must not have'} an "offset" property`);
    }
    if ((payload.required ?? []).includes('offset')) report('error', where, '"offset" is present only with AUTH=token: it must not be required');
  }

  // The connect packet's token: declared once, and listed by every server.
  const schemes = document.components().securitySchemes().all();
  if (schemes.length === 0) report('error', 'components.securitySchemes', 'no security scheme for the connect token');
  for (const server of document.servers().all()) {
    if (server.security().length === 0) report('error', `servers.${server.id()}`, 'declares no security scheme');
  }

  // Every operation is the server sending: clients send nothing over the socket.
  for (const op of document.operations().all()) {
    if (op.action() !== 'send') report('error', `operations.${op.id()}`, `action is "${op.action()}", expected "send"`);
  }

  // Every example payload must match its message's schema (the parser does not check
  // AsyncAPI 3 message examples itself).
  for (const m of document.allMessages().all()) {
    const examples = m.examples().all();
    if (examples.length === 0) report('warning', `messages.${m.id()}`, 'has no example');
    for (const [i, ex] of examples.entries()) {
      const problems = validate(m.payload()?.json(), ex.payload(), '$');
      for (const p of problems) report('error', `messages.${m.id()}.examples[${i}]`, p);
    }
  }
}

/** The text of every file under `dir`, recursively (none when it cannot be read). */
async function sourceTexts(dir) {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  const files = entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath ?? e.path, e.name));
  return Promise.all(files.map((f) => readFile(f, 'utf8').catch(() => '')));
}

// A small JSON Schema check covering the keywords this document uses.
function validate(schema, value, at) {
  if (!schema || typeof schema !== 'object') return [];
  const out = [];
  for (const sub of schema.allOf ?? []) out.push(...validate(sub, value, at));
  const type = Array.isArray(value) ? 'array' : value === null ? 'null' : typeof value;
  if (schema.type) {
    const types = [].concat(schema.type);
    const ok = types.some((t) => t === type || (t === 'integer' && Number.isInteger(value)) || (t === 'number' && type === 'number'));
    if (!ok) return [`${at}: expected ${types.join('|')}, got ${type}`];
  }
  if ('const' in schema && JSON.stringify(schema.const) !== JSON.stringify(value)) out.push(`${at}: expected ${JSON.stringify(schema.const)}`);
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) out.push(`${at}: not one of ${JSON.stringify(schema.enum)}`);
  if (type === 'string') {
    const len = [...value].length;
    if (schema.minLength !== undefined && len < schema.minLength) out.push(`${at}: shorter than ${schema.minLength}`);
    if (schema.maxLength !== undefined && len > schema.maxLength) out.push(`${at}: longer than ${schema.maxLength}`);
    if (schema.pattern && !new RegExp(schema.pattern, 'u').test(value)) out.push(`${at}: does not match ${schema.pattern}`);
  }
  if (type === 'object') {
    for (const r of schema.required ?? []) if (!(r in value)) out.push(`${at}: missing "${r}"`);
    if (schema.maxProperties !== undefined && Object.keys(value).length > schema.maxProperties) out.push(`${at}: more than ${schema.maxProperties} properties`);
    for (const [k, v] of Object.entries(value)) {
      if (schema.properties?.[k]) out.push(...validate(schema.properties[k], v, `${at}.${k}`));
      else if (schema.additionalProperties === false) out.push(`${at}: unexpected "${k}"`);
    }
  }
  if (type === 'array') {
    if (schema.maxItems !== undefined && value.length > schema.maxItems) out.push(`${at}: more than ${schema.maxItems} items`);
    if (schema.minItems !== undefined && value.length < schema.minItems) out.push(`${at}: fewer than ${schema.minItems} items`);
    value.forEach((v, i) => out.push(...validate(schema.items, v, `${at}[${i}]`)));
  }
  return out;
}

console.log(`asyncapi-check: ${path.relative(process.cwd(), file) || file}: ${errors} error(s), ${warnings} warning(s)`);
process.exit(errors > 0 || (strict && warnings > 0) ? 1 : 0);
