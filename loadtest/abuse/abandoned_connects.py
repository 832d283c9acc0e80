#!/usr/bin/env python3
"""Connects abandoned while the token is checked, and what they cost a replica afterwards.

Starts redis-server and two token-mode replicas of BIN on it; registers a user through
replica B (so replica A has not seen it and reads it from Redis on each connect); opens
ABANDONED Engine.IO polling sessions on A; freezes Redis (SIGSTOP); sends each session's
connect packet with the token and closes the session at once; thaws Redis (SIGCONT). Then
POSTS /users through B (each a broadcast A relays to its sockets) and prints A's RSS
before and after, and A's tracked-connection gauges.

    loadtest/abuse/abandoned_connects.py target/release/switchboard [--abandoned 300] [--posts 6000]

Only the standard library; redis-server must be installed (scripts/install-deps.sh).
"""

import argparse
import concurrent.futures
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request

from flood import free_port, rss_kib

SECRET = "a-benchmark-auth-secret-of-at-least-32-bytes"


def request(method, url, body=None, token=None):
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("authorization", f"Bearer {token}")
    if method == "POST" and url.endswith("/users"):
        req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read().decode()


def wait_ready(base):
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            request("GET", f"{base}/readyz")
            return
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"{base} did not become ready")


def metric(base, name):
    for line in request("GET", f"{base}/metrics").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--abandoned", type=int, default=300)
    ap.add_argument("--posts", type=int, default=6000)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp()
    redis_port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL,
    )
    procs = [redis]
    try:
        time.sleep(0.3)
        bases = []
        for _ in range(2):
            port = free_port()
            env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{redis_port}", AUTH="token",
                       AUTH_SECRET=SECRET, PORT=str(port), HOST="127.0.0.1", REDIS_TIMEOUT_MS="30000",
                       RUST_LOG="error")
            procs.append(subprocess.Popen([args.bin], env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            bases.append(f"http://127.0.0.1:{port}")
        for base in bases:
            wait_ready(base)
        victim, other = bases
        victim_pid = procs[1].pid
        token = json.loads(request("POST", f"{other}/users", '{"name":"Ana"}'))["token"]

        sids = []
        for _ in range(args.abandoned):
            text = request("GET", f"{victim}/socket.io/?EIO=4&transport=polling")
            sids.append(json.loads(text[1:])["sid"])

        def abandon(sid):
            url = f"{victim}/socket.io/?EIO=4&transport=polling&sid={sid}"
            request("POST", url, "40" + json.dumps({"token": token}))
            request("POST", url, "1")

        redis.send_signal(signal.SIGSTOP)
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            list(pool.map(abandon, sids))
        redis.send_signal(signal.SIGCONT)
        time.sleep(3)  # past the replica's grace for unacknowledged connects (1 s) and a gauge update (2 s)

        before = rss_kib(victim_pid)
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: request("POST", f"{other}/users", f'{{"name":"u{i}"}}'), range(args.posts)))
        time.sleep(3)
        after = rss_kib(victim_pid)
        print(f"abandoned connects: {args.abandoned}, broadcasts after: {args.posts}")
        print(f"replica RSS: {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB ({(after - before) / 1024:+.1f} MiB)")
        print(f"tracked connections: {metric(victim, 'switchboard_socketio_tracked_connections')}, "
              f"catching up: {metric(victim, 'switchboard_socketio_catching_up')}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait()


if __name__ == "__main__":
    main()
