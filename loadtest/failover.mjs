// What acknowledged writes and events survive when the Redis primary dies under load.
// Started by loadtest/failover.sh, which brings up the Redis shape and two replicas and names
// the process to SIGKILL; this file drives the load, runs the kill and measures.
//
//   node loadtest/failover.mjs --urls "URL1 URL2" --kill "kill -KILL PID" [--shape NAME]
//        [--rate 50] [--secs 30] [--kill-at 10] [--settle 10] [--label TEXT] [--out FILE]
//   node loadtest/failover.mjs --summary FILE...     one table over the results of several runs
//
// Two Socket.IO clients per replica (websocket transport) listen for `user.registered`. An
// open-loop load of `POST /users`, each with a unique name, alternates between the replicas
// at --rate per second for --secs; --kill-at seconds in, the --kill command runs. Every
// request's send time, answer time, status and problem `code` are kept, and `/readyz` of each
// replica is polled every 100 ms. After the load, events get up to --settle seconds to
// arrive; then every acknowledged user (201) is fetched (404 = lost), and every failed
// request is looked up by name in `GET /users?limit=1000` (and in the events heard) to tell
// whether it was applied anyway. Prints a table and one JSON line (also written to --out).
// Exits 0 whatever the figures are; 1 only when the run itself broke (replicas not ready,
// clients not connecting, a crash).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLIENT = path.join(HERE, '../tests/client/package.json');

const READYZ_EVERY_MS = 100;
const READYZ_TIMEOUT_MS = 3_000;
const REQUEST_TIMEOUT_MS = 15_000;
/** How close (either side) a write's answer must be to a /readyz sample to count against it. */
const WINDOW_MS = 200;
const LIST_LIMIT = 1000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const now = () => performance.now();
const round = (x, digits = 2) => (x == null ? null : Number(x.toFixed(digits)));

function parseArgs(argv) {
  const opts = { rate: 50, secs: 30, killAt: 10, settle: 10, shape: 'redis', label: '', urls: [], kill: '', out: '', raw: '', summary: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    switch (arg) {
      case '--urls': opts.urls = value().split(/[\s,]+/).filter(Boolean); break;
      case '--kill': opts.kill = value(); break;
      case '--shape': opts.shape = value(); break;
      case '--label': opts.label = value(); break;
      case '--rate': opts.rate = Number(value()); break;
      case '--secs': opts.secs = Number(value()); break;
      case '--kill-at': opts.killAt = Number(value()); break;
      case '--settle': opts.settle = Number(value()); break;
      case '--out': opts.out = value(); break;
      case '--raw': opts.raw = value(); break;
      case '--summary': opts.summary = argv.slice(i + 1); i = argv.length; break;
      case '-h': case '--help':
        console.log(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\nimport ')[0].replace(/^\/\/ ?/gm, ''));
        process.exit(0);
        break;
      default: throw new Error(`unknown argument ${arg}`);
    }
  }
  if (opts.summary) return opts;
  for (const k of ['rate', 'secs', 'killAt', 'settle']) {
    if (!Number.isFinite(opts[k]) || opts[k] < 0) throw new Error(`--${k} must be a non-negative number`);
  }
  if (opts.rate <= 0 || opts.secs <= 0) throw new Error('--rate and --secs must be positive');
  if (opts.urls.length === 0) throw new Error('--urls is required');
  if (!opts.kill) throw new Error('--kill is required');
  return opts;
}

// ------------------------------------------------------------------------------ HTTP
async function http(method, url, body, timeoutMs = REQUEST_TIMEOUT_MS) {
  const init = { method, signal: AbortSignal.timeout(timeoutMs), headers: {} };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  try {
    const res = await fetch(url, init);
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    return { status: res.status, json, retryAfter: res.headers.get('retry-after') };
  } catch (e) {
    const name = e?.name === 'TimeoutError' ? 'timeout' : `network:${e?.cause?.code ?? e?.name ?? 'error'}`;
    return { status: 0, json: null, error: name };
  }
}

async function pool(items, width, fn) {
  let next = 0;
  const workers = Array.from({ length: Math.min(width, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  });
  await Promise.all(workers);
}

// ---------------------------------------------------------------------------- clients
function connectClients(io, urls, perReplica, t0) {
  const clients = [];
  for (const [r, url] of urls.entries()) {
    for (let k = 0; k < perReplica; k++) {
      const c = {
        name: `r${r + 1}c${k + 1}`, replica: r, heard: new Map(), byName: new Map(),
        connects: 0, disconnects: [], socket: null,
      };
      c.socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: true });
      c.socket.on('connect', () => { c.connects++; });
      c.socket.on('disconnect', (reason) => { if (!c.closing) c.disconnects.push({ at: now() - t0(), reason }); });
      c.socket.on('user.registered', (payload) => {
        const data = payload?.data ?? {};
        c.heard.set(data.id, (c.heard.get(data.id) ?? 0) + 1);
        if (data.name) c.byName.set(data.name, data.id);
      });
      clients.push(c);
    }
  }
  return clients;
}

