#!/usr/bin/env bash
# How much of switchboard's workload one Redis primary carries: starts a throw-away
# redis-server on a free port, loads the real Lua scripts (prelude + body, byte for byte as
# src/store/redis.rs builds them), and measures with redis-benchmark (plus a small Python
# RESP client where redis-benchmark cannot express the case):
#
#   - each store operation: GET of a user, EVALSHA of insert_user, insert_call, insert_room,
#     join_room, livekit_room, end_call; with and without pipelining;
#   - PUBLISH of a 200-byte message to one channel with K = 1, 2, 4, 8, 16 subscribers
#     (redis-cli processes): publishes/s and deliveries/s (checked against the bytes Redis
#     actually wrote);
#   - XADD to per-user streams (what section 9's event history would add), insert_user and
#     insert_call with 8 subscribers on the events channel, insert_call with a Redis replica
#     attached, insert_call with appendonly everysec, insert_user followed by WAIT 1.
#
# For every case: ops/s, p50 latency, Redis CPU per op (utime+stime of the redis-server from
# /proc/PID/stat) and how busy the Redis core was. When Redis was below ~95 % the client
# was the limit and "per Redis CPU-s" (1 / CPU per op) is the capacity of a saturated core.
#
#   loadtest/redis-capacity.sh                  # about 2 minutes; docs/scaling.md reads it
#   N=50000 loadtest/redis-capacity.sh          # quicker
#   N=200000 C=50 PIPE=16 OUT=target/bench/redis-capacity.txt loadtest/redis-capacity.sh
#
# With >= 2 CPUs, redis-server is pinned to CPU 1 and every client (redis-benchmark,
# subscribers, the replica) to CPU 0. Everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-200000}       # requests per redis-benchmark run
C=${C:-50}           # redis-benchmark connections
PIPE=${PIPE:-16}     # pipeline depth of the pipelined runs
OUT=${OUT:-target/bench/redis-capacity.txt}

for tool in redis-server redis-cli redis-benchmark python3; do
  command -v "$tool" >/dev/null || {
    echo "redis-capacity: $tool is missing (Debian: redis-server, redis-tools, python3)" >&2
    exit 1
  }
done

if [ "$(nproc)" -ge 2 ]; then
  server_pin=(taskset -c 1)
  client_pin=(taskset -c 0)
else
  server_pin=()
  client_pin=()
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/redis-capacity.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_redis PORT NAME [extra redis-server args...]: starts it pinned, waits for PING.
start_redis() {
  local port=$1 name=$2
  shift 2
  mkdir -p "$dir/$name"
  "${pin[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$dir/$name" --logfile "$dir/$name/redis.log" "$@" &
  pids+=($!)
  for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "redis-capacity: redis-server on port $port did not start" >&2
  cat "$dir/$name/redis.log" >&2
  exit 1
}

PORT=$(free_port)
pin=("${server_pin[@]}")
start_redis "$PORT" primary
RPID=${pids[-1]}
rc() { redis-cli -p "$PORT" "$@"; }

# Redis CPU time (all threads) in clock ticks.
tck=$(getconf CLK_TCK)
cpu_ticks() { sed 's/.*) //' "/proc/$RPID/stat" | awk '{print $12 + $13}'; }
net_out() { rc info stats | tr -d '\r' | awk -F: '$1 == "total_net_output_bytes" {print $2}'; }
now() { date +%s.%N; }

