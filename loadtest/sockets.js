// k6: many Socket.IO clients, spoken as Engine.IO v4 over k6 websockets (k6 has no
// Socket.IO client): open `/socket.io/?EIO=4&transport=websocket`, get `0{…}`, send `40`
// (with credentials: `40{"token":"…"}`, or `40{"token":"…","offset":"…"}` to resume), get
// `40{…}` (or `44{"message":"unauthorized"}`: refused); events arrive as
// `42["name",{…}]`; the server pings `2`, we answer `3`.
//
// Two scenarios run side by side:
// - listeners: SOCKETS clients that stay connected for DURATION and count every event
//   (Counter socketio_events, tagged by event name);
// - probes: an open model of RATE probes/s; each connects its own client, POSTs /users with
//   a unique name and measures until that user's user.registered reaches it
//   (Trend socketio_event_delay).
//
// AUTH=token, against a server with AUTH=token (API contract, sections 8 and 9):
// - listeners connect with SERVER_TOKEN when it is set (`switchboard token --server`), and
//   then hear every event; without it each registers its own user (POST /users) and
//   connects with that user's token: it is in no call and no room, so it must hear no
//   addressed event (call.*, room.joined) at all, only the events to everyone;
// - each probe registers a caller and a callee, connects one client for each with its own
//   token, places the call as the caller (POST /calls, Bearer, no fromUserId), measures
//   until the callee hears call.started (socketio_event_delay), then the caller ends the
//   call and both must hear call.ended. Each of the two clients must hear exactly its own
//   call's call.started and call.ended, once each, each with an offset, and no other
//   addressed event, although the other probes' calls run at the same time
//   (socketio_foreign_events, socketio_duplicate_events; an own event not heard within 10 s
//   is a probe timeout and, if the client was connected, socketio_missed_events). Every
//   RESUME_EVERY-th probe the callee disconnects after call.started, the call is ended
//   meanwhile, and the callee reconnects with `auth: { token, offset }` (the offset of its
//   call.started): it must get exactly the call.ended it missed (socketio_resumed);
// - a third scenario, refused, checks that a client without a token and one with a forged
//   token are both refused with connect_error `unauthorized` (socketio_refused).
//
//   SOCKET_URLS="http://127.0.0.1:3101 http://127.0.0.1:3102" BASE_URL=http://127.0.0.1:3101 \
//     SOCKETS=200 RATE=20 DURATION=30s k6 run loadtest/sockets.js
//   AUTH=token k6 run loadtest/sockets.js                                # user listeners
//   AUTH=token SERVER_TOKEN="$(AUTH_SECRET=… switchboard token --server)" k6 run loadtest/sockets.js
//
// Environment: BASE_URL (REST, default http://127.0.0.1:3000), SOCKET_URLS (space-separated
// servers the clients connect to, round-robin; default BASE_URL), SOCKETS (listeners, 50),
// RATE (probes/s, 5), DURATION (30s), VUS / MAX_VUS (probe VUs, 10 / 100), DELAY_P95_MS
// (50), TIMING_THRESHOLDS (1; 0 keeps only the error thresholds), AUTH (open; token as
// above), SERVER_TOKEN (token mode: the listeners' token), RESUME_EVERY (token mode: every
// Nth probe resumes, 2; 0 never). A probe places its call as soon as both its connects are
// acknowledged: a client whose connect was acknowledged must hear every event after it.
import http from 'k6/http';
import encoding from 'k6/encoding';
import exec from 'k6/execution';
import { check, fail } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import { JSON_HEADERS, TOKEN_MODE, expectAuthMode, headers as bearer } from './auth.js';
import { WebSocket } from 'k6/experimental/websockets';
import { setTimeout, clearTimeout } from 'k6/timers';

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:3000').replace(/\/$/, '');
const SOCKET_URLS = (__ENV.SOCKET_URLS || BASE_URL).split(/[\s,]+/).filter(Boolean);
const SOCKETS = Number(__ENV.SOCKETS || 50);
const RATE = Number(__ENV.RATE || 5);
const DURATION = __ENV.DURATION || '30s';
const VUS = Number(__ENV.VUS || 10);
const MAX_VUS = Number(__ENV.MAX_VUS || 100);
const DELAY_P95_MS = Number(__ENV.DELAY_P95_MS || 50);
const TIMING = __ENV.TIMING_THRESHOLDS !== '0';
const SERVER_TOKEN = __ENV.SERVER_TOKEN || '';
const RESUME_EVERY = Number(__ENV.RESUME_EVERY === undefined ? 2 : __ENV.RESUME_EVERY);
const PROBE_TIMEOUT_MS = 10000;