// --------------------------------------------------------------------------- the run
async function run(opts) {
  const require = createRequire(CLIENT);
  const { io } = require('socket.io-client');
  const urls = opts.urls;
  const runId = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

  for (const url of urls) {
    const r = await http('GET', `${url}/readyz`, undefined, 5_000);
    if (r.status !== 200) throw new Error(`${url}/readyz answered ${r.status || r.error} before the run`);
  }
  let origin = now();
  const t = () => origin;
  const clients = connectClients(io, urls, 2, t);
  const connectDeadline = now() + 15_000;
  while (clients.some((c) => c.connects === 0)) {
    if (now() > connectDeadline) throw new Error(`clients not connected after 15 s: ${clients.filter((c) => !c.connects).map((c) => c.name).join(', ')}`);
    await sleep(50);
  }
  // Warm-up: one write per replica, so that both are known to work before the clock starts.
  for (const [r, url] of urls.entries()) {
    const w = await http('POST', `${url}/users`, { name: `fo-${runId}-warm-${r}` });
    if (w.status !== 201) throw new Error(`warm-up POST ${url}/users answered ${w.status || w.error}`);
  }
  await sleep(300);
  for (const c of clients) { c.heard.clear(); c.byName.clear(); c.disconnects = []; }

  const total = Math.round(opts.rate * opts.secs);
  const requests = [];
  const readyz = urls.map(() => []);
  const pending = new Set();
  origin = now();
  const wallOrigin = Date.now();
  const killAtMs = opts.killAt * 1000;
  const loadEndMs = opts.secs * 1000;
  let kill = null;

  // /readyz: a sample every 100 ms per replica, overlapping when one is slow.
  let polling = true;
  const pollers = urls.map(async (url, r) => {
    for (let tick = 0; polling; tick++) {
      const due = tick * READYZ_EVERY_MS;
      const wait = due - (now() - origin);
      if (wait > 0) await sleep(wait);
      if (!polling) break;
      const sample = { sent: now() - origin, answered: null, status: null };
      readyz[r].push(sample);
      const p = http('GET', `${url}/readyz`, undefined, READYZ_TIMEOUT_MS).then((res) => {
        sample.answered = now() - origin;
        sample.status = res.status || res.error;
      });
      pending.add(p);
      p.finally(() => pending.delete(p));
    }
  });

  // The kill, at --kill-at seconds.
  const killer = (async () => {
    const wait = killAtMs - (now() - origin);
    if (wait > 0) await sleep(wait);
    kill = { at: now() - origin, done: null, code: null, output: '' };
    await new Promise((resolve) => {
      const child = spawn('sh', ['-c', opts.kill], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.on('data', (d) => { kill.output += d; });
      child.stderr.on('data', (d) => { kill.output += d; });
      child.on('close', (code) => { kill.code = code; kill.done = now() - origin; resolve(); });
      child.on('error', (e) => { kill.code = -1; kill.output += String(e); kill.done = now() - origin; resolve(); });
    });
  })();

  // The open-loop load: request i is due at i / rate seconds, whatever came back before.
  const interval = 1000 / opts.rate;
  for (let i = 0; i < total; i++) {
    const due = i * interval;
    const wait = due - (now() - origin);
    if (wait > 1) await sleep(wait);
    const replica = i % urls.length;
    const req = { i, replica, name: `fo-${runId}-${i}`, due, sent: now() - origin, answered: null, status: null, code: null, id: null, createdAt: null };
    requests.push(req);
    const p = http('POST', `${urls[replica]}/users`, { name: req.name }).then((res) => {
      req.answered = now() - origin;
      req.status = res.status;
      if (res.status === 201) {
        req.id = res.json?.id ?? null;
        req.createdAt = res.json?.createdAt ? Date.parse(res.json.createdAt) : null;
      } else {
        req.code = res.json?.code ?? res.error ?? `http_${res.status}`;
      }
    });
    pending.add(p);
    p.finally(() => pending.delete(p));
  }
  await killer;
  // Every write answered (bounded by REQUEST_TIMEOUT_MS).
  while (requests.some((r) => r.answered == null)) await sleep(20);
  const loadDone = now() - origin;

  // Events settle: until every client heard every acknowledged user, or --settle seconds.
  const acked = requests.filter((r) => r.status === 201 && r.id);
  const settleStart = now();
  while (now() - settleStart < opts.settle * 1000) {
    if (clients.every((c) => acked.every((r) => c.heard.has(r.id)))) break;
    await sleep(100);
  }
  const settledMs = now() - settleStart;
  polling = false;
  await Promise.all(pollers);
  await Promise.all([...pending]);

  // ------------------------------------------------------------------ verification
  // Each acknowledged user, by id, on a replica (the other one if the first cannot answer).
  const stored = new Map(); // id -> true (200) | false (404) | null (could not tell)
  const lookup = async (id, preferred) => {
    for (let attempt = 0; attempt < 6; attempt++) {
      const url = urls[(preferred + attempt) % urls.length];
      const res = await http('GET', `${url}/users/${encodeURIComponent(id)}`, undefined, 5_000);
      if (res.status === 200) return true;
      if (res.status === 404) return false;
      await sleep(500);
    }
    return null;
  };
  await pool(acked, 16, async (r) => { stored.set(r.id, await lookup(r.id, r.replica)); });

  // Events heard for ids that were not acknowledged: are those users stored?
  const heardIds = new Set();
  for (const c of clients) for (const id of c.heard.keys()) heardIds.add(id);
  const unackedHeard = [...heardIds].filter((id) => !stored.has(id));
  await pool(unackedHeard, 16, async (id) => { stored.set(id, await lookup(id, 0)); });

  // Failed requests: applied anyway? The listing (oldest first) covers every request
  // answered before the newest user it returns, or everything if it is not full.
  let listing = null;
  for (let attempt = 0; attempt < 6 && !listing; attempt++) {
    const res = await http('GET', `${urls[attempt % urls.length]}/users?limit=${LIST_LIMIT}`, undefined, 10_000);
    if (res.status === 200 && Array.isArray(res.json)) listing = res.json;
    else await sleep(500);
  }
  const listedByName = new Map((listing ?? []).map((u) => [u.name, u]));
  const listComplete = listing != null && listing.length < LIST_LIMIT;
  const listNewest = listing && listing.length ? Math.max(...listing.map((u) => Date.parse(u.createdAt))) : -Infinity;
  const heardByName = new Map();
  for (const c of clients) for (const [name, id] of c.byName) heardByName.set(name, id);
  const failed = requests.filter((r) => r.status !== 201);
  for (const r of failed) {
    const covered = listing != null && (listComplete || listNewest > wallOrigin + r.answered + 1000);
    r.covered = covered;
    const inList = listedByName.has(r.name);
    const heardId = heardByName.get(r.name);
    r.heard = heardId != null;
    // Stored now: in the listing; or, past the listing's reach, looked up by the id of its event.
    if (inList) r.storedNow = true;
    else if (covered) r.storedNow = false;
    else if (heardId != null) r.storedNow = stored.get(heardId) ?? null;
    else r.storedNow = null;
    // Applied (at some point): stored now, or its event was heard (a change and its event are one step).
    r.applied = r.storedNow === true || r.heard ? true : r.storedNow === false ? false : null;
  }

  return {
    opts, runId, wallOrigin, total, requests, readyz, clients, kill, loadDone, settledMs, stored,
    listing: { ok: listing != null, count: listing?.length ?? null, complete: listComplete, failed_beyond: failed.filter((r) => !r.covered).length }, acked,
    close: () => clients.forEach((c) => { c.closing = true; c.socket.close(); }),
  };
}

// ---------------------------------------------------------------------------- figures
function figures(res) {
  const { opts, requests, readyz, clients, kill, stored, acked } = res;
  const killMs = kill?.at ?? opts.killAt * 1000;
  const loadEnd = opts.secs * 1000;
  const ok = requests.filter((r) => r.status === 201);
  const failed = requests.filter((r) => r.status !== 201);
  const byCode = {};
  for (const r of failed) {
    const key = r.status ? `${r.status} ${r.code}` : r.code;
    byCode[key] = (byCode[key] ?? 0) + 1;
  }
  const count = (status, code) => failed.filter((r) => r.status === status && r.code === code).length;
  const unknown = failed.filter((r) => r.status === 503 && r.code === 'outcome_unknown');
  const unavailable = failed.filter((r) => r.status === 503 && r.code === 'store_unavailable');
  const other = failed.filter((r) => !(r.status === 503 && (r.code === 'outcome_unknown' || r.code === 'store_unavailable')));
  const appliedOf = (rs) => ({
    applied: rs.filter((r) => r.applied === true).length,
    not_applied: rs.filter((r) => r.applied === false).length,
    unknown: rs.filter((r) => r.applied == null).length,
    heard: rs.filter((r) => r.heard).length,
  });

  // Recovery: from the kill to the first 201 sent after the last failed request was sent.
  const recoveryOf = (rs) => {
    const fails = rs.filter((r) => r.status !== 201);
    if (fails.length === 0) return { failures: 0, first_failure_s: null, last_failure_s: null, recovery_s: 0 };
    const lastFail = Math.max(...fails.map((r) => r.sent));
    const firstFail = Math.min(...fails.map((r) => r.sent));
    const after = rs.filter((r) => r.status === 201 && r.sent > lastFail);
    const firstOk = after.length ? Math.min(...after.map((r) => r.answered)) : null;
    return {
      failures: fails.length,
      first_failure_s: round((firstFail - killMs) / 1000),
      last_failure_s: round((lastFail - killMs) / 1000),
      recovery_s: firstOk == null ? null : round((firstOk - killMs) / 1000),
    };
  };
  const recovery = recoveryOf(requests);
  // The first 201 answered after the kill that was sent after the first failure.
  const firstFail = failed.length ? Math.min(...failed.map((r) => r.sent)) : null;
  const againOk = firstFail == null ? [] : ok.filter((r) => r.sent > firstFail);
  const firstSuccess = againOk.length ? round((Math.min(...againOk.map((r) => r.answered)) - killMs) / 1000) : null;
  const perReplica = readyz.map((_, i) => recoveryOf(requests.filter((r) => r.replica === i)));

  // Longest stretch without a 201 being answered, within the load.
  const okTimes = ok.map((r) => r.answered).sort((a, b) => a - b);
  let gap = { s: 0, from_s: null };
  let prev = 0;
  for (const at of [...okTimes, Math.max(loadEnd, okTimes.at(-1) ?? 0)]) {
    if (at - prev > gap.s * 1000) gap = { s: round((at - prev) / 1000), from_s: round((prev - killMs) / 1000) };
    prev = at;
  }

  // Acknowledged writes missing afterwards.
  const lost = acked.filter((r) => stored.get(r.id) === false);
  const unverifiable = acked.filter((r) => stored.get(r.id) == null);

  // Events, per client.
  const ackedIds = new Set(acked.map((r) => r.id));
  // The listener's /readyz answer nearest to time t (ms since the start).
  const readyAt = (replica, t) => {
    let best = null;
    for (const s of readyz[replica]) {
      if (s.answered != null && (best == null || Math.abs(s.answered - t) < Math.abs(best.answered - t))) best = s;
    }
    return best?.status ?? null;
  };
  const perClient = clients.map((c) => {
    let missed = 0;
    let missedLost = 0;
    const missedDetail = [];
    for (const r of acked) {
      if (!c.heard.has(r.id)) {
        missed++;
        if (stored.get(r.id) === false) missedLost++;
        if (missedDetail.length < 10) {
          missedDetail.push({
            sent_s: round((r.sent - killMs) / 1000), answered_s: round((r.answered - killMs) / 1000),
            via: r.replica + 1, listener_readyz: readyAt(c.replica, r.answered),
          });
        }
      }
    }
    let twice = 0;
    for (const n of c.heard.values()) if (n > 1) twice++;
    let neverStored = 0;
    for (const id of c.heard.keys()) if (stored.get(id) === false) neverStored++;
    const unacked = [...c.heard.keys()].filter((id) => !ackedIds.has(id)).length;
    return {
      client: c.name, heard: c.heard.size, missed_acked: missed, missed_acked_lost: missedLost, twice,
      heard_not_stored: neverStored, heard_unacked: unacked, missed_detail: missedDetail, disconnects: c.disconnects.length,
      disconnect_reasons: [...new Set(c.disconnects.map((d) => d.reason))],
    };
  });
  const everything = perClient.filter((c) => c.missed_acked === 0 && c.twice === 0).length;
  const heardIds = new Set();
  for (const c of clients) for (const id of c.heard.keys()) heardIds.add(id);
  const heardNotStored = [...heardIds].filter((id) => stored.get(id) === false).length;

  // /readyz truthfulness, per replica.
  const readiness = readyz.map((samples, i) => {
    const mine = requests.filter((r) => r.replica === i && r.answered != null);
    const near = (t, pred) => mine.some((r) => pred(r) && Math.abs(r.answered - t) <= WINDOW_MS);
    let lying = 0;
    let lyingLoose = 0;
    let pessimistic = 0;
    const answered = samples.filter((s) => s.answered != null).sort((a, b) => a.answered - b.answered);
    for (const s of answered) {
      const failing = near(s.answered, (r) => r.status !== 201);
      const working = near(s.answered, (r) => r.status === 201);
      if (s.status === 200 && failing) lyingLoose++;
      if (s.status === 200 && failing && !working) lying++;
      if (s.status !== 200 && working && !failing) pessimistic++;
    }
    // Not ready: from each first non-200 answer to the next 200 answer.
    let notReadyMs = 0;
    let spans = [];
    let start = null;
    for (const s of answered) {
      if (s.status !== 200 && start == null) start = s.answered;
      if (s.status === 200 && start != null) { spans.push([start, s.answered]); start = null; }
    }
    if (start != null) spans.push([start, answered.at(-1).answered]);
    for (const [a, b] of spans) notReadyMs += b - a;
    const statuses = {};
    for (const s of samples) statuses[s.status ?? 'unanswered'] = (statuses[s.status ?? 'unanswered'] ?? 0) + 1;
    return {
      replica: i + 1, samples: samples.length, statuses,
      ready_while_all_writes_failing: lying, ready_while_some_writes_failing: lyingLoose,
      unready_while_writes_succeed: pessimistic,
      unready_s: round(notReadyMs / 1000),
      unready_spans_s: spans.map(([a, b]) => [round((a - killMs) / 1000), round((b - killMs) / 1000)]),
    };
  });

  return {
    shape: opts.shape, label: opts.label || null, rate: opts.rate, secs: opts.secs, kill_at_s: opts.killAt,
    kill: kill ? { at_s: round(kill.at / 1000), exit: kill.code, output: kill.output.trim() || null } : null,
    requests: requests.length, created_201: ok.length,
    unavailable_503: unavailable.length, unknown_503: unknown.length,
    unknown_applied: appliedOf(unknown), unavailable_applied: appliedOf(unavailable),
    other_failures: other.length, other_applied: appliedOf(other), failures_by_code: byCode,
    first_success_s: firstSuccess, recovery_s: recovery.recovery_s, first_failure_s: recovery.first_failure_s, last_failure_s: recovery.last_failure_s,
    per_replica_recovery: perReplica,
    longest_gap_without_201_s: gap.s, longest_gap_from_s: gap.from_s,
    acked_lost: lost.length, acked_unverifiable: unverifiable.length,
    lost_sent_s: lost.map((r) => round((r.sent - killMs) / 1000)),
    clients_heard_everything: everything, clients: perClient, events_heard_not_stored: heardNotStored,
    readyz: readiness,
    listing: res.listing, settle_s: round(res.settledMs / 1000),
  };
}

// ---------------------------------------------------------------------------- output
function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => r.map((c, i) => String(c).padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

const appliedText = (a) => `${a.applied} applied, ${a.not_applied} not${a.unknown ? `, ${a.unknown} unknown` : ''}`;

function print(f) {
  const title = `failover: ${f.shape}${f.label ? ` (${f.label})` : ''}, ${f.rate}/s for ${f.secs} s, SIGKILL at ${f.kill?.at_s ?? '?'} s`;
  console.log(`\n${title}\n${'-'.repeat(title.length)}`);
  const rows = [
    ['requests (POST /users)', f.requests],
    ['201 created', f.created_201],
    ['503 store_unavailable', `${f.unavailable_503}${f.unavailable_503 ? ` (${appliedText(f.unavailable_applied)})` : ''}`],
    ['503 outcome_unknown', `${f.unknown_503}${f.unknown_503 ? ` (${appliedText(f.unknown_applied)})` : ''}`],
    ['other failures', `${f.other_failures}${f.other_failures ? ` ${JSON.stringify(f.failures_by_code)}` : ''}`],
    ['failures from / to (s after kill)', f.first_failure_s == null ? '-' : `${f.first_failure_s} / ${f.last_failure_s}`],
    ['first 201 after the failures began (s after kill)', f.first_success_s ?? 'never'],
    ['recovery: first 201 after the last failure', f.recovery_s ?? 'never'],
    ...f.per_replica_recovery.map((p, i) => [`  replica ${i + 1}`, `${p.failures} failed, recovered ${p.recovery_s ?? 'never'} s`]),
    ['longest gap without a 201', `${f.longest_gap_without_201_s} s (from ${f.longest_gap_from_s} s after kill)`],
    ['acknowledged writes lost', `${f.acked_lost}${f.acked_unverifiable ? ` (+${f.acked_unverifiable} unverifiable)` : ''}${f.acked_lost ? ` sent at ${f.lost_sent_s.join(', ')} s` : ''}`],
    ['clients that heard every ack. event once', `${f.clients_heard_everything} of ${f.clients.length}`],
    ...f.clients.map((c) => [`  ${c.client}`, `missed ${c.missed_acked}${c.missed_acked_lost ? ` (${c.missed_acked_lost} of them lost users)` : ''}, twice ${c.twice}, heard ${c.heard}, disconnects ${c.disconnects}` +
      (c.missed_detail.length ? `; missed writes answered at ${c.missed_detail.map((m) => `${m.answered_s} s via r${m.via} (own /readyz ${m.listener_readyz})`).join(', ')}` : '')]),
    ['events for users not stored afterwards', f.events_heard_not_stored],
    ...f.readyz.map((r) => [`/readyz replica ${r.replica}`,
      `200 while all writes failed: ${r.ready_while_all_writes_failing} (some failed: ${r.ready_while_some_writes_failing}); ` +
      `not 200 for ${r.unready_s} s ${JSON.stringify(r.unready_spans_s)}; samples ${JSON.stringify(r.statuses)}`]),
  ];
  console.log(table(rows));
  if (!f.listing.ok) console.log('note: GET /users?limit=1000 failed: whether failed requests were applied is judged from events only');
  else if (f.listing.failed_beyond) console.log(`note: ${f.listing.failed_beyond} failed requests were answered after the newest of the ${f.listing.count} users listed: judged from their events only`);
}

function summary(files) {
  const runs = files.map((file) => JSON.parse(fs.readFileSync(file, 'utf8')));
  const head = ['', ...runs.map((f) => `${f.shape}${f.label ? ` ${f.label}` : ''}`)];
  const row = (name, fn) => [name, ...runs.map(fn)];
  console.log(table([
    head,
    row('requests', (f) => f.requests),
    row('201', (f) => f.created_201),
    row('503 store_unavailable', (f) => f.unavailable_503),
    row('503 outcome_unknown (applied)', (f) => `${f.unknown_503} (${f.unknown_applied.applied})`),
    row('other failures', (f) => f.other_failures),
    row('first 201 again s', (f) => f.first_success_s ?? 'never'),
    row('recovery s (after last failure)', (f) => f.recovery_s ?? 'never'),
    row('longest gap without 201 s', (f) => f.longest_gap_without_201_s),
    row('acknowledged writes lost', (f) => f.acked_lost),
    row('clients heard all', (f) => `${f.clients_heard_everything}/${f.clients.length}`),
    row('missed per client', (f) => f.clients.map((c) => c.missed_acked).join('/')),
    row('heard twice per client', (f) => f.clients.map((c) => c.twice).join('/')),
    row('events for unstored users', (f) => f.events_heard_not_stored),
    row('/readyz 200 while all writes fail', (f) => f.readyz.map((r) => r.ready_while_all_writes_failing).join('/')),
    row('/readyz not 200 s', (f) => f.readyz.map((r) => r.unready_s).join('/')),
  ]));
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`failover.mjs: ${e.message}`);
    process.exit(2);
  }
  if (opts.summary) {
    summary(opts.summary);
    return;
  }
  const res = await run(opts);
  res.close();
  const f = figures(res);
  print(f);
  const line = JSON.stringify(f);
  console.log(line);
  if (opts.out) fs.writeFileSync(opts.out, `${line}\n`);
  if (opts.raw) {
    // Every request and /readyz sample, times in ms since the start of the load.
    const killMs = res.kill?.at ?? null;
    const requests = res.requests.map(({ i, replica, name, sent, answered, status, code, id, applied, storedNow }) =>
      ({ i, replica: replica + 1, name, sent: round(sent, 1), answered: round(answered, 1), status, code, id, applied, storedNow, lost: id ? res.stored.get(id) === false : undefined }));
    fs.writeFileSync(opts.raw, JSON.stringify({ kill_ms: killMs, requests, readyz: res.readyz }));
  }
}

main().then(() => process.exit(0), (e) => {
  console.error(`failover.mjs: the run broke: ${e?.stack ?? e}`);
  process.exit(1);
});
