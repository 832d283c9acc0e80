// A real browser on another origin, through the cookie-affinity load balancer of
// `scripts/cluster.sh up --lb cookie`: headless Chromium loads page.html from origin A (a
// tiny server here) and connects to the load balancer, another port of the same host
// (cross-origin, same-site). For DURATION_MS events are caused on every replica in turn;
// the page must hear each once, on one Engine.IO session that upgraded to websocket.
//
//   node tests/browser/cross_origin.mjs LB_URL ORIGIN_PORT REPLICA_URL...
//
// The replicas must allow origin http://127.0.0.1:ORIGIN_PORT (CORS_ORIGINS). Prints
// "ok …" and exits 0, or prints "FAIL: …" and exits 1.
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLIENT = path.join(HERE, '../client');
const CHROMIUM = '/usr/bin/chromium';
const COOKIE = 'SWITCHBOARD_ROUTE';
/** How long events are caused, one per PACE_MS, round robin over the replicas. */
const DURATION_MS = 60_000;
const PACE_MS = 1_000;
/** Longest wait for anything the page should see. */
const WAIT_MS = 15_000;

const [lb, originPort, ...replicas] = process.argv.slice(2);
if (!lb || !originPort || replicas.length === 0) {
  console.error('usage: node cross_origin.mjs LB_URL ORIGIN_PORT REPLICA_URL...');
  process.exit(2);
}
const origin = `http://127.0.0.1:${originPort}`;