if (SERVER_TOKEN && !TOKEN_MODE) {
  throw new Error('SERVER_TOKEN needs AUTH=token');
}
if (!(Number.isInteger(RESUME_EVERY) && RESUME_EVERY >= 0)) {
  throw new Error(`RESUME_EVERY must be a whole number, not ${__ENV.RESUME_EVERY}`);
}

/** Events for one audience each (AUTH=token): they carry an offset and are kept. */
const ADDRESSED = new Set([
  'call.started', 'call.accepted', 'call.declined', 'call.missed', 'call.ended', 'room.joined',
]);

const events = new Counter('socketio_events');
const connected = new Rate('socketio_connected');
const delay = new Trend('socketio_event_delay', true);
const probeTimeouts = new Counter('socketio_probe_timeouts');
/** Token mode: addressed events a client heard that were not for its user. */
const foreign = new Counter('socketio_foreign_events');
/**
 * Token mode: an event of its own call that a connected client (its connect acknowledged)
 * had not heard when its probe timed out, tagged by event and client.
 */
const missed = new Counter('socketio_missed_events');
/** Token mode: one of its own events that a client heard more than once. */
const duplicates = new Counter('socketio_duplicate_events');
/** Token mode: a resuming callee got exactly the call.ended it missed. */
const resumed = new Rate('socketio_resumed');
/** Token mode: clients without a valid token were refused with `unauthorized`. */
const refused = new Rate('socketio_refused');

/** Seconds in a k6 duration string such as `30s`, `2m` or `1m30s`. */
function seconds(d) {
  let total = 0;
  for (const [, n, unit] of d.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(n) * { ms: 0.001, s: 1, m: 60, h: 3600 }[unit];
  }
  return total;
}
const HOLD_MS = seconds(DURATION) * 1000;
const PROBE_SECS = Math.max(1, seconds(DURATION) - 3);

const thresholds = {
  socketio_connected: ['rate>0.99'],
  socketio_events: ['count>0'],
  socketio_probe_timeouts: ['count==0'],
  checks: ['rate>0.99'],
};
if (TOKEN_MODE) {
  thresholds.socketio_foreign_events = ['count==0'];
  thresholds.socketio_duplicate_events = ['count==0'];
  thresholds.socketio_refused = ['rate==1'];
  // Every probe that resumes must get what it missed (when the run has one).
  if (RESUME_EVERY > 0 && RATE * PROBE_SECS >= RESUME_EVERY) thresholds.socketio_resumed = ['rate==1'];
  // A server connection hears every call.
  if (SERVER_TOKEN) thresholds['socketio_events{event:call.started}'] = ['count>0'];
}
if (TIMING) {
  thresholds.socketio_event_delay = [`p(95)<${DELAY_P95_MS}`];
}

const scenarios = {
  listeners: {
    executor: 'per-vu-iterations',
    exec: 'listener',
    vus: SOCKETS,
    iterations: 1,
    maxDuration: `${seconds(DURATION) + 30}s`,
  },
  probes: {
    executor: 'constant-arrival-rate',
    exec: 'probe',
    rate: RATE,
    timeUnit: '1s',
    // Start once the listeners are connected, stop before they hang up.
    startTime: '2s',
    duration: `${PROBE_SECS}s`,
    preAllocatedVUs: VUS,
    maxVUs: MAX_VUS,
  },
};
if (TOKEN_MODE) {
  scenarios.refused = {
    executor: 'per-vu-iterations',
    exec: 'refusal',
    vus: 1,
    iterations: 1,
    maxDuration: '30s',
  };
}