# The scripts exactly as RedisStore loads them, with the event log's default bounds
# (EVENT_LOG_MAX, EVENT_LOG_AGE in ms): format!("local LOG_MAX, LOG_AGE_MS = ..\n{prelude}\n{body}").
declare -A sha
for f in src/store/lua/*.lua; do
  name=$(basename "$f" .lua)
  [ "$name" = prelude ] && continue
  { printf 'local LOG_MAX, LOG_AGE_MS = 10000, 60000\n'; cat src/store/lua/prelude.lua; printf '\n'; cat "$f"; } >"$dir/$name.lua"
  sha[$name]=$(rc -x script load <"$dir/$name.lua")
  [ "${sha[$name]}" = "$(sha1sum "$dir/$name.lua" | cut -d' ' -f1)" ] || {
    echo "redis-capacity: SCRIPT LOAD of $name returned ${sha[$name]}" >&2
    exit 1
  }
done

# Realistic sizes: ids are 36-character UUIDs (the last group is __rand_int__, 12 digits).
P='{sb}:'
A=0193a5c4-7e2b-7000-8000-00000000000a
B=0193a5c4-7e2b-7000-8000-00000000000b
ROOM=0193a5c4-7e2b-7000-8000-0000000000cc
RNAME=0193a5c4-7e2b-7000-8000-0000000000dd
T='"2026-11-27T19:54:31.123Z"'
RID='0193a5c4-7e2b-7000-8000-__rand_int__'
# insert_call runs with -r 1000: RID is then one of the 1,000 fixture users, and a call id
# (and its roomName) two draws: 10^6 of them (a few % of the calls overwrite one).
CID='0193a5c4-__rand_int__-__rand_int__'
USER_DOC="{\"id\":\"$RID\",\"name\":\"Benchmark User\",\"createdAt\":$T}"
USER_EVENT="{\"event\":\"user.registered\",\"data\":{\"id\":\"$RID\",\"name\":\"Benchmark User\"},\"sentAtUs\":1764312871123456}"
CALL_FIELDS="\"fromUserId\":\"$RID\",\"toUserId\":\"$RID\",\"status\":\"initiated\",\"roomName\":\"$RID\",\"startTime\":$T"
CALL_DOC="{\"id\":\"$RID\",\"callId\":\"$RID\",$CALL_FIELDS,\"endTime\":null}"
CALL_EVENT="{\"event\":\"call.started\",\"data\":{\"id\":\"$RID\",\"callId\":\"$RID\",$CALL_FIELDS},\"sentAtUs\":1764312871123456}"
# The ring deadline insert_call stores (CALL_RING_TIMEOUT, on by default).
DEADLINE=1764312931123
ROOM_DOC="{\"id\":\"$RID\",\"name\":\"Benchmark Room\",\"roomName\":\"$RID\",\"participants\":[],\"createdAt\":$T}"
ROOM_EVENT="{\"event\":\"room.created\",\"data\":{\"id\":\"$RID\",\"name\":\"Benchmark Room\",\"roomName\":\"$RID\",\"participants\":[]},\"sentAtUs\":1764312871123456}"
JOIN_EVENT="{\"event\":\"room.joined\",\"data\":{\"roomId\":\"$ROOM\",\"userId\":\"$A\"},\"sentAtUs\":1764312871123456}"
MSG=$(printf 'x%.0s' $(seq 200))

# The fixtures the scripts need: users A and B, a room they joined, and 1,000 users
# 0193a5c4-7e2b-7000-8000-000000000000…999 for the calls (__rand_int__ with -r 1000).
fixtures() {
  for u in $A $B; do
    rc evalsha "${sha[insert_user]}" 1 "$P" "$u" "{\"id\":\"$u\",\"name\":\"Fixture\",\"createdAt\":$T}" 1 '{}' >/dev/null
  done
  rc evalsha "${sha[insert_room]}" 1 "$P" "$ROOM" "$RNAME" "{\"id\":\"$ROOM\"}" 1 '{}' >/dev/null
  for u in $A $B; do rc evalsha "${sha[join_room]}" 1 "$P" "$ROOM" "$u" '{}' >/dev/null; done
  resp users "${sha[insert_user]}" 1000 >/dev/null
}
reset() { rc flushall >/dev/null; fixtures; }

# Subscribers: redis-cli processes on CPU 0, output discarded.
sub_pids=()
subscribe() { # subscribe CHANNEL COUNT: adds COUNT subscribers and waits for them
  local channel=$1 count=$2 i want
  want=$(( $(numsub "$channel") + count ))
  for ((i = 0; i < count; i++)); do
    "${client_pin[@]}" redis-cli -p "$PORT" subscribe "$channel" >/dev/null 2>&1 &
    pids+=($!)
    sub_pids+=($!)
  done
  for _ in $(seq 100); do [ "$(numsub "$channel")" -ge "$want" ] && return 0; sleep 0.05; done
  echo "redis-capacity: subscribers to $channel did not all connect" >&2
  exit 1
}
numsub() { rc pubsub numsub "$1" | sed -n 2p; }
unsubscribe_all() {
  local p
  for p in "${sub_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  sub_pids=()
}

mkdir -p "$(dirname "$OUT")"
rows="$dir/rows"
: >"$rows"
row() { printf '%s\n' "$*" | tee -a "$rows" >/dev/null; }

# measure LABEL PIPELINE command...: runs the command (which must print "<ops/s> <p50 ms>
# <ops>" on its last line) and records Redis CPU and output bytes around it.
measure() {
  local label=$1 pipeline=$2
  shift 2
  local c0 t0 o0 c1 t1 o1 result rps p50 ops cpu_us busy
  c0=$(cpu_ticks) o0=$(net_out) t0=$(now)
  result=$("$@" | tail -n 1)
  t1=$(now)
  sleep 0.3 # let Redis flush what it still buffers for slow readers (counted in its CPU)
  c1=$(cpu_ticks) o1=$(net_out)
  read -r rps p50 ops <<<"$result"
  cpu_us=$(awk -v d=$((c1 - c0)) -v t="$tck" -v n="$ops" 'BEGIN {printf "%.2f", d / t * 1e6 / n}')
  busy=$(awk -v d=$((c1 - c0)) -v t="$tck" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", d / t / (b - a) * 100}')
  LAST_OUT_BYTES=$((o1 - o0))
  LAST_RPS=$rps
  row "$label|$pipeline|$rps|$p50|$cpu_us|$busy|$(awk -v c="$cpu_us" 'BEGIN {printf "%.0f", (c > 0 ? 1e6 / c : 0)}')|"
  printf '  %-44s P=%-3s %10s ops/s  p50 %6s ms  %6s µs Redis CPU/op  Redis core %3s %%\n' \
    "$label" "$pipeline" "$rps" "$p50" "$cpu_us" "$busy" >&2
}

# bench PIPELINE command...: redis-benchmark, printing "<rps> <p50> <requests>".
# BN=requests overrides N, RANGE=n the -r of redis-benchmark (1,000,000), for one run.
bench() {
  local pipeline=$1 n=${BN:-$N}
  shift
  "${client_pin[@]}" redis-benchmark -p "$PORT" -n "$n" -c "$C" -P "$pipeline" -r "${RANGE:-1000000}" -q "$@" \
    | tr '\r' '\n' | grep 'requests per second' | tail -n 1 \
    | sed -E 's/.*: ([0-9.]+) requests per second, p50=([0-9.]+) msec.*/\1 \2/' \
    | awk -v n="$n" '{printf "%.0f %s %d\n", $1, $2, n}'
}

