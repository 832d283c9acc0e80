// k6: the REST mix of a calling app, as an open model (a fixed arrival rate of flows, so a
// slow server is measured as slow rather than being offered less work).
//
// One iteration = one user journey: register a caller and a callee, place a call and take it
// to one of the ends of the call lifecycle (API contract section 6), then create a room and
// join it. Which end is picked in turn from MIX over the iterations of the whole test, so
// every kind shows up in any run of at least as many iterations as MIX has slots:
//
//   completed  callee accepts (POST /calls/:id/accept, or every second time the v1 way:
//              the callee's POST /livekit/token), the call is listed by
//              GET /calls?status=accepted, the callee fetches a token, the caller ends it:
//              endReason completed, endedBy the caller
//   declined   the callee declines (POST /calls/:id/decline, reason declined)
//   busy       the callee declines with reason busy
//   cancelled  the caller ends it while it rings (endReason cancelled); the callee's late
//              POST /calls/:id/accept must then be 409 call_ended
//   missed     the call is left ringing (GET /calls/:id says initiated). With
//              RING_TIMEOUT_S set (the server's CALL_RING_TIMEOUT), the iteration waits until
//              RING_TIMEOUT_S + 2 seconds after the call started and GET /calls/:id must say
//              ended, endReason missed, endedBy null; unset, the server misses it later on its
//              own (or never, with CALL_RING_TIMEOUT=0) and nothing checks it.
//
// LIFECYCLE=0 runs the v1 journey instead, for servers without the lifecycle (the Node
// baseline): users, call, the callee's POST /livekit/token, POST /calls/:id/end, room, join.
//
// AUTH=token runs the same journeys against a server with AUTH=token (API contract, section
// 8): each registration returns the user's token, and every other request carries the token
// of the user acting (Authorization: Bearer): the caller places, ends and cancels the call
// and creates and joins the room, the callee accepts, declines and fetches LiveKit tokens.
// Fields that name the actor (fromUserId, userId) are omitted on even iterations (the server
// takes the token's user; a body left empty is not sent: accept, end and join then have
// none) and name the token's own user on odd ones. setup() registers one
// more user, an outsider: in the missed journey it must get 404 call_not_found for the call
// and 403 forbidden for the callee's list of calls (calls are private to their two parties).
// setup() also checks that the server runs the mode AUTH names (GET /users: 401 without a
// token in token mode), so a mismatch fails at once rather than as 401s.
//
//   k6 run loadtest/rest.js                               # against http://127.0.0.1:3000
//   BASE_URL=http://127.0.0.1:3100 RATE=50 DURATION=1m k6 run loadtest/rest.js
//   RING_TIMEOUT_S=3 k6 run loadtest/rest.js              # server: --call-ring-timeout 3
//   LIFECYCLE=0 BASE_URL=http://127.0.0.1:3200 k6 run loadtest/rest.js   # a v1 server
//   AUTH=token k6 run loadtest/rest.js                    # server: --auth token
//
// Environment: BASE_URL (default http://127.0.0.1:3000), RATE (journeys/s, 10), DURATION
// (30s), VUS (pre-allocated VUs, 20), MAX_VUS (200), P95_MS (100), P99_MS (250),
// TIMING_THRESHOLDS (1; 0 keeps only the error thresholds, as the smoke test does),
// LIFECYCLE (1; 0: the v1 journey), MIX (kind:weight,… default
// completed:4,declined:1,busy:1,cancelled:2,missed:2), RING_TIMEOUT_S (unset: missed calls
// are not checked), AUTH (open; token: bearer tokens as above). A missed journey that waits
// holds its VU for RING_TIMEOUT_S + 2 s: at RATE r, r × share(missed) × (RING_TIMEOUT_S + 2)
// more VUs are busy, which the defaults of VUS and MAX_VUS then add.
import http from 'k6/http';
import encoding from 'k6/encoding';
import exec from 'k6/execution';
import { check, fail, sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { JSON_HEADERS, TOKEN_MODE, expectAuthMode, headers } from './auth.js';

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:3000').replace(/\/$/, '');
const RATE = Number(__ENV.RATE || 10);
const DURATION = __ENV.DURATION || '30s';
const P95_MS = Number(__ENV.P95_MS || 100);
const P99_MS = Number(__ENV.P99_MS || 250);
const TIMING = __ENV.TIMING_THRESHOLDS !== '0';
const LIFECYCLE = __ENV.LIFECYCLE !== '0';
const RING_TIMEOUT_S = __ENV.RING_TIMEOUT_S ? Number(__ENV.RING_TIMEOUT_S) : 0;
const KINDS = ['completed', 'declined', 'busy', 'cancelled', 'missed'];


if (!(RING_TIMEOUT_S >= 0) || !Number.isFinite(RING_TIMEOUT_S)) {
  throw new Error(`RING_TIMEOUT_S must be a number of seconds, not ${__ENV.RING_TIMEOUT_S}`);
}
if (RING_TIMEOUT_S > 0 && !LIFECYCLE) {
  throw new Error('RING_TIMEOUT_S needs the lifecycle journey (LIFECYCLE=0 never misses a call)');
}

/** MIX as a list of slots, one per unit of weight, in the order given. */
function parseMix(spec) {
  const slots = [];
  for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [kind, weight = '1'] = part.split(':').map((s) => s.trim());
    const n = Number(weight);
    if (!KINDS.includes(kind) || !Number.isInteger(n) || n < 0) {
      throw new Error(`MIX: "${part}" is not kind:weight with kind one of ${KINDS.join(', ')}`);
    }
    for (let i = 0; i < n; i += 1) slots.push(kind);
  }
  if (slots.length === 0) throw new Error('MIX has no journey');
  return slots;
}
const MIX = parseMix(__ENV.MIX || 'completed:4,declined:1,busy:1,cancelled:2,missed:2');