export const options = {
  scenarios,
  thresholds,
  summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'max'],
};


function socketUrl(base) {
  return `${base.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`;
}

/**
 * Opens one Socket.IO client: `auth` (an object, e.g. `{ token }`, or undefined) goes in
 * the connect packet. Calls `on.ready()` once the default namespace is joined, then
 * `on.event(name, arg)` for each event (arg: `{ data, offset? }`), or `on.refused(message)`
 * if the server refuses the connection. Counts the connection in socketio_connected unless
 * `expectRefusal`.
 */
function socketio(base, auth, on, expectRefusal = false) {
  const ws = new WebSocket(socketUrl(base));
  let joined = false;
  let settled = false;
  const settle = (ok) => {
    if (settled) return;
    settled = true;
    if (!expectRefusal) connected.add(ok);
  };
  ws.onmessage = (e) => {
    const packet = String(e.data);
    if (packet === '2') {
      ws.send('3'); // Engine.IO ping: answer or be dropped
    } else if (packet.startsWith('0')) {
      // Engine.IO open: join the default namespace, with the credentials if any.
      ws.send(auth ? `40${JSON.stringify(auth)}` : '40');
    } else if (packet.startsWith('40')) {
      joined = true;
      settle(true);
      if (on.ready) on.ready();
    } else if (packet.startsWith('44')) {
      // CONNECT_ERROR: refused by the server (Socket.IO's connect_error).
      settle(false);
      let message;
      try {
        message = JSON.parse(packet.slice(2)).message;
      } catch (err) {
        message = packet.slice(2);
      }
      ws.close();
      if (on.refused) on.refused(message);
    } else if (packet.startsWith('42') && joined) {
      const [name, arg] = JSON.parse(packet.slice(2));
      if (on.event) on.event(name, arg || {});
    }
  };
  ws.onerror = () => settle(false);
  return ws;
}

/** POST /users; the parsed user (with `token` in token mode), or null. */
function register(name) {
  const res = http.post(`${BASE_URL}/users`, JSON.stringify({ name }), {
    headers: JSON_HEADERS,
    tags: { name: 'POST /users' },
  });
  const ok = check(res, { 'POST /users is 201': (r) => r.status === 201 });
  if (!ok) return null;
  const user = res.json();
  if (TOKEN_MODE && !check(user, { 'registration returns a token': (u) => typeof u.token === 'string' })) {
    return null;
  }
  return user;
}

/**
 * The server runs the mode AUTH names (token: GET /users is 401 without a token), and a
 * SERVER_TOKEN is accepted.
 */
export function setup() {
  expectAuthMode(BASE_URL);
  const anything = http.expectedStatuses({ min: 100, max: 599 });
  if (SERVER_TOKEN) {
    const as = http.get(`${BASE_URL}/users?limit=1`, {
      headers: bearer(SERVER_TOKEN),
      tags: { name: 'setup: GET /users' },
      responseCallback: anything,
    });
    if (as.status !== 200) fail(`SERVER_TOKEN is refused by ${BASE_URL}: GET /users answers ${as.status}`);
  }
}

export function listener() {
  const base = SOCKET_URLS[(__VU - 1) % SOCKET_URLS.length];
  let auth;
  // A user's connection: it is in no call and no room, so no addressed event is for it.
  let userListener = false;
  if (TOKEN_MODE && SERVER_TOKEN) {
    auth = { token: SERVER_TOKEN };
  } else if (TOKEN_MODE) {
    const user = register(`listener-${__VU}-${Date.now()}`);
    if (!user) {
      connected.add(false);
      return;
    }
    auth = { token: user.token };
    userListener = true;
  }
  const ws = socketio(base, auth, {
    event: (name) => {
      events.add(1, { event: name });
      if (userListener && ADDRESSED.has(name)) foreign.add(1, { event: name, client: 'listener' });
    },
  });
  setTimeout(() => ws.close(), HOLD_MS);
}

