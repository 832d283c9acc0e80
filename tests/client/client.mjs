// One real Socket.IO client for the integration tests: connects to argv[2] with the
// transport mode argv[3] (polling | websocket | upgrade | late-upgrade) and, when given, the
// connect packet's auth argv[4] (JSON: { token, offset }), and prints one JSON line per
// happening on stdout: {"type":"connect"|"upgrade"|"event"|"disconnect"|"error", ...}.
// `late-upgrade` is `upgrade` on a slow network: the websocket probe starts only once the
// first event has arrived over polling, so events always precede the upgrade.
// It exits when stdin closes, so a test that drops its handle leaves no process behind.
import { io } from 'socket.io-client';
import { NodeWebSocket, NodeXHR } from 'engine.io-client';

const [url, mode = 'websocket', auth] = process.argv.slice(2);
const say = (line) => process.stdout.write(JSON.stringify(line) + '\n');

let firstEvent;
const heardAnEvent = new Promise((resolve) => { firstEvent = resolve; });
class LateWebSocket extends NodeWebSocket {
  doOpen() { heardAnEvent.then(() => super.doOpen()); }
}
const transports = {
  polling: ['polling'],
  websocket: ['websocket'],
  upgrade: ['polling', 'websocket'],
  'late-upgrade': [NodeXHR, LateWebSocket],
}[mode];

const socket = io(url, {
  transports, reconnectionDelay: 100, reconnectionDelayMax: 500, auth: auth ? JSON.parse(auth) : undefined,
});
socket.on('connect', () => say({ type: 'connect', id: socket.id, transport: socket.io.engine.transport.name }));
socket.io.on('open', () => socket.io.engine.on('upgrade', (t) => say({ type: 'upgrade', transport: t.name })));
socket.on('disconnect', (reason) => say({ type: 'disconnect', reason }));
socket.on('connect_error', (err) => say({ type: 'error', message: err.message }));
socket.onAny((name, ...args) => { say({ type: 'event', name, args }); firstEvent(); });

process.stdin.on('end', () => { socket.close(); process.exit(0); });
process.stdin.resume();
