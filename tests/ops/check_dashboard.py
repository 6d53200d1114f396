#!/usr/bin/env python3
"""Grafana: the dashboard JSON is valid, every panel queries something through the datasource
variable, panels do not overlap, the panels the operations guide relies on exist, and the
provisioning files point at the dashboard folder and a Prometheus datasource."""
import json
import sys

import yaml

from opscheck import ROOT, Report

GRAFANA = ROOT / "deploy/grafana"
# Panel subjects the dashboard must show: a metric each.
REQUIRED_METRICS = [
    "hookrelay_ingest_requests_total", "hookrelay_ingest_errors_total",
    "hookrelay_ingest_verification_failures_total", "hookrelay_ingest_produce_latency_seconds_bucket",
    "hookrelay_worker_deliveries_total", "hookrelay_worker_attempts_total", "hookrelay_worker_retries_total",
    "hookrelay_worker_dlq_total", "hookrelay_worker_consumer_lag",
    "hookrelay_worker_http_request_duration_seconds_bucket", "hookrelay_worker_circuit_hosts",
    "hookrelay_worker_postgres_batch_duration_seconds_bucket", "hookrelay_worker_in_flight_deliveries",
]


def overlaps(a, b):
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and
            a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def main():
    r = Report("check_dashboard")
    try:
        dash = json.loads((GRAFANA / "dashboards/hookrelay.json").read_text())
    except ValueError as e:
        r.check(False, "hookrelay.json is not valid JSON: %s" % e)
        return r.finish()
    r.check(dash.get("uid") and dash.get("title"), "dashboard needs uid and title")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    r.check(variables.get("datasource", {}).get("type") == "datasource" and
            variables["datasource"].get("query") == "prometheus",
            "dashboard needs a 'datasource' variable of type prometheus")

    panels = dash.get("panels", [])
    ids = [p.get("id") for p in panels]
    r.check(len(ids) == len(set(ids)) and None not in ids, "panel ids must be present and unique")
    exprs = []
    for p in panels:
        gp = p.get("gridPos", {})
        r.check(all(k in gp for k in ("x", "y", "w", "h")) and gp.get("x", 0) + gp.get("w", 0) <= 24,
                "panel '%s': bad gridPos %s" % (p.get("title"), gp))
        if p.get("type") == "row":
            continue
        r.check(p.get("title"), "a panel has no title")
        r.check(p.get("datasource", {}).get("uid") == "${datasource}",
                "panel '%s' must use the ${datasource} variable" % p.get("title"))
        targets = p.get("targets", [])
        r.check(targets, "panel '%s' has no targets" % p.get("title"))
        for t in targets:
            r.check(str(t.get("expr", "")).strip(), "panel '%s': a target has no expr" % p.get("title"))
            exprs.append(t.get("expr", ""))
    for i, a in enumerate(panels):
        for b in panels[i + 1:]:
            if "gridPos" in a and "gridPos" in b:
                r.check(not overlaps(a["gridPos"], b["gridPos"]),
                        "panels '%s' and '%s' overlap" % (a.get("title"), b.get("title")))
    text = "\n".join(exprs)
    for metric in REQUIRED_METRICS:
        r.check(metric in text, "no panel queries %s" % metric)
    r.check("histogram_quantile(0.99" in text and "histogram_quantile(0.5" in text,
            "latency panels need p50 and p99 via histogram_quantile")

    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())
    r.check(any(d.get("type") == "prometheus" for d in ds.get("datasources", [])),
            "datasource provisioning must define a prometheus datasource")
    prov = yaml.safe_load((GRAFANA / "provisioning/dashboards/hookrelay.yaml").read_text())
    paths = [p.get("options", {}).get("path") for p in prov.get("providers", [])]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"].get("volumes", [])
    r.check(any(v.startswith("./deploy/grafana/dashboards:%s" % path) for v in mounts for path in paths if path),
            "the dashboard provider path %s is not where docker-compose mounts deploy/grafana/dashboards" % paths)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