# A minimal RESP client for what redis-benchmark cannot do: sequential ids (end_call needs
# calls that exist and have not ended) and WAIT after each write.
cat >"$dir/resp.py" <<'PY'
import socket, sys, time, threading

def enc(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)

def skip(buf, i):
    """Index after one complete reply starting at i, or -1."""
    j = buf.find(b"\r\n", i)
    if j < 0:
        return -1
    t, n = buf[i:i + 1], buf[i + 1:j]
    if t == b"$":
        n = int(n)
        if n < 0:
            return j + 2
        return j + 2 + n + 2 if len(buf) >= j + 2 + n + 2 else -1
    if t == b"*":
        n, k = int(n), j + 2
        for _ in range(max(n, 0)):
            k = skip(buf, k)
            if k < 0:
                return -1
        return k
    if t == b"-":
        sys.exit("redis error: " + buf[i:j].decode())
    return j + 2

class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
    def roundtrip(self, payload, replies):
        self.s.sendall(payload)
        i = 0
        while replies:
            k = skip(self.buf, i) if i < len(self.buf) else -1
            if k < 0:
                self.buf = self.buf[i:]
                i = 0
                self.buf += self.s.recv(1 << 20)
                continue
            i, replies = k, replies - 1
        self.buf = self.buf[i:]

