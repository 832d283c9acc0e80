#!/usr/bin/env python3
"""How late the server's call timers fire: N calls left ringing on R replicas sharing a
Redis (CALL_RING_TIMEOUT=1), then every replica's switchboard_call_timer_lateness_seconds
and switchboard_call_timers_fired_total, summed. Prints the lateness distribution and how
many timers each replica fired (each call must be missed exactly once).

    loadtest/timers.py [--bin target/release/switchboard] [--calls 600] [--replicas 3]
"""
import argparse, json, os, re, socket, subprocess, sys, time, urllib.request

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def wait(url):
    for _ in range(200):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{url} did not answer")

def post(base, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/switchboard")
    ap.add_argument("--calls", type=int, default=600)
    ap.add_argument("--replicas", type=int, default=3)
    args = ap.parse_args()
    redis_port = free_port()
    procs = [subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)]
    try:
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        env.update(REDIS_URL=f"redis://127.0.0.1:{redis_port}", REDIS_NAMESPACE="timers", CALL_RING_TIMEOUT="1")
        bases = []
        for _ in range(args.replicas):
            port = free_port()
            procs.append(subprocess.Popen([args.bin, "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            bases.append(f"http://127.0.0.1:{port}")
        for base in bases:
            wait(base + "/readyz")
        a, b = post(bases[0], "/users", {"name": "A"})["id"], post(bases[-1], "/users", {"name": "B"})["id"]
        started = time.time()
        for i in range(args.calls):
            post(bases[i % len(bases)], "/calls", {"fromUserId": a, "toUserId": b})
        print(f"{args.calls} calls started on {len(bases)} replicas in {time.time() - started:.1f} s; ring timeout 1 s")
        time.sleep(3)
        buckets, fired = {}, []
        for base in bases:
            text = urllib.request.urlopen(base + "/metrics").read().decode()
            for line in text.splitlines():
                m = re.match(r'switchboard_call_timer_lateness_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
                if m:
                    buckets[m.group(1)] = buckets.get(m.group(1), 0) + float(m.group(2))
                m = re.match(r'switchboard_call_timers_fired_total\{kind="missed"\} (\S+)', line)
                if m:
                    fired.append(int(float(m.group(1))))
        total = buckets.get("+Inf", 0)
        print("timers fired per replica:", fired, "total", sum(fired))
        for le, n in buckets.items():
            print(f"  fired within {le:>5} s of the deadline: {int(n):5d} ({100 * n / max(total, 1):5.1f} %)")
        ended = json.load(urllib.request.urlopen(bases[0] + "/calls?status=ended&limit=1000"))
        missed = sum(1 for c in ended if c["endReason"] == "missed")
        print(f"calls ended as missed: {missed} of {args.calls}")
        sys.exit(0 if missed == args.calls == sum(fired) else 1)
    finally:
        for p in procs:
            p.terminate()

if __name__ == "__main__":
    main()
