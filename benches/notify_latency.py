#!/usr/bin/env python3
"""End-to-end notification latency: from Tocsin's 202 on ingest to the webhook delivered.

Starts the release binary with a policy that notifies one webhook receiver (a local HTTP
server in this script), posts RATE new incidents per second for DURATION seconds over
loopback, and reports p50/p99/max of (arrival at the receiver - 202 received), with counts.

    python3 benches/notify_latency.py                   # 500 incidents/s for 10 s
    RATE=1000 DURATION=20 python3 benches/notify_latency.py

Needs a release build (cargo build --release). Everything stays on 127.0.0.1 and stops by itself.
"""
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

RATE = int(os.environ.get("RATE", "500"))
DURATION = float(os.environ.get("DURATION", "10"))
SENDERS = int(os.environ.get("SENDERS", "8"))
TOKEN = "bench-latency-token"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "tocsin")

arrivals = {}
arrivals_lock = threading.Lock()


class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        now = time.monotonic()
        try:
            summary = json.loads(body)["incident"]["summary"]
        except (ValueError, KeyError, TypeError):
            summary = None
        with arrivals_lock:
            if summary is not None and summary not in arrivals:
                arrivals[summary] = now
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} not found: run `cargo build --release` first")
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp(prefix="tocsin-latency-")
    port = free_port()
    config = os.path.join(work, "tocsin.yaml")
    with open(config, "w") as f:
        f.write(f"""
sources:
  - {{name: bench, token: {TOKEN}, allow: [events], rate_limit: {{per_second: 100000, burst: 100000}}}}
users:
  - {{name: admin, token: {TOKEN}, roles: [admin]}}
notifications:
  workers: 64
  webhooks:
    - {{name: sink, url: "http://127.0.0.1:{receiver.server_address[1]}/hook", allow_private: true, timeout: 5s}}
  rate_limits:
    webhook: {{per_recipient: [{{count: 1000000, per: 1m}}]}}
policies:
  - {{name: page, notify: [{{webhook: sink}}]}}
default_policy: page
""")
    env = dict(os.environ, TOCSIN_LISTEN=f"127.0.0.1:{port}", TOCSIN_DATA_DIR=os.path.join(work, "data"),
               TOCSIN_LOG="warn")
    daemon = subprocess.Popen([BIN, "serve", "--config", config], env=env, stdout=subprocess.PIPE)
    try:
        line = daemon.stdout.readline().decode()
        if "listening" not in line:
            sys.exit(f"tocsin did not start: {line}")
        accepted = {}
        lock = threading.Lock()
        total = int(RATE * DURATION)
        start = time.monotonic() + 0.5

        def sender(k):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            for i in range(k, total, SENDERS):
                due = start + i / RATE
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                body = json.dumps({"summary": f"lat-{i}", "dedup_key": f"lat-{i}", "severity": "critical"})
                conn.request("POST", "/api/v1/events", body,
                             {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
                resp = conn.getresponse()
                resp.read()
                t = time.monotonic()
                if resp.status == 202:
                    with lock:
                        accepted[f"lat-{i}"] = t

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(SENDERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sent_end = time.monotonic()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with arrivals_lock:
                if all(k in arrivals for k in accepted):
                    break
            time.sleep(0.1)
        with arrivals_lock:
            lat = sorted((arrivals[k] - t) * 1000 for k, t in accepted.items() if k in arrivals)
        missing = len(accepted) - len(lat)
        achieved = len(accepted) / max(sent_end - start, 1e-9)
        if not lat:
            sys.exit("nothing was delivered")
        pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))]
        print(f"offered {RATE}/s for {DURATION}s: {len(accepted)} incidents accepted ({achieved:.0f}/s), "
              f"{len(lat)} delivered, {missing} missing")
        print(f"202 -> webhook delivered: p50 {pct(50):.1f} ms, p99 {pct(99):.1f} ms, max {lat[-1]:.1f} ms")
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        receiver.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
