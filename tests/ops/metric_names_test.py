#!/usr/bin/env python3
"""Self-test of metric_names.py: the catalog parser, the label check and the live --scrape mode
against a throwaway /metrics server on 127.0.0.1."""
import http.server
import shutil
import sys
import tempfile
import threading
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import metric_names  # noqa: E402

ROOT = metric_names.ROOT


def serve(body):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server naming)
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, "http://127.0.0.1:%d/metrics" % server.server_address[1]


def exposition(names):
    """A /metrics body exposing `names` the way prometheus-cpp does."""
    catalog = metric_names.catalog(ROOT / "docs/metrics.md")
    lines = []
    for n in names:
        kind = "histogram" if n.endswith("_seconds") else ("counter" if n.endswith("_total") else "gauge")
        lines += ["# HELP %s x" % n, "# TYPE %s %s" % (n, kind)]
        labels = ",".join('%s="a"' % l for l in sorted(catalog.get(n, ())))
        if kind == "histogram":
            sep = "," if labels else ""
            lines += ['%s_bucket{%s%sle="+Inf"} 1' % (n, labels, sep), "%s_sum{%s} 0.1" % (n, labels),
                      "%s_count{%s} 1" % (n, labels)]
        else:
            lines.append("%s{%s} 1" % (n, labels) if labels else "%s 1" % n)
    return "\n".join(lines) + "\n"


class Catalog(unittest.TestCase):
    def test_catalog_lists_both_services_with_labels(self):
        c = metric_names.catalog(ROOT / "docs/metrics.md")
        self.assertIn("hookrelay_ingest_requests_total", c)
        self.assertEqual(c["hookrelay_ingest_requests_total"], {"endpoint", "source", "status"})
        self.assertEqual(c["hookrelay_worker_ready"], set())
        self.assertEqual(c["hookrelay_worker_circuit_hosts"], {"state"})

    def test_histogram_suffixes_are_stripped(self):
        self.assertEqual(metric_names.base_name("hookrelay_ingest_produce_latency_seconds_bucket"),
                         "hookrelay_ingest_produce_latency_seconds")
        self.assertEqual(metric_names.base_name("hookrelay_worker_dlq_total"), "hookrelay_worker_dlq_total")

    def test_unknown_name_and_unknown_label_are_reported(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for rel in ("docs/metrics.md", "deploy/grafana/dashboards/hookrelay.json"):
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / rel, root / rel)
            (root / "deploy/prometheus").mkdir(parents=True)
            (root / "deploy/prometheus/alerts.yml").write_text(
                "groups:\n- name: g\n  rules:\n"
                "  - alert: A\n    expr: rate(hookrelay_worker_made_up_total[5m]) > 0\n"
                "  - alert: B\n    expr: hookrelay_worker_circuit_hosts{host=\"x\"} > 0\n")
            problems = metric_names.static_problems(root)
            self.assertTrue(any("hookrelay_worker_made_up_total" in p and "alert A" in p for p in problems), problems)
            self.assertTrue(any("label 'host'" in p for p in problems), problems)

    def test_shipped_dashboard_and_alerts_are_clean(self):
        self.assertEqual(metric_names.static_problems(ROOT), [])


class Scrape(unittest.TestCase):
    def test_all_used_names_exposed_across_two_endpoints_passes(self):
        used = sorted(metric_names.used_names(ROOT))
        ingest = [n for n in used if not n.startswith("hookrelay_worker_")]
        worker = [n for n in used if n.startswith("hookrelay_worker_")]
        s1, u1 = serve(exposition(ingest))
        s2, u2 = serve(exposition(worker))
        try:
            self.assertEqual(metric_names.live_problems([u1, u2]), [])
            self.assertEqual(metric_names.main(["--scrape", u1, u2]), 0)
        finally:
            s1.shutdown()
            s2.shutdown()

    def test_missing_and_undocumented_names_fail(self):
        used = sorted(metric_names.used_names(ROOT))
        body = exposition([n for n in used if n != "hookrelay_worker_dlq_total"] + ["hookrelay_worker_surprise_total"])
        server, url = serve(body)
        try:
            problems = metric_names.live_problems([url])
            self.assertIn("missing from /metrics: hookrelay_worker_dlq_total", problems)
            self.assertIn("exposed but not in docs/metrics.md: hookrelay_worker_surprise_total", problems)
            self.assertEqual(metric_names.main(["--scrape", url]), 1)
            self.assertEqual(
                metric_names.live_problems([url], ignore=["hookrelay_worker_dlq_total"]),
                ["exposed but not in docs/metrics.md: hookrelay_worker_surprise_total"])
        finally:
            server.shutdown()

    def test_unreachable_endpoint_fails(self):
        server, url = serve("")
        server.shutdown()
        server.server_close()
        self.assertTrue(metric_names.live_problems([url])[0].startswith("cannot scrape"))


if __name__ == "__main__":
    unittest.main()