class Failure extends Error {}
const check = (ok, message) => {
  if (!ok) throw new Failure(message);
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** What the page reported, in order, and what went wrong so far. */
const seen = [];
const problems = () => seen.filter((r) => ['connect_error', 'disconnect', 'reconnect_attempt', 'error'].includes(r.kind));

/** Waits until `ready()` holds, failing at once when the page reports a problem. */
async function waitFor(what, ready, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    check(problems().length === 0, `the page reported ${JSON.stringify(problems())}`);
    if (ready()) return;
    check(Date.now() < deadline, `timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** The load balancer itself: a cookie for a request without one, stickiness with it. */
async function checkLoadBalancer() {
  const first = await fetch(`${lb}/healthz`);
  const setCookie = first.headers.get('set-cookie') ?? '';
  check(
    new RegExp(`^${COOKIE}=[0-9a-f]+; Path=/; HttpOnly$`).test(setCookie),
    `a request without the cookie gets it, got Set-Cookie: ${JSON.stringify(setCookie)}`,
  );
  const cookie = setCookie.split(';')[0];
  const upstreams = async (headers) => {
    const answered = new Set();
    for (let i = 0; i < 30; i++) {
      const res = await fetch(`${lb}/healthz`, { headers });
      check(res.ok && res.headers.has('x-upstream'), `the load balancer names the replica (${res.status})`);
      check(!headers.cookie || !res.headers.has('set-cookie'), 'a request with the cookie gets no new one');
      answered.add(res.headers.get('x-upstream'));
    }
    return answered;
  };
  // The failure mode is real: a client that does not send the cookie is spread over replicas,
  // so an Engine.IO polling session would break.
  const without = await upstreams({});
  check(without.size > 1, `requests without the cookie all went to ${[...without]}`);
  const withCookie = await upstreams({ cookie });
  check(withCookie.size === 1, `requests with the cookie went to ${[...withCookie]}`);
}

/** Origin A: the page and the npm client's browser bundle. */
function serveOrigin() {
  const files = {
    '/': [path.join(HERE, 'page.html'), 'text/html; charset=utf-8'],
    '/socket.io.min.js': [path.join(CLIENT, 'node_modules/socket.io-client/dist/socket.io.min.js'), 'text/javascript'],
  };
  const server = http.createServer((req, res) => {
    const file = files[new URL(req.url, origin).pathname];
    if (!file) return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': file[1] }).end(fs.readFileSync(file[0]));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(originPort), '127.0.0.1', () => resolve(server));
  });
}

async function post(url, body) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  check(res.status === 201, `POST ${url} answered ${res.status}: ${text}`);
  return JSON.parse(text);
}

async function main() {
  check(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: install Debian's chromium (scripts/install-deps.sh installs it)`);
  let chromium;
  try {
    ({ chromium } = createRequire(path.join(CLIENT, 'package.json'))('playwright-core'));
  } catch {
    throw new Failure('playwright-core not found: run `npm ci` in tests/client');
  }
  await checkLoadBalancer();

  const server = await serveOrigin();
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const consoleErrors = [];
    page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
    page.on('pageerror', (e) => seen.push({ kind: 'error', message: `page error: ${e.message}` }));
    // Which replica answered each of the page's requests to the load balancer, and whether
    // the browser sent the affinity cookie with it.
    const exchanges = [];
    page.on('response', async (res) => {
      if (!res.url().startsWith(lb)) return;
      const [sent, got] = await Promise.all([res.request().allHeaders(), res.allHeaders()]);
      exchanges.push({ url: res.url(), cookie: (sent.cookie ?? '').includes(`${COOKIE}=`), upstream: got['x-upstream'] });
    });
    await page.exposeFunction('report', (r) => seen.push({ ...r, at: Date.now() }));
    await page.goto(`${origin}/?lb=${encodeURIComponent(lb)}`);
    try {
      await waitFor('the socket to connect', () => seen.some((r) => r.kind === 'connect'));
      await waitFor('the upgrade to websocket', () => seen.some((r) => r.kind === 'upgrade' && r.to === 'websocket'));
    } catch (e) {
      if (consoleErrors.length) e.message += `\nbrowser console:\n${consoleErrors.join('\n')}`;
      throw e;
    }

    // Events caused on every replica, paced; the page must hear every one.
    const expected = [];
    const end = Date.now() + DURATION_MS;
    for (let i = 0; Date.now() < end; i++) {
      const name = `cross-origin-${i}`;
      const user = await post(`${replicas[i % replicas.length]}/users`, { name });
      expected.push({ id: user.id, name });
      check(problems().length === 0, `the page reported ${JSON.stringify(problems())}`);
      await sleep(PACE_MS);
    }
    const heard = () => seen.filter((r) => r.kind === 'event' && r.name === 'user.registered').map((r) => r.arg);
    await waitFor(`${expected.length} user.registered events`, () => heard().length >= expected.length);
    const byId = new Map(heard().map((a) => [a.data.id, a]));
    check(heard().length === expected.length && byId.size === expected.length, `each event once: heard ${heard().length}, ${byId.size} distinct, caused ${expected.length}`);
    for (const { id, name } of expected) {
      check(JSON.stringify(byId.get(id)) === JSON.stringify({ data: { id, name } }), `the page heard ${name} (${id}) as ${JSON.stringify(byId.get(id))}`);
    }

    // One session, on one replica, upgraded; the browser kept and sent the cookie.
    check(problems().length === 0, `the page reported ${JSON.stringify(problems())}`);
    const connects = seen.filter((r) => r.kind === 'connect');
    check(connects.length === 1, `the socket connected ${connects.length} times`);
    const transport = await page.evaluate(() => window.socket.io.engine.transport.name);
    check(transport === 'websocket', `the socket ends on ${transport}, not websocket`);
    const cookies = await context.cookies(lb);
    check(cookies.some((c) => c.name === COOKIE), `the browser kept no ${COOKIE} cookie: ${JSON.stringify(cookies)}`);
    check(exchanges.length >= 2, `the page's requests to the load balancer were seen (${exchanges.length})`);
    const upstreams = new Set(exchanges.map((x) => x.upstream));
    check(upstreams.size === 1, `the page's requests went to several replicas: ${JSON.stringify(exchanges)}`);
    check(exchanges.slice(1).every((x) => x.cookie), `a request after the first lacked the cookie: ${JSON.stringify(exchanges)}`);

    const perReplica = replicas.map((_, r) => expected.filter((_, i) => i % replicas.length === r).length);
    console.log(
      `ok: ${expected.length} events (per replica ${perReplica.join('/')}) heard once each over ${DURATION_MS / 1000} s;`,
      `session ${connects[0].sid} on ${[...upstreams][0]}, ${exchanges.length} polling requests, then websocket`,
    );
  } finally {
    await context.close();
    server.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

// A last bound on the whole run, whatever hangs.
setTimeout(() => {
  console.error('FAIL: the browser test did not finish in time');
  process.exit(1);
}, DURATION_MS + 4 * WAIT_MS).unref();

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`FAIL: ${e instanceof Failure ? e.message : e.stack}`);
    process.exit(1);
  },
);
