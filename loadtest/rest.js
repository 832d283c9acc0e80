// k6: the REST mix of a calling app, as an open model (a fixed arrival rate of flows, so a
// slow server is measured as slow rather than being offered less work).
//
// One iteration = one user journey: register a caller and a callee, start a call, fetch
// the callee's LiveKit token (POST /livekit/token), end the call, create a room and join it.
//
//   k6 run loadtest/rest.js                               # against http://127.0.0.1:3000
//   BASE_URL=http://127.0.0.1:3100 RATE=50 DURATION=1m k6 run loadtest/rest.js
//
// Environment: BASE_URL (default http://127.0.0.1:3000), RATE (journeys/s, 10), DURATION
// (30s), VUS (pre-allocated VUs, 20), MAX_VUS (200), P95_MS (100), P99_MS (250),
// TIMING_THRESHOLDS (1; 0 keeps only the error thresholds, as the smoke test does).
import http from 'k6/http';
import { check, fail } from 'k6';
import { Trend } from 'k6/metrics';

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:3000').replace(/\/$/, '');
const RATE = Number(__ENV.RATE || 10);
const DURATION = __ENV.DURATION || '30s';
const VUS = Number(__ENV.VUS || 20);
const MAX_VUS = Number(__ENV.MAX_VUS || 200);
const P95_MS = Number(__ENV.P95_MS || 100);
const P99_MS = Number(__ENV.P99_MS || 250);
const TIMING = __ENV.TIMING_THRESHOLDS !== '0';

/** Whole journeys, start to finish: what a user waits for across six requests. */
const journey = new Trend('journey_duration', true);

const thresholds = {
  // Errors fail the run whatever the timing settings.
  http_req_failed: ['rate<0.01'],
  checks: ['rate>0.99'],
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
    },
  },
  thresholds,
  summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'max'],
};

const JSON_HEADERS = { 'Content-Type': 'application/json' };

/** POSTs JSON, tagged with the route template so per-endpoint figures stay readable. */
function post(path, body, name, expected) {
  const res = http.post(`${BASE_URL}${path}`, body === undefined ? null : JSON.stringify(body), {
    headers: JSON_HEADERS,
    tags: { name },
  });
  const ok = check(res, { [`${name} is ${expected}`]: (r) => r.status === expected });
  if (!ok) {
    fail(`${name}: status ${res.status}: ${String(res.body).slice(0, 200)}`);
  }
  return res.json();
}

export default function () {
  const started = Date.now();
  const tag = `${__VU}-${__ITER}`;
  const caller = post('/users', { name: `caller ${tag}` }, 'POST /users', 201);
  const callee = post('/users', { name: `callee ${tag}` }, 'POST /users', 201);

  const call = post('/calls', { fromUserId: caller.id, toUserId: callee.id }, 'POST /calls', 201);
  check(call, {
    'call has a caller token': (c) => typeof c.token === 'string' && c.token.length > 0,
    'call is initiated': (c) => c.status === 'initiated',
  });

  // The incoming-call flow: the callee asks for its own token for the call's room.
  const token = post(
    '/livekit/token',
    { roomName: call.roomName, userId: callee.id },
    'POST /livekit/token',
    200,
  );
  check(token, { 'token is for the callee': (t) => t.identity === callee.id });

  const ended = post(`/calls/${call.id}/end`, undefined, 'POST /calls/:id/end', 200);
  check(ended, { 'call is ended': (c) => c.status === 'ended' });

  const room = post('/rooms', { name: `room ${tag}` }, 'POST /rooms', 201);
  const joined = post(`/rooms/${room.id}/join`, { userId: caller.id }, 'POST /rooms/:id/join', 200);
  check(joined, { 'joined user is a participant': (j) => j.room.participants.includes(caller.id) });

  journey.add(Date.now() - started);
}
