// k6: many Socket.IO clients, spoken as Engine.IO v4 over k6 websockets (k6 has no
// Socket.IO client): open `/socket.io/?EIO=4&transport=websocket`, get `0{…}`, send `40`,
// get `40{…}`; events arrive as `42["name",{…}]`; the server pings `2`, we answer `3`.
//
// Two scenarios run side by side:
// - listeners: SOCKETS clients that stay connected for DURATION and count every event
//   (Counter socketio_events, tagged by event name);
// - probes: an open model of RATE probes/s; each connects its own client, POSTs /users with
//   a unique name and measures until that user's user.registered reaches it
//   (Trend socketio_event_delay).
//
//   SOCKET_URLS="http://127.0.0.1:3101 http://127.0.0.1:3102" BASE_URL=http://127.0.0.1:3101 \
//     SOCKETS=200 RATE=20 DURATION=30s k6 run loadtest/sockets.js
//
// Environment: BASE_URL (REST, default http://127.0.0.1:3000), SOCKET_URLS (space-separated
// servers the clients connect to, round-robin; default BASE_URL), SOCKETS (listeners, 50),
// RATE (probes/s, 5), DURATION (30s), VUS / MAX_VUS (probe VUs, 10 / 100), DELAY_P95_MS
// (50), TIMING_THRESHOLDS (1; 0 keeps only the error thresholds).
import http from 'k6/http';
import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
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

const events = new Counter('socketio_events');
const connected = new Rate('socketio_connected');
const delay = new Trend('socketio_event_delay', true);
const probeTimeouts = new Counter('socketio_probe_timeouts');

/** Seconds in a k6 duration string such as `30s`, `2m` or `1m30s`. */
function seconds(d) {
  let total = 0;
  for (const [, n, unit] of d.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(n) * { ms: 0.001, s: 1, m: 60, h: 3600 }[unit];
  }
  return total;
}
const HOLD_MS = seconds(DURATION) * 1000;

const thresholds = {
  socketio_connected: ['rate>0.99'],
  socketio_events: ['count>0'],
  socketio_probe_timeouts: ['count==0'],
  checks: ['rate>0.99'],
};
if (TIMING) {
  thresholds.socketio_event_delay = [`p(95)<${DELAY_P95_MS}`];
}

export const options = {
  scenarios: {
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
      duration: `${Math.max(1, seconds(DURATION) - 3)}s`,
      preAllocatedVUs: VUS,
      maxVUs: MAX_VUS,
    },
  },
  thresholds,
  summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'max'],
};

function socketUrl(base) {
  return `${base.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`;
}

/**
 * Opens one Socket.IO client and calls `onEvent(name, data)` for each event once the
 * default namespace is joined, and `onReady()` right after joining.
 */
function socketio(base, onReady, onEvent) {
  const ws = new WebSocket(socketUrl(base));
  let joined = false;
  ws.onmessage = (e) => {
    const packet = String(e.data);
    if (packet === '2') {
      ws.send('3'); // Engine.IO ping: answer or be dropped
    } else if (packet.startsWith('0')) {
      ws.send('40'); // Engine.IO open: join the default namespace
    } else if (packet.startsWith('40')) {
      joined = true;
      connected.add(true);
      onReady();
    } else if (packet.startsWith('42') && joined) {
      const [name, arg] = JSON.parse(packet.slice(2));
      onEvent(name, arg && arg.data);
    }
  };
  ws.onerror = () => {
    if (!joined) connected.add(false);
  };
  return ws;
}

export function listener() {
  const base = SOCKET_URLS[(__VU - 1) % SOCKET_URLS.length];
  const ws = socketio(
    base,
    () => {},
    (name) => events.add(1, { event: name }),
  );
  setTimeout(() => ws.close(), HOLD_MS);
}

export function probe() {
  const base = SOCKET_URLS[__ITER % SOCKET_URLS.length];
  const name = `probe-${__VU}-${__ITER}-${Date.now()}`;
  let sent = 0;
  let timer = null;
  const ws = socketio(
    base,
    () => {
      sent = Date.now();
      const res = http.post(`${BASE_URL}/users`, JSON.stringify({ name }), {
        headers: { 'Content-Type': 'application/json' },
        tags: { name: 'POST /users' },
      });
      check(res, { 'POST /users is 201': (r) => r.status === 201 });
      if (res.status !== 201) ws.close();
    },
    (event, data) => {
      if (event === 'user.registered' && data && data.name === name) {
        delay.add(Date.now() - sent);
        clearTimeout(timer);
        ws.close();
      }
    },
  );
  // A probe whose event never comes is an error, not a slow sample.
  timer = setTimeout(() => {
    probeTimeouts.add(1);
    ws.close();
  }, 10000);
}