export function probe() {
  if (TOKEN_MODE) {
    callProbe();
  } else {
    registrationProbe();
  }
}

/** AUTH=open: until this probe's user.registered arrives. */
function registrationProbe() {
  const base = SOCKET_URLS[__ITER % SOCKET_URLS.length];
  const name = `probe-${__VU}-${__ITER}-${Date.now()}`;
  let sent = 0;
  let timer = null;
  const ws = socketio(base, undefined, {
    ready: () => {
      sent = Date.now();
      const res = http.post(`${BASE_URL}/users`, JSON.stringify({ name }), {
        headers: JSON_HEADERS,
        tags: { name: 'POST /users' },
      });
      check(res, { 'POST /users is 201': (r) => r.status === 201 });
      if (res.status !== 201) {
        clearTimeout(timer);
        ws.close();
      }
    },
    event: (event, arg) => {
      if (event === 'user.registered' && arg.data && arg.data.name === name) {
        delay.add(Date.now() - sent, { event });
        clearTimeout(timer);
        ws.close();
      }
    },
  });
  // A probe whose event never comes is an error, not a slow sample.
  timer = setTimeout(() => {
    probeTimeouts.add(1);
    ws.close();
  }, PROBE_TIMEOUT_MS);
}

/**
 * AUTH=token: a call between two fresh users, each on its own client, each of which must
 * hear exactly its own call's events (see the top of the file).
 */
