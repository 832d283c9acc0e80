#!/usr/bin/env bash
# How much of switchboard's workload one Redis primary carries: starts a throw-away
# redis-server on a free port, loads the real Lua scripts (the log's bounds, the key
# templates, prelude and body, byte for byte as src/store/redis.rs builds them), and
# measures with redis-benchmark (plus a small Python RESP client where redis-benchmark
# cannot express the case). Every script gets its KEYS and ARGV as RedisStore sends them,
# and each one's reply is checked once before it is measured:
#
#   - each store operation: GET of a user, EVALSHA of insert_user, insert_call, insert_room,
#     join_room, end_call (update_call), delete_call (retention), delete_user (erasure),
#     claim_due (the timers' sweep: nothing due, 100 due), page (a list of 100 users), and
#     livekit_room (GET of the name's owner, then of its document); with and without
#     pipelining;
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
#   loadtest/redis-capacity.sh                  # about 3 minutes; docs/scaling.md reads it
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

# Realistic sizes: ids are 36-character UUIDs (the last group is __rand_int__, 12 digits).
# The namespace is "sb": every key starts with the hash tag {sb}.
P='{sb}:'
LOG=("${P}log" "${P}log:last") # KEYS[1] and KEYS[2] of every script (Keys::log)

# Keys::templates for P, as the store prepends it: the keys that scripts build from ids
# they read, and the events channel, as Lua literals in which every byte that is not
# alphanumeric is \ddd (lua_string), the id's hole a NUL (\000).
templates() {
  python3 - "$P" <<'PY'
import sys
p = sys.argv[1].encode()
def lua(b):
    return '"' + "".join(chr(c) if c < 128 and chr(c).isalnum() else "\\%03d" % c for c in b) + '"'
t = [("user", b"user:\0"), ("user_rooms", b"user:\0:rooms"), ("call", b"call:\0"), ("room", b"room:\0"),
     ("members", b"room:\0:members"), ("participants", b"room:\0:participants"), ("history", b"history:\0"),
     ("device", b"device:\0")]
fields = ", ".join("%s = %s" % (name, lua(p + rest)) for name, rest in t)
print("local T = { %s }\nlocal CHANNEL = %s" % (fields, lua(p + b"events")))
PY
}

