#!/usr/bin/env python3
"""Starts the stack (devbroker, PostgreSQL database, ingest, worker, demo receiver), drives
traffic through every path a dashboard or alert looks at (accepted webhooks, a bad signature, a
call, a delivery that is dead-lettered), scrapes /metrics of ingest and worker, and fails if any
metric named in a dashboard panel or an alert rule does not exist (metric_names.py --scrape).

Needs HOOKRELAY_TEST_DATABASE_URL (scripts/dev test sets it). Loopback only.
usage: live_metrics_test.py BIN_DIR SOURCE_DIR
"""
import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None, timeout=10):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""


def wait_until(what, predicate, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def main():
    bin_dir, src_dir = sys.argv[1], sys.argv[2]
    base_url = os.environ.get("HOOKRELAY_TEST_DATABASE_URL")
    if not base_url:
        raise SystemExit("HOOKRELAY_TEST_DATABASE_URL is not set (scripts/dev test sets it)")
    db = "hr_test_live_" + uuid.uuid4().hex[:12]
    db_url = base_url.rsplit("/", 1)[0] + "/" + db
    work = tempfile.mkdtemp(prefix="hookrelay-live-metrics-")
    procs = []
    ok = False
    try:
        subprocess.run(["psql", base_url, "-qc", f"CREATE DATABASE {db}"], check=True)
        subprocess.run([f"{bin_dir}/cli/hookrelay", "migrate", "--database-url", db_url,
                        "--dir", f"{src_dir}/migrations"], check=True, stdout=subprocess.DEVNULL)

        def start(name, *argv):
            log = open(os.path.join(work, name + ".log"), "w")
            p = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            procs.append((name, p))
            return p

        bootstrap_file = os.path.join(work, "bootstrap")
        start("devbroker", f"{bin_dir}/devbroker/hookrelay-devbroker", "--bootstrap-file", bootstrap_file,
              "--partitions", "4")
        wait_until("devbroker", lambda: os.path.exists(bootstrap_file))
        bootstrap = open(bootstrap_file).read().strip()
        ingest_port, worker_port, receiver_port = free_port(), free_port(), free_port()
        route_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        config = os.path.join(work, "config.yaml")
        with open(config, "w") as f:
            f.write(f"""
kafka: {{ bootstrap_servers: "{bootstrap}" }}
ingest: {{ listen: "127.0.0.1:{ingest_port}" }}
sources:
  github: {{ scheme: github, secrets: ["live-secret"] }}
routes:
  github:
    - {{ name: good, url: "http://127.0.0.1:{receiver_port}/ok", secret: "{route_secret}" }}
    - {{ name: rejected, url: "http://127.0.0.1:{receiver_port}/bad", secret: "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }}
api_tokens: ["tok_live_0123456789abcdef"]
postgres: {{ url: "{db_url}" }}
worker: {{ listen: "127.0.0.1:{worker_port}", allow_private_networks: true }}
retry: {{ schedule_seconds: [1, 2], max_attempts: 2 }}
""")
        start("receiver", f"{bin_dir}/tools/hookrelay-demo-receiver", "--listen", f"127.0.0.1:{receiver_port}",
              "--secret", route_secret)
        start("ingest", f"{bin_dir}/ingest/hookrelay-ingest", "--config", config)
        start("worker", f"{bin_dir}/worker/hookrelay-worker", "--config", config)
        ingest = f"http://127.0.0.1:{ingest_port}"
        worker = f"http://127.0.0.1:{worker_port}"
        wait_until("ingest ready", lambda: http("GET", ingest + "/readyz")[0] == 200)
        wait_until("worker ready", lambda: http("GET", worker + "/readyz")[0] == 200)

        for i in range(5):
            body = json.dumps({"n": i}).encode()
            sig = hmac.new(b"live-secret", body, hashlib.sha256).hexdigest()
            status, text = http("POST", ingest + "/webhooks/github", body,
                                {"X-Hub-Signature-256": "sha256=" + sig, "X-GitHub-Delivery": f"live-{i}"})
            assert status == 202, (status, text)
        status, _ = http("POST", ingest + "/webhooks/github", b"{}", {"X-Hub-Signature-256": "sha256=" + "0" * 64})
        assert status == 401, status
        status, _ = http("POST", ingest + "/v1/calls",
                         json.dumps({"url": f"http://127.0.0.1:{receiver_port}/ok"}).encode(),
                         {"Authorization": "Bearer tok_live_0123456789abcdef"})
        assert status == 202, status

        def dead_lettered():
            _, text = http("GET", worker + "/metrics")
            return 'hookrelay_worker_deliveries_total{outcome="dead"}' in text and \
                'hookrelay_worker_deliveries_total{outcome="dead"} 0' not in text
        wait_until("a dead-lettered delivery", dead_lettered, timeout=60)
        time.sleep(1.5)  # one gauge refresh

        check = subprocess.run([sys.executable, f"{src_dir}/tests/ops/metric_names.py", "--root", src_dir,
                                "--scrape", ingest + "/metrics", worker + "/metrics"])
        ok = check.returncode == 0
        return check.returncode
    finally:
        for name, p in reversed(procs):
            p.terminate()
        for name, p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        if not ok:
            for name, _ in procs:
                print(f"--- {name}.log (tail)")
                print(open(os.path.join(work, name + ".log")).read()[-3000:])
        subprocess.run(["psql", base_url, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
