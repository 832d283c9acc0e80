#!/usr/bin/env python3
"""The helpers of loadtest/retention.sh (standard library only, except `plot`):

    retention.py users URL N                      register N users (POST /users)
    retention.py run --redis NAME=PORT... --out DIR [--interval 5] [--drain S] -- CMD...
                                                  run CMD (the k6 load); every INTERVAL s write
                                                  elapsed_s, used_memory, dbsize, used_memory_rss
                                                  of each Redis to DIR/NAME.csv; keep sampling
                                                  DRAIN s after CMD exits; then the keys of each
                                                  Redis by pattern (DIR/keys-NAME.md); exit with CMD's status
    retention.py report DIR --minutes M [--label NAME=TEXT...]
                                                  the Markdown table (DIR/table.md too)
    retention.py plot DIR --minutes M --png PATH [--label NAME=TEXT...] [--title T]
                                                  the two-panel figure (needs matplotlib)
    retention.py keys PORT                        keys and MEMORY USAGE by pattern (ids stripped)
    retention.py sizes --url URL --redis-port P [--token] [--n 2000] [--pool 200]
                                                  bytes of Redis memory per user, per ended call,
                                                  per room with one join (Markdown)
"""
import argparse, csv, json, os, re, signal, socket, subprocess, sys, time
import http.client
import urllib.parse

# ---------------------------------------------------------------- a minimal Redis client