def report(ops, secs, lat):
    lat.sort()
    print("%.0f %.3f %d" % (ops / secs, lat[len(lat) // 2] * 1000 if lat else 0, ops))

def seq(port, batch, count, make):
    """count commands make(i), pipelined batch at a time on one connection."""
    c, lat, t0 = Conn(port), [], time.perf_counter()
    for start in range(0, count, batch):
        n = min(batch, count - start)
        t = time.perf_counter()
        c.roundtrip(b"".join(make(start + k) for k in range(n)), n)
        lat.append(time.perf_counter() - t)
    report(count, time.perf_counter() - t0, lat)

def writes(port, conns, batch, secs, wait, make):
    """On each connection: batch writes, their replies, then (wait > 0) batch WAITs as the
    replica's concurrent requests would send them, each after its own write's reply."""
    done, lat, lock = [0], [], threading.Lock()
    stop = time.perf_counter() + secs
    def worker(w):
        c, i, mine, my_lat = Conn(port), 0, 0, []
        while time.perf_counter() < stop:
            t = time.perf_counter()
            c.roundtrip(b"".join(make(w, i + k) for k in range(batch)), batch)
            if wait:
                c.roundtrip(enc("WAIT", wait, 100) * batch, batch)
            my_lat.append(time.perf_counter() - t)
            i, mine = i + batch, mine + batch
        with lock:
            done[0] += mine
            lat.extend(my_lat)
    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(w,)) for w in range(conns)]
    for t in ts: t.start()
    for t in ts: t.join()
    report(done[0], time.perf_counter() - t0, lat)

port, mode = int(sys.argv[1]), sys.argv[2]
P = "{sb}:"
def cid(i, w=0): return "0193a5c4-7e2b-7000-%04d-%012d" % (w, i)
def uid(i): return "0193a5c4-7e2b-7000-8000-%012d" % (i % 1000)
if mode == "users":  # the 1,000 users the calls are between
    sha, count = sys.argv[3], int(sys.argv[4])
    def make(i):
        doc = '{"id":"%s","name":"Fixture","createdAt":"2026-11-27T19:54:31.123Z"}' % uid(i)
        return enc("EVALSHA", sha, 1, P, uid(i), doc, i, "{}")
    seq(port, 100, count, make)
elif mode in ("insert_call", "end_call"):
    # Call i is between users i and 7i+3 (never the same) of the 1,000, with increasing
    # startTime scores as in production.
    sha, count, batch = sys.argv[3:6]
    if mode == "insert_call":
        def make(i):
            A, B = uid(i), uid(7 * i + 3)
            f = '"fromUserId":"%s","toUserId":"%s","status":"initiated","roomName":"%s","startTime":"2026-11-27T19:54:31.123Z"' % (A, B, cid(i))
            doc = '{"id":"%s","callId":"%s",%s,"endTime":null}' % (cid(i), cid(i), f)
            ev = '{"event":"call.started","data":{"id":"%s","callId":"%s",%s},"sentAtUs":1764312871123456}' % (cid(i), cid(i), f)
            return enc("EVALSHA", sha, 1, P, cid(i), A, B, cid(i), doc, 1764312871123 + i, 1764312931123 + i, ev)
    else:
        def make(i):
            # update_call: the call's ring deadline goes with the transition to ended.
            A, B = uid(i), uid(7 * i + 3)
            f = '"fromUserId":"%s","toUserId":"%s","status":"ended","roomName":"%s","startTime":"2026-11-27T19:54:31.123Z"' % (A, B, cid(i))
            doc = '{"id":"%s","callId":"%s",%s,"endTime":"2026-11-27T19:55:31.123Z"}' % (cid(i), cid(i), f)
            ev = '{"event":"call.ended","data":{"callId":"%s"},"sentAtUs":1764312871123456}' % cid(i)
            return enc("EVALSHA", sha, 1, P, cid(i), A, B, "initiated", "ended", doc, "", "", "", "0", ev)
    seq(port, int(batch), int(count), make)
elif mode == "insert_user":
    sha, conns, batch, secs, wait = sys.argv[3:8]
    def make(w, i):
        u = cid(i, w)
        doc = '{"id":"%s","name":"Benchmark User","createdAt":"2026-11-27T19:54:31.123Z"}' % u
        ev = '{"event":"user.registered","data":{"id":"%s","name":"Benchmark User"},"sentAtUs":1764312871123456}' % u
        return enc("EVALSHA", sha, 1, P, u, doc, 1764312871123 + i, ev)
    writes(port, int(conns), int(batch), float(secs), int(wait), make)
PY
resp() { "${client_pin[@]}" python3 "$dir/resp.py" "$PORT" "$@"; }

echo "redis-capacity: $(redis-server --version | cut -d' ' -f3), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)," \
  "N=$N C=$C PIPE=$PIPE; sizes: user doc ${#USER_DOC} B, user event ${#USER_EVENT} B," \
  "call doc ${#CALL_DOC} B, call event ${#CALL_EVENT} B, message ${#MSG} B" >&2
reset

echo "store operations (no subscriber on {sb}:events, no replica, no persistence)" >&2
for pl in 1 "$PIPE"; do
  measure "GET user" "$pl" bench "$pl" GET "${P}user:$A"
  measure "EVALSHA insert_user" "$pl" bench "$pl" EVALSHA "${sha[insert_user]}" 1 "$P" "$RID" "$USER_DOC" __rand_int__ "$USER_EVENT"
  RANGE=1000 measure "EVALSHA insert_call" "$pl" bench "$pl" EVALSHA "${sha[insert_call]}" 1 "$P" "$CID" "$RID" "$RID" "$CID" "$CALL_DOC" __rand_int__ "$DEADLINE" "$CALL_EVENT"
  reset
done
measure "EVALSHA insert_room" "$PIPE" bench "$PIPE" EVALSHA "${sha[insert_room]}" 1 "$P" "$RID" "$RID" "$ROOM_DOC" __rand_int__ "$ROOM_EVENT"
measure "EVALSHA join_room (again, 2 participants)" "$PIPE" bench "$PIPE" EVALSHA "${sha[join_room]}" 1 "$P" "$ROOM" "$A" "$JOIN_EVENT"
measure "EVALSHA livekit_room (a room's)" "$PIPE" bench "$PIPE" EVALSHA "${sha[livekit_room]}" 1 "$P" "$RNAME"
calls=$((N / 4))
reset
measure "EVALSHA insert_call (1 conn, in order)" "$PIPE" resp insert_call "${sha[insert_call]}" "$calls" "$PIPE"
measure "EVALSHA end_call (1 conn, each ends a call)" "$PIPE" resp end_call "${sha[update_call]}" "$calls" "$PIPE"

echo "PUBLISH of a ${#MSG}-byte message to K subscribers" >&2
chan="${P}bench"
frame=$(( ${#MSG} + ${#chan} + 32 )) # *3 $7 message $10 chan $200 msg, with CRLFs
have=0
for k in 1 2 4 8 16; do
  subscribe "$chan" $((k - have))
  have=$k
  pls="$PIPE"
  case $k in 1 | 16) pls="1 $PIPE" ;; esac # unpipelined only at both ends: it is slow
  for pl in $pls; do
    n=$N
    [ "$pl" = 1 ] && [ "$k" = 16 ] && n=$((N / 2))
    BN=$n measure "PUBLISH, K=$k" "$pl" bench "$pl" PUBLISH "$chan" "$MSG"
    delivered=$(( (LAST_OUT_BYTES - n * (3 + ${#k})) / frame )) # minus the ":K" replies
    alive=$(numsub "$chan")
    # Append deliveries/s (publishes/s x K), and the share Redis really wrote, to the row.
    sed -i '$ s/$/'"$((LAST_RPS * k))"' ('"$((delivered * 100 / (n * k)))"'% written, '"$alive"' subscribed)/' "$rows"
  done
done
unsubscribe_all
grep -q 'output buffer limits' "$dir/primary/redis.log" && echo "  (some subscribers were dropped for overrunning the output buffer limit)" >&2

echo "the events channel, per-user history, a replica, persistence, WAIT" >&2
reset
# What section 9's per-user history would add: one XADD per audience member (a call event:
# 2), capped like EVENT_HISTORY, over 1,000 users.
RANGE=1000 measure "XADD per-user stream, MAXLEN ~ 1000" "$PIPE" bench "$PIPE" XADD "${P}user:__rand_int__:history" MAXLEN '~' 1000 '*' e "$CALL_EVENT"
subscribe "${P}events" 8
BN=$((N / 2)) measure "EVALSHA insert_user, 8 subscribers on events" "$PIPE" bench "$PIPE" EVALSHA "${sha[insert_user]}" 1 "$P" "$RID" "$USER_DOC" __rand_int__ "$USER_EVENT"
BN=$((N / 2)) RANGE=1000 measure "EVALSHA insert_call, 8 subscribers on events" "$PIPE" bench "$PIPE" EVALSHA "${sha[insert_call]}" 1 "$P" "$CID" "$RID" "$RID" "$CID" "$CALL_DOC" __rand_int__ "$DEADLINE" "$CALL_EVENT"
unsubscribe_all
reset

RPORT=$(free_port)
pin=("${client_pin[@]}")
start_redis "$RPORT" replica --replicaof 127.0.0.1 "$PORT"
for _ in $(seq 200); do
  rc info replication | grep -q 'state=online' && break
  sleep 0.05
done
BN=$((N / 2)) RANGE=1000 measure "EVALSHA insert_call, 1 replica attached" "$PIPE" bench "$PIPE" EVALSHA "${sha[insert_call]}" 1 "$P" "$CID" "$RID" "$RID" "$CID" "$CALL_DOC" __rand_int__ "$DEADLINE" "$CALL_EVENT"
reset
secs=$(awk -v n="$N" 'BEGIN {s = n / 100000; print (s < 1 ? 1 : s)}')
measure "EVALSHA insert_user, 4 conns x 16 in flight" 16 resp insert_user "${sha[insert_user]}" 4 16 "$secs" 0
measure "  the same + WAIT 1 100 after each write" 16 resp insert_user "${sha[insert_user]}" 4 16 "$secs" 1
measure "EVALSHA insert_user, 1 conn x 1 in flight" 1 resp insert_user "${sha[insert_user]}" 1 1 "$secs" 0
measure "  the same + WAIT 1 100 after each write" 1 resp insert_user "${sha[insert_user]}" 1 1 "$secs" 1
redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1 || true
reset

rc config set appendonly yes >/dev/null
rc config set appendfsync everysec >/dev/null
for _ in $(seq 100); do rc info persistence | grep -q 'aof_rewrite_in_progress:0' && break; sleep 0.05; done
BN=$((N / 2)) RANGE=1000 measure "EVALSHA insert_call, appendonly everysec" "$PIPE" bench "$PIPE" EVALSHA "${sha[insert_call]}" 1 "$P" "$CID" "$RID" "$RID" "$CID" "$CALL_DOC" __rand_int__ "$DEADLINE" "$CALL_EVENT"
rc config set appendonly no >/dev/null

{
  echo
  echo "Redis $(redis-server --version | cut -d' ' -f3) on $(nproc) CPUs (server on CPU 1, clients on CPU 0), N=$N C=$C, load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| case | pipeline | ops/s | p50 ms | Redis CPU µs/op | Redis core busy | ops per Redis CPU-s | deliveries/s |"
  echo "|---|---|---|---|---|---|---|---|"
  awk -F'|' '{printf "| %s | %s | %s | %s | %s | %s %% | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8}' "$rows"
} | tee "$OUT"