// Journeys that wait for a miss hold their VU RING_TIMEOUT_S + 2 s: pre-allocate for them.
const WAITING_VUS = LIFECYCLE && RING_TIMEOUT_S > 0
  ? Math.ceil((RATE * MIX.filter((k) => k === 'missed').length * (RING_TIMEOUT_S + 2)) / MIX.length)
  : 0;
const VUS = Number(__ENV.VUS || 20 + WAITING_VUS);
const MAX_VUS = Number(__ENV.MAX_VUS || Math.max(200, VUS));

/** Whole journeys, start to finish: what a user waits for (the wait for a miss excluded). */
const journey = new Trend('journey_duration', true);
/** How the lifecycle journeys' calls ended, as checked. */
const ends = Object.fromEntries(
  KINDS.map((k) => [k, new Counter(`calls_${k}`)]),
);
/** Calls left ringing without RING_TIMEOUT_S: the server misses them later, unchecked. */
const leftRinging = new Counter('calls_left_ringing');

const thresholds = {
  // Errors fail the run whatever the timing settings; every check must hold.
  http_req_failed: ['rate<0.01'],
  checks: ['rate==1'],
};
if (TIMING) {
  thresholds.http_req_duration = [`p(95)<${P95_MS}`, `p(99)<${P99_MS}`];
}

export const options = {
  scenarios: {
    journeys: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: VUS,
      maxVUs: MAX_VUS,
      // A journey waiting for its call to be missed must be let finish.
      gracefulStop: `${Math.max(30, Math.ceil(RING_TIMEOUT_S) + 12)}s`,
    },
  },
  thresholds,
  summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'max'],
};

/** Non-2xx statuses a journey asks for on purpose must not count in http_req_failed. */
const EXPECTED = Object.fromEntries([401, 403, 404, 409].map((s) => [s, http.expectedStatuses(s)]));

/**
 * The body with the field that names the actor (fromUserId, userId): always in open mode; in
 * token mode omitted on even iterations (the server takes the token's user; an empty body is
 * not sent at all) and naming the token's own user on odd ones.
 */
function actor(body, field, user) {
  if (!TOKEN_MODE || __ITER % 2 === 1) return { ...body, [field]: user.id };
  return Object.keys(body).length > 0 ? body : undefined;
}

/**
 * Sends a request, tagged with the route template so per-endpoint figures stay readable,
 * as the user whose token `as` is (a user from POST /users, or a token string; ignored with
 * AUTH=open); checks the status and stops the iteration on any other. Returns the parsed
 * body.
 */
function request(method, path, body, name, expected, as) {
  const token = TOKEN_MODE && as ? (typeof as === 'string' ? as : as.token) : undefined;
  const params = { headers: headers(token), tags: { name } };
  if (EXPECTED[expected]) params.responseCallback = EXPECTED[expected];
  const payload = body === undefined ? null : JSON.stringify(body);
  const res = http.request(method, `${BASE_URL}${path}`, payload, params);
  const ok = check(res, { [`${name} is ${expected}`]: (r) => r.status === expected });
  if (!ok) {
    fail(`${name}: status ${res.status}: ${String(res.body).slice(0, 200)}`);
  }
  return res.json();
}
const post = (path, body, name, expected, as) => request('POST', path, body, name, expected, as);
const get = (path, name, as, expected = 200) => request('GET', path, undefined, name, expected, as);

/** The `sub` (identity) of a LiveKit token, or undefined if it is not a JWT. */
function tokenSubject(token) {
  try {
    return JSON.parse(encoding.b64decode(token.split('.')[1], 'rawurl', 's')).sub;
  } catch (e) {
    return undefined;
  }
}

