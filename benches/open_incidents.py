#!/usr/bin/env python3
"""Memory per open incident: resident memory added per incident held open.

Starts the release binary with no policy (nothing is notified, so no outbox rows or timers),
measures its resident memory (VmRSS) once it is ready and has taken one warm-up request, then
opens distinct incidents (canonical events, BATCH per request, each with its own dedup key) and
at every checkpoint prints the incidents open (from /metrics), RSS, the RSS added since the
start divided by the incidents open, and the store file's size per incident.

    python3 benches/open_incidents.py                          # checkpoints 100k, 300k, 1M
    CHECKPOINTS=100000,300000 python3 benches/open_incidents.py

RSS includes redb's page cache (capped at 64 MiB, see store.rs), so the per-incident figure
falls as the count grows; the in-memory open-incident index is the part that grows without
bound. Stops at TIME_LIMIT seconds (default 900) whatever checkpoint it reached. Needs a
release build. Everything stays on 127.0.0.1 and is stopped at the end.
"""
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

CHECKPOINTS = [int(x) for x in os.environ.get("CHECKPOINTS", "100000,300000,1000000").split(",")]
BATCH = int(os.environ.get("BATCH", "1000"))
TIME_LIMIT = float(os.environ.get("TIME_LIMIT", "900"))
TOKEN = "bench-memory-token"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "tocsin")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(conn, events):
    body = json.dumps(events)
    conn.request("POST", "/api/v1/events", body,
                 {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    resp = conn.getresponse()
    resp.read()
    if resp.status != 202:
        sys.exit(f"ingest answered {resp.status}")


def open_count(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    m = re.search(r"^tocsin_incidents_open\S*\s+(\d+)", text, re.M)
    return int(m.group(1)) if m else -1


def main():
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} not found: run `cargo build --release` first")
    work = tempfile.mkdtemp(prefix="tocsin-memory-")
    port = free_port()
    config = os.path.join(work, "tocsin.yaml")
    with open(config, "w") as f:
        f.write(f"""
sources:
  - {{name: bench, token: {TOKEN}, allow: [events]}}
""")
    data = os.path.join(work, "data")
    env = dict(os.environ, TOCSIN_LISTEN=f"127.0.0.1:{port}", TOCSIN_DATA_DIR=data, TOCSIN_LOG="error")
    daemon = subprocess.Popen([BIN, "serve", "--config", config], env=env, stdout=subprocess.PIPE)
    try:
        if "listening" not in daemon.stdout.readline().decode():
            sys.exit("tocsin did not start")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        # Warm-up: one request (thread pools, the first transaction), then the baseline.
        post(conn, [{"summary": "warm-up", "dedup_key": "warm-up", "severity": "warning"}])
        time.sleep(1)
        base = rss_kb(daemon.pid)
        print(f"baseline RSS {base / 1024:.1f} MB (1 incident open)", flush=True)
        t0 = time.monotonic()
        sent = 0
        for target in sorted(CHECKPOINTS):
            while sent < target:
                if time.monotonic() - t0 > TIME_LIMIT:
                    print(f"time limit {TIME_LIMIT:.0f} s reached at {sent} incidents", flush=True)
                    return
                n = min(BATCH, target - sent)
                post(conn, [{"summary": f"incident {sent + i}", "dedup_key": f"mem-{sent + i}",
                             "severity": "warning", "labels": {"host": f"host-{sent + i}", "job": "bench"}}
                            for i in range(n)])
                sent += n
            time.sleep(1)
            opened = open_count(port)
            rss = rss_kb(daemon.pid)
            size = os.path.getsize(os.path.join(data, "tocsin.redb"))
            print(f"{opened:>9} open after {time.monotonic() - t0:6.1f} s: RSS {rss / 1024:7.1f} MB, "
                  f"+{(rss - base) / 1024:7.1f} MB = {(rss - base) * 1024 / max(opened - 1, 1):6.0f} bytes "
                  f"per open incident; store file {size / max(opened, 1):6.0f} bytes per incident", flush=True)
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
