#!/usr/bin/env python3
"""A downstream outage with many queued notifications: memory stays flat, nothing is lost,
and the queue drains at the configured limits once the receiver recovers.

Starts the release binary with a policy that pages one webhook, posts INCIDENTS new incidents
(in batches of 1,000 canonical events) while the webhook answers 503, keeps it down for OUTAGE
seconds, then heals it and waits until every incident has arrived. Samples the daemon's
resident memory every second and prints peak RSS during the outage and the drain, the drain
time, and how many requests carried how many notifications (bundles).

    python3 benches/outage.py                          # 100,000 incidents, 120 s outage
    INCIDENTS=100000 OUTAGE=600 python3 benches/outage.py    # the 10-minute version

Uses the default webhook limits (120 per minute per endpoint): messages over the limit wait
and go out bundled. Needs a release build. Everything stays on 127.0.0.1.
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

INCIDENTS = int(os.environ.get("INCIDENTS", "100000"))
OUTAGE = float(os.environ.get("OUTAGE", "120"))
DRAIN_LIMIT = float(os.environ.get("DRAIN_LIMIT", "1800"))
TOKEN = "bench-outage-token"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "tocsin")

state = {"up": False, "requests_down": 0, "requests_up": 0}
seen = set()
lock = threading.Lock()


class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with lock:
            up = state["up"]
            state["requests_up" if up else "requests_down"] += 1
            if up:
                msg = json.loads(body)
                items = msg.get("notifications", [msg])
                for item in items:
                    seen.add(item["incident"]["summary"])
        self.send_response(200 if up else 503)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


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


def main():
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} not found: run `cargo build --release` first")
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp(prefix="tocsin-outage-")
    port = free_port()
    config = os.path.join(work, "tocsin.yaml")
    with open(config, "w") as f:
        f.write(f"""
sources:
  - {{name: bench, token: {TOKEN}, allow: [events]}}
users:
  - {{name: admin, token: {TOKEN}, roles: [admin]}}
notifications:
  webhooks:
    - {{name: sink, url: "http://127.0.0.1:{receiver.server_address[1]}/hook", allow_private: true}}
  delivery: {{max_attempts: 1000, max_age: 24h}}
policies:
  - {{name: page, notify: [{{webhook: sink}}]}}
default_policy: page
""")
    env = dict(os.environ, TOCSIN_LISTEN=f"127.0.0.1:{port}", TOCSIN_DATA_DIR=os.path.join(work, "data"),
               TOCSIN_LOG="error")
    daemon = subprocess.Popen([BIN, "serve", "--config", config], env=env, stdout=subprocess.PIPE)
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((time.monotonic(), rss_kb(daemon.pid)))
            time.sleep(1)

    try:
        if "listening" not in daemon.stdout.readline().decode():
            sys.exit("tocsin did not start")
        threading.Thread(target=sample, daemon=True).start()
        t0 = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for start in range(0, INCIDENTS, 1000):
            body = json.dumps([{"summary": f"out-{i}", "dedup_key": f"out-{i}", "severity": "critical"}
                               for i in range(start, min(start + 1000, INCIDENTS))])
            conn.request("POST", "/api/v1/events", body,
                         {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 202:
                sys.exit(f"ingest answered {resp.status}")
        posted = time.monotonic()
        time.sleep(max(0.0, OUTAGE - (posted - t0)))
        healed = time.monotonic()
        with lock:
            state["up"] = True
        deadline = healed + DRAIN_LIMIT
        while time.monotonic() < deadline:
            with lock:
                if len(seen) >= INCIDENTS:
                    break
            time.sleep(1)
        drained = time.monotonic()
        stop.set()
        during = [kb for t, kb in samples if t <= healed]
        after = [kb for t, kb in samples if t > healed]
        print(f"{INCIDENTS} incidents posted in {posted - t0:.1f} s; outage {healed - t0:.0f} s; "
              f"{state['requests_down']} attempts refused during it")
        print(f"RSS during the outage: first {during[0] // 1024 if during else 0} MB, "
              f"peak {max(during) // 1024 if during else 0} MB, last {during[-1] // 1024 if during else 0} MB")
        print(f"after healing: {len(seen)}/{INCIDENTS} incidents delivered in {drained - healed:.0f} s "
              f"({len(seen) / max(drained - healed, 1e-9):.0f}/s) over {state['requests_up']} requests; "
              f"peak RSS {max(after) // 1024 if after else 0} MB")
        if len(seen) < INCIDENTS:
            sys.exit(f"{INCIDENTS - len(seen)} incidents not delivered within {DRAIN_LIMIT:.0f} s")
    finally:
        stop.set()
        daemon.terminate()
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
        receiver.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