const isTime = (v) => typeof v === 'string' && !Number.isNaN(Date.parse(v));

/**
 * The server runs the mode AUTH names (token: GET /users is 401 without a token); in token
 * mode, registers the outsider. A v2 server answers an unknown call's accept with 404
 * call_not_found; a v1 one has no route. Returns { outsider } (token mode).
 */
export function setup() {
  expectAuthMode(BASE_URL);
  const data = {};
  if (TOKEN_MODE) {
    const res = http.post(`${BASE_URL}/users`, JSON.stringify({ name: 'outsider' }), {
      headers: JSON_HEADERS,
      tags: { name: 'setup: POST /users' },
    });
    const outsider = res.status === 201 ? res.json() : {};
    if (typeof outsider.token !== 'string' || !isTime(outsider.tokenExpiresAt)) {
      fail(`POST /users in token mode: ${res.status}, no token: ${String(res.body).slice(0, 200)}`);
    }
    data.outsider = outsider;
  }
  if (!LIFECYCLE) return data;
  const id = '00000000-0000-4000-8000-000000000000';
  // Token mode: as the outsider, without the userId (it defaults to the token's user).
  const body = TOKEN_MODE ? {} : { userId: id };
  const res = http.post(`${BASE_URL}/calls/${id}/accept`, JSON.stringify(body), {
    headers: headers(data.outsider && data.outsider.token),
    tags: { name: 'setup: probe /calls/:id/accept' },
    responseCallback: EXPECTED[404],
  });
  let code;
  try {
    code = res.json().code;
  } catch (e) {
    code = undefined;
  }
  if (res.status !== 404 || code !== 'call_not_found') {
    fail(`${BASE_URL} has no call lifecycle (probe: ${res.status} ${code}): run with LIFECYCLE=0`);
  }
  return data;
}

/** Registers a user; in token mode, its token comes with it. */
function register(name) {
  const user = post('/users', { name }, 'POST /users', 201);
  if (TOKEN_MODE) {
    check(user, {
      'registration returns a token': (u) => typeof u.token === 'string' && isTime(u.tokenExpiresAt),
    });
  }
  return user;
}

export default function (data) {
  const started = Date.now();
  const n = exec.scenario.iterationInTest;
  const tag = `${__VU}-${__ITER}`;
  const caller = register(`caller ${tag}`);
  const callee = register(`callee ${tag}`);

  const call = post(
    '/calls',
    actor({ toUserId: callee.id }, 'fromUserId', caller),
    'POST /calls',
    201,
    caller,
  );
  const callStarted = Date.now();
  check(call, {
    'call has a caller token': (c) => typeof c.token === 'string' && c.token.length > 0,
    'call is initiated': (c) => c.status === 'initiated',
  });

  const kind = LIFECYCLE ? MIX[n % MIX.length] : 'v1';
  if (kind === 'v1') {
    v1Call(call, caller, callee);
  } else {
    check(call, {
      'new call has no answerTime, endReason, endedBy': (c) =>
        c.answerTime === null && c.endReason === null && c.endedBy === null && c.endTime === null,
    });
    LIFECYCLE_JOURNEYS[kind](call, caller, callee, n, data && data.outsider);
  }

  const room = post('/rooms', { name: `room ${tag}` }, 'POST /rooms', 201, caller);
  const joined = post(
    `/rooms/${room.id}/join`,
    actor({}, 'userId', caller),
    'POST /rooms/:id/join',
    200,
    caller,
  );
  check(joined, { 'joined user is a participant': (j) => j.room.participants.includes(caller.id) });

  journey.add(Date.now() - started);

  if (kind === 'missed') {
    if (RING_TIMEOUT_S > 0) {
      checkMissed(call, caller, callStarted);
    } else {
      leftRinging.add(1);
    }
  }
}

/** The incoming-call flow: the callee asks for its own token for the call's room. */
function calleeToken(call, callee) {
  const token = post(
    '/livekit/token',
    actor({ roomName: call.roomName }, 'userId', callee),
    'POST /livekit/token',
    200,
    callee,
  );
  check(token, { 'token is for the callee': (t) => t.identity === callee.id });
}

/** The v1 journey's call: the callee's token, then the end. */
function v1Call(call, caller, callee) {
  calleeToken(call, callee);

  const ended = post(`/calls/${call.id}/end`, undefined, 'POST /calls/:id/end', 200, caller);
  check(ended, { 'call is ended': (c) => c.status === 'ended' });
}