# The scripts exactly as RedisStore loads them (Lua::new), with the event log's default
# bounds (EVENT_LOG_MAX, EVENT_LOG_AGE in ms):
# format!("local LOG_MAX, LOG_AGE_MS = ..\n{templates}\n{prelude}\n{body}").
declare -A sha
header="local LOG_MAX, LOG_AGE_MS = 10000, 60000
$(templates)"
for f in src/store/lua/*.lua; do
  name=$(basename "$f" .lua)
  [ "$name" = prelude ] && continue
  { printf '%s\n' "$header"; cat src/store/lua/prelude.lua; printf '\n'; cat "$f"; } >"$dir/$name.lua"
  sha[$name]=$(rc -x script load <"$dir/$name.lua")
  [ "${sha[$name]}" = "$(sha1sum "$dir/$name.lua" | cut -d' ' -f1)" ] || {
    echo "redis-capacity: SCRIPT LOAD of $name returned ${sha[$name]}" >&2
    exit 1
  }
done

A=0193a5c4-7e2b-7000-8000-00000000000a
B=0193a5c4-7e2b-7000-8000-00000000000b
ROOM=0193a5c4-7e2b-7000-8000-0000000000cc
RNAME=0193a5c4-7e2b-7000-8000-0000000000dd
T='"2026-11-27T19:54:31.123Z"'
RID='0193a5c4-7e2b-7000-8000-__rand_int__'
# insert_call runs with -r 1000: RID is then one of the 1,000 fixture users, and a call id
# (and its roomName) two draws: 10^6 of them (a few % of the calls overwrite one). Each
# __rand_int__ is its own draw, so a key and the id in ARGV differ: the same work.
CID='0193a5c4-__rand_int__-__rand_int__'
USER_DOC="{\"id\":\"$RID\",\"name\":\"Benchmark User\",\"createdAt\":$T}"
USER_EVENT="{\"event\":\"user.registered\",\"data\":{\"id\":\"$RID\",\"name\":\"Benchmark User\"},\"sentAtUs\":1764312871123456}"
CALL_FIELDS="\"fromUserId\":\"$RID\",\"toUserId\":\"$RID\",\"status\":\"initiated\",\"roomName\":\"$RID\",\"startTime\":$T"
CALL_DOC="{\"id\":\"$RID\",\"callId\":\"$RID\",$CALL_FIELDS,\"endTime\":null,\"answerTime\":null,\"endReason\":null,\"endedBy\":null}"
CALL_EVENT="{\"event\":\"call.started\",\"data\":{\"id\":\"$RID\",\"callId\":\"$RID\",$CALL_FIELDS},\"sentAtUs\":1764312871123456}"
# The ring deadline insert_call stores (CALL_RING_TIMEOUT, on by default), and a room's
# deletion that insert_room and join_room store (ROOM_RETENTION, on by default): ahead of
# the clock, as they are, so that none is due when claim_due runs.
NOW_MS=$(date +%s%3N)
DEADLINE=$((NOW_MS + 60000))
EXPIRY=$((NOW_MS + 2592000000))
ROOM_DOC="{\"id\":\"$RID\",\"name\":\"Benchmark Room\",\"roomName\":\"$RID\",\"participants\":[],\"createdAt\":$T}"
ROOM_EVENT="{\"event\":\"room.created\",\"data\":{\"id\":\"$RID\",\"name\":\"Benchmark Room\",\"roomName\":\"$RID\",\"participants\":[]},\"sentAtUs\":1764312871123456}"
JOIN_EVENT="{\"event\":\"room.joined\",\"data\":{\"roomId\":\"$ROOM\",\"userId\":\"$A\"},\"sentAtUs\":1764312871123456}"
MSG=$(printf 'x%.0s' $(seq 200))

# The commands measured with redis-benchmark, KEYS and ARGV in RedisStore's order.
# insert_user: user, users; id, document, score, event.
INSERT_USER=(EVALSHA "${sha[insert_user]}" 4 "${LOG[@]}" "${P}user:$RID" "${P}users"
  "$RID" "$USER_DOC" __rand_int__ "$USER_EVENT")
# insert_call: caller, callee, call, roomname, deadlines, the 3 indexes of all calls, the 3
# of ringing ones; id, document, score, owner, ring deadline, event.
INSERT_CALL=(EVALSHA "${sha[insert_call]}" 13 "${LOG[@]}" "${P}user:$RID" "${P}user:$RID" "${P}call:$CID"
  "${P}roomname:$CID" "${P}deadlines" "${P}calls" "${P}user:$RID:calls" "${P}user:$RID:calls"
  "${P}calls:initiated" "${P}user:$RID:calls:initiated" "${P}user:$RID:calls:initiated"
  "$CID" "$CALL_DOC" __rand_int__ "call:$CID" "$DEADLINE" "$CALL_EVENT")
# insert_room: room, rooms, roomname, deadlines; id, document, score, owner, expiry, event.
INSERT_ROOM=(EVALSHA "${sha[insert_room]}" 6 "${LOG[@]}" "${P}room:$RID" "${P}rooms" "${P}roomname:$RID"
  "${P}deadlines" "$RID" "$ROOM_DOC" __rand_int__ "room:$RID" "$EXPIRY" "$ROOM_EVENT")
# join_room (A again: 2 participants): room, members, participants, user, user's rooms,
# deadlines; room id, user id, owner, expiry, event.
JOIN_ROOM=(EVALSHA "${sha[join_room]}" 8 "${LOG[@]}" "${P}room:$ROOM" "${P}room:$ROOM:members"
  "${P}room:$ROOM:participants" "${P}user:$A" "${P}user:$A:rooms" "${P}deadlines"
  "$ROOM" "$A" "room:$ROOM" "$EXPIRY" "$JOIN_EVENT")
# claim_due as a timer pass sends it (DUE_BATCH, CLAIM_LEASE in ms): deadlines; limit, lease.
CLAIM_DUE=(EVALSHA "${sha[claim_due]}" 3 "${LOG[@]}" "${P}deadlines" 200 1000)
# GET /users (limit 100: the store asks for one more, to know whether a next page exists):
# the first page, and the page after the cursor (score 500, user 500).
PAGE_FIRST=(EVALSHA "${sha[page]}" 3 "${LOG[@]}" "${P}users" user asc 101 '' '')
PAGE_NEXT=(EVALSHA "${sha[page]}" 3 "${LOG[@]}" "${P}users" user asc 101 500 0193a5c4-7e2b-7000-8000-000000000500)

# The fixtures the scripts need: users A and B, a room they joined, and 1,000 users
# 0193a5c4-7e2b-7000-8000-000000000000…999 for the calls (__rand_int__ with -r 1000).
fixtures() {
  local u
  for u in $A $B; do
    expect stored EVALSHA "${sha[insert_user]}" 4 "${LOG[@]}" "${P}user:$u" "${P}users" \
      "$u" "{\"id\":\"$u\",\"name\":\"Fixture\",\"createdAt\":$T}" 1 '{}'
  done
  expect stored EVALSHA "${sha[insert_room]}" 6 "${LOG[@]}" "${P}room:$ROOM" "${P}rooms" "${P}roomname:$RNAME" \
    "${P}deadlines" "$ROOM" "{\"id\":\"$ROOM\",\"name\":\"Fixture\",\"roomName\":\"$RNAME\",\"participants\":[],\"createdAt\":$T}" \
    1 "room:$ROOM" "$EXPIRY" '{}'
  for u in $A $B; do
    expect joined EVALSHA "${sha[join_room]}" 8 "${LOG[@]}" "${P}room:$ROOM" "${P}room:$ROOM:members" \
      "${P}room:$ROOM:participants" "${P}user:$u" "${P}user:$u:rooms" "${P}deadlines" \
      "$ROOM" "$u" "room:$ROOM" "$EXPIRY" '{}'
  done
  resp users 1000 >/dev/null
}
reset() { rc flushall >/dev/null; fixtures; }

# expect WANT command...: runs the command once (each __rand_int__ as 000000000007) and
# stops unless the reply's first line is WANT: a script given its KEYS in another order
# answers an error or another outcome, and redis-benchmark would measure that instead.
expect() {
  local want=$1 got
  shift
  got=$(rc "${@//__rand_int__/000000000007}" | sed -n 1p)
  [ "$got" = "$want" ] || {
    echo "redis-capacity: $1 $(script_name "$2") replied '$got', not '$want'" >&2
    exit 1
  }
}
script_name() { local n; for n in "${!sha[@]}"; do [ "${sha[$n]}" = "$1" ] && echo "$n"; done; }

# The replies of the commands redis-benchmark sends, once, on the fixtures (the Python
# client checks its own).
check_replies() {
  expect stored "${INSERT_USER[@]}"
  expect stored "${INSERT_CALL[@]}"
  expect stored "${INSERT_ROOM[@]}"
  expect joined "${JOIN_ROOM[@]}"
  # Nothing due: the claim alone, a time in ms.
  [ "$(rc "${CLAIM_DUE[@]}" | grep -c '^[0-9]\{13\}$')" = 1 ] || {
    echo "redis-capacity: claim_due did not reply {claim} alone" >&2
    exit 1
  }
  # A page: 101 {id, document}, from user 0 (score 0), and from user 501 after the cursor.
  expect 0193a5c4-7e2b-7000-8000-000000000000 "${PAGE_FIRST[@]}"
  expect 0193a5c4-7e2b-7000-8000-000000000501 "${PAGE_NEXT[@]}"
  [ "$(rc "${PAGE_NEXT[@]}" | wc -l)" = 202 ] || {
    echo "redis-capacity: page did not reply 101 users" >&2
    exit 1
  }
}

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
  LAST_RPS=$rps LAST_P50=$p50 LAST_CPU_US=$cpu_us LAST_BUSY=$busy
  record "$label" "$pipeline" "$rps" "$p50" "$cpu_us" "$busy"
}

# record LABEL PIPELINE OPS/S P50 CPU-µs/OP BUSY: one row of the table, and on stderr.
record() {
  row "$1|$2|$3|$4|$5|$6|$(awk -v c="$5" 'BEGIN {printf "%.0f", (c > 0 ? 1e6 / c : 0)}')|"
  printf '  %-44s P=%-3s %10s ops/s  p50 %6s ms  %6s µs Redis CPU/op  Redis core %3s %%\n' "$@" >&2
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

# A minimal RESP client for what redis-benchmark cannot do: sequential ids (end_call,
# delete_call and delete_user need documents that exist, in the right state), a read that
# depends on the one before (livekit_room), deadlines made due again (claim_due), WAIT after
# each write. Its scripts' KEYS and ARGV are built as RedisStore builds them.
cat >"$dir/resp.py" <<'PY'
import hashlib, os, socket, sys, time, threading

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

def head(reply):
    """A reply's first value as text: an array's first element, a string, a number."""
    if reply.startswith(b"*"):
        reply = reply[reply.index(b"\r\n") + 2:]
    line, _, rest = reply.partition(b"\r\n")
    if line.startswith(b"$"):
        return None if int(line[1:]) < 0 else rest[:int(line[1:])].decode()
    return line[1:].decode()

def expect(reply, want, what):
    """Stops unless the reply's first value is `want`: a script given its KEYS in another
    order answers an error or another outcome, and would be measured as such."""
    if head(reply) != want:
        sys.exit("%s replied %r, not %r" % (what, reply[:120], want))

class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
    def roundtrip(self, payload, replies):
        """Sends payload and returns its `replies` replies (raw)."""
        self.s.sendall(payload)
        out, i = [], 0
        while len(out) < replies:
            k = skip(self.buf, i) if i < len(self.buf) else -1
            if k < 0:
                self.buf = self.buf[i:]
                i = 0
                self.buf += self.s.recv(1 << 20)
                continue
            out.append(self.buf[i:k])
            i = k
        self.buf = self.buf[i:]
        return out

def report(ops, secs, lat):
    lat.sort()
    print("%.0f %.3f %d" % (ops / secs, lat[len(lat) // 2] * 1000 if lat else 0, ops))

def seq(batch, count, run):
    """count operations on one connection, batch at a time: run(conn, first, n) sends
    operations first..first+n-1 and reads their replies."""
    c, lat, t0 = Conn(port), [], time.perf_counter()
    for start in range(0, count, batch):
        n = min(batch, count - start)
        t = time.perf_counter()
        run(c, start, n)
        lat.append(time.perf_counter() - t)
    report(count, time.perf_counter() - t0, lat)

def each(make, want, what):
    """A run for seq: one command per operation, make(i); the first reply checked."""
    def run(c, start, n):
        replies = c.roundtrip(b"".join(make(start + k) for k in range(n)), n)
        if start == 0:
            expect(replies[0], want, what)
    return run

def writes(conns, batch, secs, wait, make, want):
    """On each connection: batch writes, their replies, then (wait > 0) batch WAITs as the
    replica's concurrent requests would send them, each after its own write's reply."""
    done, lat, lock = [0], [], threading.Lock()
    stop = time.perf_counter() + secs
    def worker(w):
        c, i, mine, my_lat = Conn(port), 0, 0, []
        while time.perf_counter() < stop:
            t = time.perf_counter()
            replies = c.roundtrip(b"".join(make(w, i + k) for k in range(batch)), batch)
            if i == 0:
                expect(replies[0], want, "insert_user")
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

port, lua_dir, mode, args = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]

# The scripts by hash, as loaded.
def sha(name):
    with open(os.path.join(lua_dir, name + ".lua"), "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()
SHA = {n[:-4]: sha(n[:-4]) for n in os.listdir(lua_dir) if n.endswith(".lua")}

# The keys, as store/keys.rs names them.
P = "{sb}:"
LOG = [P + "log", P + "log:last"]
USERS, ROOMS, DEADLINES = P + "users", P + "rooms", P + "deadlines"
STATUSES = ["initiated", "accepted", "ended"]
def user(u): return P + "user:" + u
def user_rooms(u): return user(u) + ":rooms"
def user_calls(u, s=None): return user(u) + ":calls" + (":" + s if s else "")
def calls(s=None): return P + "calls" + (":" + s if s else "")
def call(c): return P + "call:" + c
def room(r): return P + "room:" + r
def members(r): return room(r) + ":members"
def participants(r): return room(r) + ":participants"
def room_name(n): return P + "roomname:" + n
def history(u): return P + "history:" + u
def delivery(d): return P + "delivery:" + d
def status_indexes(a, b, s): return [calls(s), user_calls(a, s), user_calls(b, s)]
def call_indexes(a, b): return [k for s in [None] + STATUSES for k in status_indexes(a, b, s)]
def user_devices(u): return user(u) + ":devices"
DEVICES = P + "devices"
def erased_user(u):
    return [user(u), USERS, user_rooms(u), history(u)] + [user_calls(u, s) for s in [None] + STATUSES] + [user_devices(u), DEVICES]

def script(name, keys, argv):
    """EVALSHA as RedisStore::eval sends it: the event log's keys, then the script's own."""
    return enc("EVALSHA", SHA[name], len(LOG) + len(keys), *LOG, *keys, *argv)

def cid(i, w=0): return "0193a5c4-7e2b-7000-%04d-%012d" % (w, i)
def uid(i): return "0193a5c4-7e2b-7000-8000-%012d" % (i % 1000)
def rname(i): return "0193a5c4-7e2b-7000-a000-%012d" % i  # a call's LiveKit room name
T, T_END = '"2026-11-27T19:54:31.123Z"', '"2026-11-27T19:55:31.123Z"'
# ms: the run's start (the same in every process: deadlines are claims), CALL_RETENTION and
# ROOM_RETENTION (30 days).
START, RETENTION = int(os.environ["START_MS"]), 2592000000

def user_doc(u, name="Fixture"):
    return '{"id":"%s","name":"%s","createdAt":%s}' % (u, name, T)
def insert_user(u, score, event="{}"):
    return script("insert_user", [user(u), USERS], [u, user_doc(u), score, event])

# Call i is between users i and 7i+3 (never the same) of the 1,000, with increasing
# startTime scores as in production.
def pair(i): return uid(i), uid(7 * i + 3)
def call_doc(i, status, end):
    a, b = pair(i)
    return ('{"id":"%s","callId":"%s","fromUserId":"%s","toUserId":"%s","status":"%s","roomName":"%s",'
            '"startTime":%s,"endTime":%s,"answerTime":null,"endReason":%s,"endedBy":%s}'
            % (cid(i), cid(i), a, b, status, rname(i), T, end, "null" if end == "null" else '"cancelled"',
               "null" if end == "null" else '"%s"' % a))
def call_deadline(i): return START + RETENTION + 60000 + i  # an ended call's: endTime + CALL_RETENTION

if mode == "users":  # the 1,000 users the calls are between
    count = int(args[0])
    seq(100, count, each(lambda i: insert_user(uid(i), i), "stored", "insert_user"))
elif mode == "insert_call":
    count, batch = map(int, args)
    def make(i):
        a, b = pair(i)
        f = ('"fromUserId":"%s","toUserId":"%s","status":"initiated","roomName":"%s","startTime":%s'
             % (a, b, rname(i), T))
        ev = '{"event":"call.started","data":{"id":"%s","callId":"%s",%s},"sentAtUs":1764312871123456}' % (cid(i), cid(i), f)
        keys = [user(a), user(b), call(cid(i)), room_name(rname(i)), DEADLINES]
        keys += status_indexes(a, b, None) + status_indexes(a, b, "initiated")
        return script("insert_call", keys, [cid(i), call_doc(i, "initiated", "null"), START + i,
                                            "call:" + cid(i), START + 60000 + i, ev])
    seq(batch, count, each(make, "stored", "insert_call"))
elif mode == "end_call":
    # update_call from a REST /end: no claim, no delivery id; the call's deadline becomes
    # its deletion (CALL_RETENTION).
    count, batch = map(int, args)
    def make(i):
        a, b = pair(i)
        ev = '{"event":"call.ended","data":{"callId":"%s"},"sentAtUs":1764312871123456}' % cid(i)
        keys = [call(cid(i)), DEADLINES, delivery("")]
        keys += status_indexes(a, b, "initiated") + status_indexes(a, b, "ended")
        return script("update_call", keys, [cid(i), "initiated", call_doc(i, "ended", T_END), START + i,
                                            "call:" + cid(i), call_deadline(i), "", "", ev])
    seq(batch, count, each(make, "applied", "update_call"))
elif mode == "delete_call":
    # Each ended call's deletion, under the claim claim_due would have left as its score.
    count, batch = map(int, args)
    def make(i):
        a, b = pair(i)
        keys = [DEADLINES, call(cid(i)), room_name(rname(i))] + call_indexes(a, b)
        return script("delete_call", keys, [cid(i), "call:" + cid(i), call_deadline(i)])
    seq(batch, count, each(make, "deleted", "delete_call"))
elif mode == "livekit_call":
    # RedisStore::livekit_room of a call's name: GET of its owner, then GET of the call.
    count, batch = map(int, args)
    def run(c, start, n):
        owners = c.roundtrip(b"".join(enc("GET", room_name(rname(start + k))) for k in range(n)), n)
        if start == 0:
            expect(owners[0], "call:" + cid(0), "GET roomname")
        docs = c.roundtrip(b"".join(enc("GET", call(head(o).split(":", 1)[1])) for o in owners), n)
        if start == 0:
            expect(docs[0], call_doc(0, "initiated", "null"), "GET call")
    seq(batch, count, run)
elif mode == "livekit_room":
    # ... of a room's name: GET of its owner, then the room and its participants
    # (RedisStore::room: GET and LRANGE, pipelined).
    name, rid, count, batch = args[0], args[1], int(args[2]), int(args[3])
    def run(c, start, n):
        owners = c.roundtrip(enc("GET", room_name(name)) * n, n)
        if start == 0:
            expect(owners[0], "room:" + rid, "GET roomname")
        ids = [head(o).split(":", 1)[1] for o in owners]
        rooms = c.roundtrip(b"".join(enc("GET", room(r)) + enc("LRANGE", participants(r), 0, -1) for r in ids), 2 * n)
        if start == 0 and head(rooms[0]) is None:
            sys.exit("GET room: no room " + rid)
    seq(batch, count, run)
elif mode in ("erasable", "delete_user"):
    # Users with no calls, each in 2 rooms (user i joined rooms i and i+1; a room has 2
    # participants), then erased one by one (DELETE /users/:id).
    count, batch = map(int, args)
    def eid(i): return "0193a5c4-7e2b-7000-b000-%012d" % (i % count)
    def rid(i): return "0193a5c4-7e2b-7000-c000-%012d" % (i % count)
    if mode == "erasable":
        ev = '{"event":"room.joined","data":{"roomId":"%s","userId":"%s"},"sentAtUs":1764312871123456}'
        def new_room(i):
            doc = '{"id":"%s","name":"Fixture","roomName":"%s","participants":[],"createdAt":%s}' % (rid(i), rid(i), T)
            return script("insert_room", [room(rid(i)), ROOMS, room_name(rid(i)), DEADLINES],
                          [rid(i), doc, START + i, "room:" + rid(i), START + RETENTION + i, "{}"])
        def join(j):
            r, u = rid(j // 2 + j % 2), eid(j // 2)
            return script("join_room", [room(r), members(r), participants(r), user(u), user_rooms(u), DEADLINES],
                          [r, u, "room:" + r, START + RETENTION + j, ev % (r, u)])
        seq(100, count, each(lambda i: insert_user(eid(i), START + i), "stored", "insert_user"))
        seq(100, count, each(new_room, "stored", "insert_room"))
        seq(100, 2 * count, each(join, "joined", "join_room"))
    else:
        def make(i):
            ev = '{"event":"user.deleted","data":{"id":"%s"},"sentAtUs":1764312871123456}' % eid(i)
            return script("delete_user", erased_user(eid(i)), [eid(i), ev])
        seq(batch, count, each(make, "erased", "delete_user"))
elif mode in ("rearm", "claim"):
    # 100 deadlines made due again by a ZADD to past scores (the claim moved them a second
    # ahead); "claim" then sends claim_due, which must claim those 100 each time.
    count, batch = map(int, args)
    past = (int(time.time()) - 3600) * 1000
    def rearm(i):
        base = past + 1000 * (i % 2)  # alternately, so that every ZADD moves them
        return enc("ZADD", DEADLINES, *[x for j in range(100) for x in (base + j, "call:0193a5c4-7e2b-7000-d000-%012d" % j)])
    claim = script("claim_due", [DEADLINES], [200, 1000])
    if mode == "rearm":
        seq(batch, count, each(rearm, "100", "ZADD"))
    else:
        def run(c, start, n):
            replies = c.roundtrip(b"".join(rearm(start + k) + claim for k in range(n)), 2 * n)
            for r in replies[1::2]:
                if not r.startswith(b"*201\r\n"):
                    sys.exit("claim_due replied %r, not 100 due" % r[:120])
        seq(batch, count, run)
elif mode == "insert_user":
    conns, batch, secs, wait = int(args[0]), int(args[1]), float(args[2]), int(args[3])
    def make(w, i):
        u = cid(i, w)
        ev = '{"event":"user.registered","data":{"id":"%s","name":"Benchmark User"},"sentAtUs":1764312871123456}' % u
        return script("insert_user", [user(u), USERS], [u, user_doc(u, "Benchmark User"), START + i, ev])
    writes(conns, batch, secs, wait, make, "stored")
PY
resp() { START_MS=$NOW_MS "${client_pin[@]}" python3 "$dir/resp.py" "$PORT" "$dir" "$@"; }

echo "redis-capacity: $(redis-server --version | cut -d' ' -f3), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)," \
  "N=$N C=$C PIPE=$PIPE; sizes: user doc ${#USER_DOC} B, user event ${#USER_EVENT} B," \
  "call doc ${#CALL_DOC} B, call event ${#CALL_EVENT} B, message ${#MSG} B" >&2
reset
check_replies
reset

echo "store operations (no subscriber on {sb}:events, no replica, no persistence)" >&2
for pl in 1 "$PIPE"; do
  measure "GET user" "$pl" bench "$pl" GET "${P}user:$A"
  measure "EVALSHA insert_user" "$pl" bench "$pl" "${INSERT_USER[@]}"
  RANGE=1000 measure "EVALSHA insert_call" "$pl" bench "$pl" "${INSERT_CALL[@]}"
  reset
done
measure "EVALSHA insert_room" "$PIPE" bench "$PIPE" "${INSERT_ROOM[@]}"
measure "EVALSHA join_room (again, 2 participants)" "$PIPE" bench "$PIPE" "${JOIN_ROOM[@]}"
# GET /users: 101 GETs behind a ZRANGE (or two ZRANGEBYSCOREs after a cursor).
BN=$((N / 10)) measure "EVALSHA page, 100 users" "$PIPE" bench "$PIPE" "${PAGE_FIRST[@]}"
BN=$((N / 10)) measure "EVALSHA page, 100 users after a cursor" "$PIPE" bench "$PIPE" "${PAGE_NEXT[@]}"
calls=$((N / 4))
reset
measure "EVALSHA insert_call (1 conn, in order)" "$PIPE" resp insert_call "$calls" "$PIPE"
# livekit_room (the token, a webhook) is two round trips: the name's owner, then its document.
measure "livekit_room, a call's (GET, GET; 1 conn)" "$PIPE" resp livekit_call "$calls" "$PIPE"
measure "livekit_room, a room's (GET, GET+LRANGE; 1 conn)" "$PIPE" resp livekit_room "$RNAME" "$ROOM" "$calls" "$PIPE"
measure "EVALSHA end_call (1 conn, each ends a call)" "$PIPE" resp end_call "$calls" "$PIPE"
# Retention: each ended call deleted under its claim (the timer also GETs the call first).
measure "EVALSHA delete_call (1 conn, each deletes one)" "$PIPE" resp delete_call "$calls" "$PIPE"
reset
# Erasure of users with no calls, each in 2 rooms.
erased=$((N / 10))
resp erasable "$erased" "$PIPE" >/dev/null
measure "EVALSHA delete_user, 2 rooms (1 conn)" "$PIPE" resp delete_user "$erased" "$PIPE"
reset
# The timers' sweep, with 100,000 deadlines ahead (30 days of retention): every replica
# claims twice a second whether or not anything is due.
rc eval "for i = 1, tonumber(ARGV[1]) do
  redis.call('ZADD', KEYS[1], ARGV[2] + i, string.format('call:0193a5c4-7e2b-7000-9000-%012d', i)) end" \
  1 "${P}deadlines" 100000 $(( $(date +%s) * 1000 + 2592000000 )) >/dev/null
measure "EVALSHA claim_due, nothing due" "$PIPE" bench "$PIPE" "${CLAIM_DUE[@]}"
# With 100 due: a claim moves them a second ahead, so each claim_due follows a ZADD that
# makes the same 100 due again; that ZADD alone is measured first and taken off.
claims=$((N / 20))
measure "  ZADD making 100 deadlines due (1 conn)" "$PIPE" resp rearm "$claims" "$PIPE"
zadd_us=$LAST_CPU_US
measure "  the same + EVALSHA claim_due (1 conn)" "$PIPE" resp claim "$claims" "$PIPE"
claim_us=$(awk -v a="$LAST_CPU_US" -v b="$zadd_us" 'BEGIN {printf "%.2f", a - b}')
record "EVALSHA claim_due, 100 due (the difference)" "$PIPE" "$LAST_RPS" "$LAST_P50" "$claim_us" "$LAST_BUSY"

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
RANGE=1000 measure "XADD per-user stream, MAXLEN ~ 1000" "$PIPE" bench "$PIPE" XADD "${P}history:__rand_int__" MAXLEN '~' 1000 '*' e "$CALL_EVENT"
subscribe "${P}events" 8
BN=$((N / 2)) measure "EVALSHA insert_user, 8 subscribers on events" "$PIPE" bench "$PIPE" "${INSERT_USER[@]}"
BN=$((N / 2)) RANGE=1000 measure "EVALSHA insert_call, 8 subscribers on events" "$PIPE" bench "$PIPE" "${INSERT_CALL[@]}"
unsubscribe_all
reset

RPORT=$(free_port)
pin=("${client_pin[@]}")
start_redis "$RPORT" replica --replicaof 127.0.0.1 "$PORT"
for _ in $(seq 200); do
  rc info replication | grep -q 'state=online' && break
  sleep 0.05
done
BN=$((N / 2)) RANGE=1000 measure "EVALSHA insert_call, 1 replica attached" "$PIPE" bench "$PIPE" "${INSERT_CALL[@]}"
reset
secs=$(awk -v n="$N" 'BEGIN {s = n / 100000; print (s < 1 ? 1 : s)}')
measure "EVALSHA insert_user, 4 conns x 16 in flight" 16 resp insert_user 4 16 "$secs" 0
measure "  the same + WAIT 1 100 after each write" 16 resp insert_user 4 16 "$secs" 1
measure "EVALSHA insert_user, 1 conn x 1 in flight" 1 resp insert_user 1 1 "$secs" 0
measure "  the same + WAIT 1 100 after each write" 1 resp insert_user 1 1 "$secs" 1
redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1 || true
reset

rc config set appendonly yes >/dev/null
rc config set appendfsync everysec >/dev/null
for _ in $(seq 100); do rc info persistence | grep -q 'aof_rewrite_in_progress:0' && break; sleep 0.05; done
BN=$((N / 2)) RANGE=1000 measure "EVALSHA insert_call, appendonly everysec" "$PIPE" bench "$PIPE" "${INSERT_CALL[@]}"
rc config set appendonly no >/dev/null

{
  echo
  echo "Redis $(redis-server --version | cut -d' ' -f3) on $(nproc) CPUs (server on CPU 1, clients on CPU 0), N=$N C=$C, load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| case | pipeline | ops/s | p50 ms | Redis CPU µs/op | Redis core busy | ops per Redis CPU-s | deliveries/s |"
  echo "|---|---|---|---|---|---|---|---|"
  awk -F'|' '{printf "| %s | %s | %s | %s | %s | %s %% | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8}' "$rows"
} | tee "$OUT"