class Redis:
    def __init__(self, port, host="127.0.0.1"):
        self.s = socket.create_connection((host, port))
        self.f = self.s.makefile("rb")

    def cmd(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.s.sendall(b"".join(out))
        return self._read()

    def pipeline(self, commands):
        out = []
        for args in commands:
            out.append(b"*%d\r\n" % len(args))
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.s.sendall(b"".join(out))
        return [self._read() for _ in commands]

    def _read(self):
        line = self.f.readline()
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data.decode()
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError(f"unexpected reply {line!r}")

    def info(self, section):
        fields = {}
        for line in self.cmd("INFO", section).splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                fields[k] = v
        return fields

    def used_memory(self):
        return int(self.info("memory")["used_memory"])

    def memory_usage(self, key):
        # SAMPLES 0: every element of a collection counted, not an estimate from 5.
        return self.cmd("MEMORY", "USAGE", key, "SAMPLES", "0") or 0


# ---------------------------------------------------------------- HTTP


class Api:
    """Sequential JSON requests on one keep-alive connection."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)

    def request(self, method, path, body=None, token=None, expect=(200, 201)):
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body)
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                payload = r.read()
                break
            except (http.client.HTTPException, OSError):
                if attempt:
                    raise
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        if r.status not in expect:
            sys.exit(f"{method} {path}: {r.status} {payload[:300]!r}")
        return json.loads(payload) if payload else None

    def post(self, path, body, token=None):
        return self.request("POST", path, body, token)


def create_users(base, n, name="Retention User"):
    api = Api(base)
    return [api.post("/users", {"name": name}) for _ in range(n)]


# ---------------------------------------------------------------- run: sample while the load runs

FIELDS = ["elapsed_s", "used_memory", "dbsize", "used_memory_rss"]
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def key_patterns(port):
    """{pattern: [keys, bytes]} over every key, ids replaced by <id>."""
    r = Redis(port)
    found, cursor = {}, "0"
    while True:
        cursor, keys = r.cmd("SCAN", cursor, "COUNT", 1000)
        if keys:
            sizes = r.pipeline([("MEMORY", "USAGE", k, "SAMPLES", "0") for k in keys])
            for k, size in zip(keys, sizes):
                entry = found.setdefault(UUID.sub("<id>", k), [0, 0])
                entry[0] += 1
                entry[1] += size or 0
        if cursor == "0":
            return found


def patterns_markdown(found):
    lines = ["| key pattern | keys | MEMORY USAGE, bytes |", "|---|---:|---:|"]
    for pattern, (n, size) in sorted(found.items(), key=lambda kv: -kv[1][1]):
        lines.append(f"| `{pattern}` | {n:,} | {size:,} |")
    return "\n".join(lines)


def cmd_run(args):
    redis = []
    for spec in args.redis:
        name, port = spec.split("=", 1)
        redis.append((name, int(port), Redis(int(port))))
    os.makedirs(args.out, exist_ok=True)
    files = {name: open(os.path.join(args.out, f"{name}.csv"), "w", newline="") for name, _, _ in redis}
    writers = {name: csv.writer(f) for name, f in files.items()}
    for w in writers.values():
        w.writerow(FIELDS)

    def sample(t0):
        elapsed = time.monotonic() - t0
        row = {}
        for name, _, r in redis:
            mem = r.info("memory")
            row[name] = (int(mem["used_memory"]), r.cmd("DBSIZE"), int(mem["used_memory_rss"]))
            writers[name].writerow([f"{elapsed:.1f}", *row[name]])
            files[name].flush()
        return elapsed, row

    def progress(elapsed, row):
        parts = "  ".join(f"{n}: {m / 2**20:7.2f} MiB {k:>7,} keys" for n, (m, k, _) in row.items())
        print(f"retention: {elapsed / 60:5.1f} min  {parts}", file=sys.stderr, flush=True)

    t0 = time.monotonic()
    child_log = open(args.log, "w") if args.log else None
    proc = subprocess.Popen(args.command, stdout=child_log, stderr=subprocess.STDOUT if child_log else None)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1) or proc.terminate())
    tick, last_report = 0, -60.0
    load_end, drain_end = None, None
    while not stop:
        elapsed, row = sample(t0)
        if elapsed - last_report >= 59.9:
            progress(elapsed, row)
            last_report = elapsed
        if load_end is None and proc.poll() is not None:
            load_end = elapsed
            drain_end = elapsed + args.drain
            for name, port, _ in redis:
                with open(os.path.join(args.out, f"keys-{name}-end-of-load.json"), "w") as f:
                    json.dump(key_patterns(port), f)
        if load_end is not None and elapsed >= drain_end:
            break
        tick += 1
        time.sleep(max(0.0, t0 + tick * args.interval - time.monotonic()))
    progress(elapsed, row)
    if load_end is not None and args.drain > 0:
        for name, port, _ in redis:
            with open(os.path.join(args.out, f"keys-{name}-after-drain.json"), "w") as f:
                json.dump(key_patterns(port), f)
    with open(os.path.join(args.out, "load-end.txt"), "w") as f:
        f.write(f"{load_end if load_end is not None else elapsed:.1f}\n")
    for f in files.values():
        f.close()
    return proc.wait()


# ---------------------------------------------------------------- report and plot


def load_runs(d):
    runs = {}
    for name in ("retained", "kept"):
        path = os.path.join(d, f"{name}.csv")
        if os.path.exists(path):
            with open(path) as f:
                runs[name] = [(float(r["elapsed_s"]), int(r["used_memory"]), int(r["dbsize"])) for r in csv.DictReader(f)]
    if not runs:
        sys.exit(f"no samples in {d}")
    return runs


def labels_of(args):
    labels = {"retained": "retention 60 s", "kept": "retention off (0)"}
    for spec in args.label or []:
        k, v = spec.split("=", 1)
        labels[k] = v
    return labels


def at(samples, t):
    """The sample nearest to t seconds (None past the last one by more than a sample)."""
    best = min(samples, key=lambda s: abs(s[0] - t))
    return best if abs(best[0] - t) <= 10 else None


def slope(samples, start, end):
    """Least-squares slope per minute of memory and keys over start <= t <= end."""
    pts = [s for s in samples if start <= s[0] <= end]
    if len(pts) < 3:
        return None
    n = len(pts)
    mt = sum(p[0] for p in pts) / n
    var = sum((p[0] - mt) ** 2 for p in pts)
    out = []
    for i in (1, 2):
        mv = sum(p[i] for p in pts) / n
        out.append(60 * sum((p[0] - mt) * (p[i] - mv) for p in pts) / var)
    return out


def signed_bytes(v):
    if abs(v) >= 0.1 * 2**20:
        return f"{v / 2**20:+.3f} MiB"
    if abs(v) >= 1024:
        return f"{v / 1024:+.1f} KiB"
    return f"{v:+.0f} B"


def cmd_report(args):
    runs = load_runs(args.dir)
    labels = labels_of(args)
    load_end = args.minutes * 60
    names = [n for n in ("retained", "kept") if n in runs]
    head = "| minute | " + " | ".join(f"{labels[n]}: used_memory | {labels[n]}: keys" for n in names) + " |"
    lines = [head, "|" + "---:|" * (1 + 2 * len(names))]
    for m in [0] + [m for m in (1, 2, 5, 10) if m <= args.minutes]:
        cells = []
        for n in names:
            s = at(runs[n], m * 60)
            cells += [f"{s[1] / 2**20:.2f} MiB", f"{s[2]:,}"] if s else ["", ""]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    start = 120 if args.minutes > 2 else load_end / 2
    cells = []
    for n in names:
        sl = slope(runs[n], start, load_end)
        cells += [signed_bytes(sl[0]), f"{int(round(sl[1])):+,}"] if sl else ["", ""]
    what = "after minute 2" if args.minutes > 2 else f"after {start:.0f} s"
    lines.append(f"| slope per minute, {what} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    snaps = []
    for n in names:
        for moment, title in (("end-of-load", "when the load stopped"), ("after-drain", "after the drain")):
            path = os.path.join(args.dir, f"keys-{n}-{moment}.json")
            if os.path.exists(path):
                snaps.append((f"{labels[n]}, {title}", json.load(open(path))))
    if snaps:
        patterns = sorted({p for _, found in snaps for p in found}, key=lambda p: -max(f.get(p, [0, 0])[1] for _, f in snaps))
        print("\nKeys by pattern (ids stripped): count, and MEMORY USAGE in bytes\n")
        print("| key pattern | " + " | ".join(t for t, _ in snaps) + " |")
        print("|---|" + "---:|" * len(snaps))
        for p in patterns:
            cells = []
            for _, found in snaps:
                k, b = found.get(p, [0, 0])
                cells.append(f"{k:,} key{'' if k == 1 else 's'}, {b:,} B" if k else "")
            print(f"| `{p}` | " + " | ".join(cells) + " |")
    with open(os.path.join(args.dir, "table.md"), "w") as f:
        f.write(table + "\n")


def cmd_plot(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = load_runs(args.dir)
    labels = labels_of(args)
    # The load's nominal end (k6 exits a few seconds later, when the sampler notices it).
    load_end = args.minutes * 60
    colours = {"retained": "tab:blue", "kept": "tab:red"}
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    for n in [n for n in ("kept", "retained") if n in runs]:
        samples = runs[n]
        t = [s[0] / 60 for s in samples]
        ax1.plot(t, [s[1] / 2**20 for s in samples], label=labels[n], color=colours[n])
        ax2.plot(t, [s[2] for s in samples], label=labels[n], color=colours[n])
    last = max(s[0] for samples in runs.values() for s in samples)
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.08)
        if last > load_end + 10:
            ax.axvline(load_end / 60, color="grey", linestyle="--", linewidth=1)
            ax.text(load_end / 60, ax.get_ylim()[1] * 0.97, " load stops", va="top", color="grey", fontsize=8)
        handles, names = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], names[::-1], loc="upper left")
    ax1.set_ylabel("Redis used_memory, MiB")
    ax2.set_ylabel("Redis keys (DBSIZE)")
    ax2.set_xlabel("minutes")
    ax2.get_yaxis().set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    if args.title:
        ax1.set_title(args.title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.png)), exist_ok=True)
    fig.savefig(args.png, dpi=110)
    print(f"retention: figure written to {args.png}", file=sys.stderr)


# ---------------------------------------------------------------- sizes


def cmd_sizes(args):
    r = Redis(args.redis_port)
    api = Api(args.url)
    ns = r.cmd("KEYS", "*:log:last")
    prefix = ns[0][: -len("log:last")] if ns else None
    n, token = args.n, args.token

    def log_usage():
        return r.memory_usage(prefix + "log") if prefix else 0

    # The pool the calls and joins use, registered before anything is measured.
    pool = [api.post("/users", {"name": "Pool User"}) for _ in range(args.pool)]
    tok = {u["id"]: u.get("token") for u in pool}
    ids = [u["id"] for u in pool]

    def user():
        return api.post("/users", {"name": "Sized User"})

    def call(k):
        a, b = ids[k % len(ids)], ids[(k * 7 + 1) % len(ids)]
        if a == b:
            b = ids[(k + 1) % len(ids)]
        c = api.post("/calls", {"fromUserId": a, "toUserId": b}, tok[a])
        api.post(f"/calls/{c['id']}/accept", {"userId": b}, tok[b])
        e = api.post(f"/calls/{c['id']}/end", {"userId": a}, tok[a])
        assert e["status"] == "ended" and e["endReason"] == "completed", e
        return c

    def room(k):
        a = ids[k % len(ids)]
        room = api.post("/rooms", {"name": "Sized Room"}, tok[a])
        api.post(f"/rooms/{room['id']}/join", {"userId": a}, tok[a])
        return room

    # Warm-up: scripts loaded, the shared indexes and the history streams created.
    for k in range(20):
        user(), call(k), room(k)
    prefix = prefix or r.cmd("KEYS", "*:log:last")[0][: -len("log:last")]

    def measure(label, make):
        time.sleep(0.5)
        m0, l0 = r.used_memory(), log_usage()
        last = None
        for k in range(n):
            last = make(k)
        time.sleep(0.5)
        m1, l1 = r.used_memory(), log_usage()
        return label, (m1 - m0) / n, (l1 - l0) / n, last

    rows = []
    label, total, log, u = measure("user (`POST /users`)", lambda k: user())
    own = {f"user:{u['id']}": r.memory_usage(f"{prefix}user:{u['id']}")}
    rows.append((label, total, log, own))

    label, total, log, c = measure("ended call (created, accepted, ended)", call)
    own = {f"call:{c['id']}": r.memory_usage(f"{prefix}call:{c['id']}"),
           f"roomname:{c['roomName']}": r.memory_usage(f"{prefix}roomname:{c['roomName']}")}
    rows.append((label, total, log, own))

    label, total, log, rm = measure("room with one join", room)
    own = {f"room:{rm['id']}": r.memory_usage(f"{prefix}room:{rm['id']}"),
           f"room:{rm['id']}:participants": r.memory_usage(f"{prefix}room:{rm['id']}:participants"),
           f"room:{rm['id']}:members": r.memory_usage(f"{prefix}room:{rm['id']}:members"),
           f"roomname:{rm['roomName']}": r.memory_usage(f"{prefix}roomname:{rm['roomName']}")}
    rows.append((label, total, log, own))

    mode = "AUTH=token" if token else "AUTH=open"
    print(f"\n{mode}, N = {n} of each, {args.pool} users in the pool of callers and joiners:\n")
    print("| item | used_memory per item | of which the event log | per item without the log | "
          "MEMORY USAGE of the item's own keys (one sample) |")
    print("|---|---:|---:|---:|---|")
    for label, total, log, own in rows:
        keys = ", ".join(f"`{UUID.sub('<id>', k)}` {v} B" for k, v in own.items())
        print(f"| {label} | {total:,.0f} B | {log:,.0f} B | **{total - log:,.0f} B** | {keys} (sum {sum(own.values())} B) |")
    if token:
        hist = [k for k in r.cmd("KEYS", prefix + "history:*")]
        entries = sum(r.pipeline([("XLEN", k) for k in hist]))
        size = sum(r.pipeline([("MEMORY", "USAGE", k, "SAMPLES", "0") for k in hist]))
        print("\nWith AUTH=token an ended call's figure includes its 6 history entries (call.started, "
              "call.accepted, call.ended, each in the caller's and the callee's history), a room's its join's one.")
        print(f"\nHistories: {len(hist)} streams, {entries:,} entries, {size:,} bytes by MEMORY USAGE "
              f"({size / max(entries, 1):.0f} B per entry).")
    print("\nKeys by pattern at the end:\n")
    print(patterns_markdown(key_patterns(args.redis_port)))


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("users")
    p.add_argument("url")
    p.add_argument("n", type=int)
    p = sub.add_parser("run")
    p.add_argument("--redis", action="append", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--interval", type=float, default=5)
    p.add_argument("--drain", type=float, default=0)
    p.add_argument("--log", help="file for the command's stdout and stderr")
    p.add_argument("command", nargs=argparse.REMAINDER)
    for name in ("report", "plot"):
        p = sub.add_parser(name)
        p.add_argument("dir")
        p.add_argument("--minutes", type=float, required=True)
        p.add_argument("--label", action="append")
        if name == "plot":
            p.add_argument("--png", required=True)
            p.add_argument("--title")
    p = sub.add_parser("keys")
    p.add_argument("port", type=int)
    p = sub.add_parser("sizes")
    p.add_argument("--url", required=True)
    p.add_argument("--redis-port", type=int, required=True)
    p.add_argument("--token", action="store_true")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--pool", type=int, default=200)
    args = ap.parse_args()
    if args.cmd == "users":
        create_users(args.url, args.n)
    elif args.cmd == "run":
        if args.command[:1] == ["--"]:
            args.command = args.command[1:]
        sys.exit(cmd_run(args))
    elif args.cmd == "report":
        cmd_report(args)
    elif args.cmd == "plot":
        cmd_plot(args)
    elif args.cmd == "keys":
        print(patterns_markdown(key_patterns(args.port)))
    elif args.cmd == "sizes":
        cmd_sizes(args)


if __name__ == "__main__":
    main()