const LIFECYCLE_JOURNEYS = {
  completed(call, caller, callee, n) {
    // Every second completed call is answered the v1 way: the callee's token accepts it.
    if (Math.floor(n / MIX.length) % 2 === 0) {
      const accepted = post(
        `/calls/${call.id}/accept`,
        actor({}, 'userId', callee),
        'POST /calls/:id/accept',
        200,
        callee,
      );
      check(accepted, {
        'accept: call is accepted': (c) =>
          c.id === call.id && c.status === 'accepted' && isTime(c.answerTime) && c.endReason === null,
        'accept: token is for the callee': (c) =>
          typeof c.token === 'string' && tokenSubject(c.token) === callee.id && typeof c.url === 'string',
      });
    } else {
      calleeToken(call, callee);
      const got = get(`/calls/${call.id}`, 'GET /calls/:id', callee);
      check(got, {
        "callee's token accepted the call": (c) => c.status === 'accepted' && isTime(c.answerTime),
      });
    }

    const listed = get(`/calls?status=accepted&userId=${callee.id}`, 'GET /calls?status=accepted', callee);
    check(listed, {
      'accepted call is listed as accepted': (l) =>
        Array.isArray(l) && l.length === 1 && l[0].id === call.id && l[0].status === 'accepted',
    });

    // Joining (again) after the answer: the callee's token for the call's room.
    calleeToken(call, callee);

    const ended = post(
      `/calls/${call.id}/end`,
      actor({}, 'userId', caller),
      'POST /calls/:id/end',
      200,
      caller,
    );
    if (
      check(ended, {
        'end after accept: completed by the caller': (c) =>
          c.status === 'ended' && c.endReason === 'completed' && c.endedBy === caller.id &&
          isTime(c.endTime) && isTime(c.answerTime),
      })
    ) {
      ends.completed.add(1);
    }
  },

  declined(call, caller, callee) {
    decline(call, callee, 'declined');
  },

  busy(call, caller, callee) {
    decline(call, callee, 'busy');
  },

  cancelled(call, caller, callee) {
    const ended = post(
      `/calls/${call.id}/end`,
      actor({}, 'userId', caller),
      'POST /calls/:id/end',
      200,
      caller,
    );
    const ok = check(ended, {
      'end while ringing: cancelled by the caller': (c) =>
        c.status === 'ended' && c.endReason === 'cancelled' && c.endedBy === caller.id &&
        isTime(c.endTime) && c.answerTime === null,
    });
    // The callee answers too late.
    const late = post(
      `/calls/${call.id}/accept`,
      actor({}, 'userId', callee),
      'POST /calls/:id/accept (ended)',
      409,
      callee,
    );
    if (check(late, { 'accepting a cancelled call is call_ended': (p) => p.code === 'call_ended' }) && ok) {
      ends.cancelled.add(1);
    }
  },

  missed(call, caller, callee, n, outsider) {
    const got = get(`/calls/${call.id}`, 'GET /calls/:id', caller);
    check(got, { 'unanswered call is still ringing': (c) => c.status === 'initiated' });
    if (!outsider) return;
    // Private to the two parties: someone else neither sees it nor lists the callee's calls.
    const hidden = get(`/calls/${call.id}`, 'GET /calls/:id (outsider)', outsider, 404);
    check(hidden, {
      'an outsider cannot see the call (404 call_not_found)': (p) => p.code === 'call_not_found',
    });
    const refused = get(`/calls?userId=${callee.id}`, 'GET /calls?userId= (outsider)', outsider, 403);
    check(refused, {
      "an outsider cannot list the callee's calls (403 forbidden)": (p) => p.code === 'forbidden',
    });
  },
};

function decline(call, callee, reason) {
  const declined = post(
    `/calls/${call.id}/decline`,
    actor({ reason }, 'userId', callee),
    'POST /calls/:id/decline',
    200,
    callee,
  );
  if (
    check(declined, {
      [`decline (${reason}): ended by the callee`]: (c) =>
        c.id === call.id && c.status === 'ended' && c.endReason === reason &&
        c.endedBy === callee.id && isTime(c.endTime) && c.answerTime === null,
    })
  ) {
    ends[reason].add(1);
  }
}

/** Waits until RING_TIMEOUT_S + 2 s after the call started, then it must have been missed. */
function checkMissed(call, caller, callStarted) {
  const waitMs = callStarted + (RING_TIMEOUT_S + 2) * 1000 - Date.now();
  if (waitMs > 0) sleep(waitMs / 1000);
  const got = get(`/calls/${call.id}`, 'GET /calls/:id (missed)', caller);
  if (
    check(got, {
      'call left ringing is missed': (c) =>
        c.status === 'ended' && c.endReason === 'missed' && c.endedBy === null &&
        isTime(c.endTime) && c.answerTime === null,
    })
  ) {
    ends.missed.add(1);
  }
}
