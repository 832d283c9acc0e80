#!/usr/bin/env python3
"""An idle-connection flood at full size, and what it costs a replica.

Starts one replica of the built binary (with an ops port), measures its RSS, opens
--connections idle TCP connections from several processes (each process may hold only
`ulimit -n` files), checks that /healthz and /readyz keep answering on the ops port while
the public port is at its cap, closes the flood, and measures RSS again once the replica
has let go of the connections. Then sends one websocket message of --ws-bytes over
maxPayload with the npm socket.io-client and measures RSS after it.

    loadtest/abuse/flood.py --bin target/release/switchboard          # 20,000 connections
    loadtest/abuse/flood.py --connections 2000 --bin target/debug/switchboard

Prints one table and one JSON line; exits non-zero only if the run itself broke.
"""

import argparse
import json
import multiprocessing as mp
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def get(url, timeout=2.0):
    """(status, seconds) of one GET; status 0 when it failed."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, time.monotonic() - started
    except urllib.error.HTTPError as e:
        return e.code, time.monotonic() - started
    except OSError:
        return 0, time.monotonic() - started


def hold(port, count, ready, release):
    """One flooding process: opens `count` idle connections and holds them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    conns = []
    for _ in range(count):
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", port))
            conns.append(s)
        except OSError:
            s.close()
    ready.put(len(conns))
    release.wait()
    for s in conns:
        s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/switchboard"))
    ap.add_argument("--connections", type=int, default=20_000)
    ap.add_argument("--per-process", type=int, default=9_000)
    ap.add_argument("--header-timeout", type=int, default=20)
    ap.add_argument("--ws-bytes", type=int, default=200_000)
    args = ap.parse_args()

    port, ops = free_port(), free_port()
    env = dict(os.environ, PORT=str(port), OPS_PORT=str(ops), HOST="127.0.0.1",
               HEADER_TIMEOUT=str(args.header_timeout), RUST_LOG="warn")
    env.pop("REDIS_URL", None)
    server = subprocess.Popen([args.bin], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base, ops_base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ops}"
        for _ in range(100):
            if get(ops_base + "/readyz")[0] == 200:
                break
            time.sleep(0.1)
        for _ in range(20):  # warm up: the first requests allocate what every request reuses
            get(base + "/healthz")
        before = rss_kib(server.pid)

        procs = -(-args.connections // args.per_process)
        ready, release = mp.Queue(), mp.Event()
        workers = [mp.Process(target=hold, args=(port, min(args.per_process, args.connections - i * args.per_process), ready, release))
                   for i in range(procs)]
        started = time.monotonic()
        for w in workers:
            w.start()
        opened = sum(ready.get() for _ in workers)
        flood_s = time.monotonic() - started
        during = rss_kib(server.pid)
        probes = [get(ops_base + p) for p in ("/healthz", "/readyz") for _ in range(10)]
        probe_ok = sum(1 for s, _ in probes if s == 200)
        probe_worst = max(t for _, t in probes)
        public = get(base + "/healthz")[0]
        release.set()
        for w in workers:
            w.join()
        # The replica sees the closes at once; give it a moment to settle.
        time.sleep(2)
        after_2s = rss_kib(server.pid)
        time.sleep(8)
        after = rss_kib(server.pid)
        public_after = get(base + "/healthz")[0]

        node = os.path.join(ROOT, ".venv/node/bin/node")
        node = node if os.path.exists(node) else "node"
        script = ("import { io } from 'socket.io-client';"
                  "const s = io(process.argv[1], { transports: ['websocket'], reconnection: false });"
                  f"s.on('connect', () => s.emit('big', 'x'.repeat({args.ws_bytes})));"
                  "s.on('disconnect', (r) => { console.log(r); process.exit(0); });"
                  "setTimeout(() => { console.log('still connected'); process.exit(1); }, 8000);")
        ws = subprocess.run([node, "--input-type=module", "-e", script, base], cwd=os.path.join(ROOT, "tests/client"),
                            capture_output=True, text=True, timeout=30)
        time.sleep(1)
        after_ws = rss_kib(server.pid)

        result = {
            "connections_asked": args.connections, "connections_open": opened, "flood_s": round(flood_s, 2),
            "rss_before_kib": before, "rss_during_kib": during, "rss_after_2s_kib": after_2s, "rss_after_kib": after,
            "rss_after_vs_before": round(after / before, 3) if before else None,
            "probes_ok": f"{probe_ok}/{len(probes)}", "probe_worst_ms": round(probe_worst * 1e3, 1),
            "public_healthz_at_cap": public, "public_healthz_after": public_after,
            "ws_message_bytes": args.ws_bytes, "ws_closed": ws.stdout.strip(), "rss_after_ws_kib": after_ws,
        }
        width = max(len(k) for k in result)
        for k, v in result.items():
            print(f"{k:<{width}}  {v}")
        print(json.dumps(result))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