function callProbe() {
  const n = exec.scenario.iterationInTest;
  const base = SOCKET_URLS[n % SOCKET_URLS.length];
  const resume = RESUME_EVERY > 0 && n % RESUME_EVERY === RESUME_EVERY - 1;
  const tag = `${__VU}-${__ITER}-${Date.now()}`;
  const caller = register(`probe caller ${tag}`);
  const callee = register(`probe callee ${tag}`);
  if (!caller || !callee) return;

  let callId = null;
  let sent = 0;
  let phase = 'connecting';
  let timer = null;
  const clients = [];
  // One entry per client: who it is, what it heard of its own call, the last offset.
  const party = (role, user) => ({ role, user, heard: {}, offset: null, ws: null, ready: false });
  const ofCaller = party('caller', caller);
  const ofCallee = party('callee', callee);
  let ofResumed = null;

  const finish = () => {
    phase = 'done';
    clearTimeout(timer);
    for (const ws of clients) ws.close();
  };

  const connect = (p, auth) => {
    p.ws = socketio(base, auth, {
      ready: () => {
        p.ready = true;
        if (phase !== 'connecting' || !ofCaller.ready || !ofCallee.ready) return;
        // At once: a client whose connect was acknowledged hears every event after it.
        placeCall();
      },
      event: (name, arg) => heard(p, name, arg),
      refused: (message) => {
        check(message, { [`${p.role} connects with its token`]: () => false });
        finish();
      },
    });
    clients.push(p.ws);
  };

  const placeCall = () => {
    if (phase === 'done') return;
    phase = 'ringing';
    sent = Date.now();
    // As the caller: fromUserId omitted, the server takes the token's user.
    const res = http.post(`${BASE_URL}/calls`, JSON.stringify({ toUserId: callee.id }), {
      headers: bearer(caller.token),
      tags: { name: 'POST /calls' },
    });
    if (!check(res, { 'POST /calls is 201': (r) => r.status === 201 })) {
      finish();
      return;
    }
    callId = res.json().id;
    check(res.json(), { 'the call is from the token\'s user': (c) => c.fromUserId === caller.id });
  };

  const endCall = () => {
    phase = 'ending';
    const res = http.post(`${BASE_URL}/calls/${callId}/end`, null, {
      headers: bearer(caller.token),
      tags: { name: 'POST /calls/:id/end' },
    });
    if (!check(res, { 'POST /calls/:id/end is 200': (r) => r.status === 200 })) finish();
  };

  const heard = (p, name, arg) => {
    if (phase === 'done') return;
    if (name === 'session.resync') {
      // Only the resuming callee sends an offset, and the one it sends is kept.
      check(name, { [`${p.role} gets no session.resync`]: () => false });
      if (p === ofResumed) resumed.add(false);
      finish();
      return;
    }
    if (!ADDRESSED.has(name)) return; // the events to everyone are not checked here
    const id = arg.data && arg.data.callId;
    // k6's HTTP calls block this VU's event loop: the POST /calls answer (callId) is known
    // before any event of the call is handled.
    if (callId === null || id !== callId) {
      foreign.add(1, { event: name, client: p.role });
      return;
    }
    check(arg, {
      'an addressed event carries an offset': (a) => typeof a.offset === 'string' && a.offset !== '',
    });
    p.offset = arg.offset;
    p.heard[name] = (p.heard[name] || 0) + 1;
    if (p.heard[name] > 1) duplicates.add(1, { event: name, client: p.role });
    if (name === 'call.started' && p === ofCallee) delay.add(Date.now() - sent, { event: name });
    step();
  };

  // What happens next, once both clients heard what the current phase waits for.
  const step = () => {
    if (phase === 'ringing' && ofCaller.heard['call.started'] && ofCallee.heard['call.started']) {
      if (resume) {
        // The callee drops; the call ends while it is away; it comes back with its offset.
        ofCallee.ws.close();
        endCall();
        if (phase !== 'ending') return;
        ofResumed = party('callee (resumed)', callee);
        connect(ofResumed, { token: callee.token, offset: ofCallee.offset });
      } else {
        endCall();
      }
    } else if (phase === 'ending') {
      const calleeSide = resume ? ofResumed : ofCallee;
      if (ofCaller.heard['call.ended'] && calleeSide && calleeSide.heard['call.ended']) {
        if (resume) {
          resumed.add(ofResumed.heard['call.ended'] === 1 && Object.keys(ofResumed.heard).length === 1);
        }
        finish();
      }
    }
  };

  connect(ofCaller, { token: caller.token });
  connect(ofCallee, { token: callee.token });
  // A probe whose events never come is an error, not a slow sample.
  timer = setTimeout(() => {
    probeTimeouts.add(1, { phase });
    // Which connected client missed what its phase waits for.
    const waited = { ringing: 'call.started', ending: 'call.ended' }[phase];
    const expecting = phase === 'ending'
      ? [ofCaller, resume ? ofResumed : ofCallee]
      : [ofCaller, ofCallee];
    for (const p of expecting) {
      if (waited && p && p.ready && !p.heard[waited]) missed.add(1, { event: waited, client: p.role });
    }
    if (resume && phase === 'ending') resumed.add(false);
    finish();
  }, PROBE_TIMEOUT_MS);
}

/** AUTH=token: without a token, and with a forged one, the connection is refused. */
export function refusal() {
  const base = SOCKET_URLS[0];
  const header = encoding.b64encode(JSON.stringify({ alg: 'HS256', typ: 'JWT' }), 'rawurl');
  const claims = encoding.b64encode(
    JSON.stringify({ role: 'server', exp: Math.floor(Date.now() / 1000) + 3600 }),
    'rawurl',
  );
  const forged = `${header}.${claims}.${encoding.b64encode('not the signature', 'rawurl')}`;
  for (const [what, auth] of [['no token', undefined], ['a forged token', { token: forged }]]) {
    let timer = null;
    const ws = socketio(
      base,
      auth,
      {
        ready: () => {
          refused.add(false, { with: what });
          clearTimeout(timer);
          ws.close();
        },
        refused: (message) => {
          refused.add(message === 'unauthorized', { with: what });
          clearTimeout(timer);
        },
      },
      true,
    );
    timer = setTimeout(() => {
      refused.add(false, { with: what });
      ws.close();
    }, PROBE_TIMEOUT_MS);
  }
}
