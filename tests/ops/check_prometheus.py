#!/usr/bin/env python3
"""Prometheus artefacts: promtool accepts the scrape config and the rules, the rule unit tests in
alerts_test.yml pass, and every alert carries severity, summary, description and a runbook that
exists in docs/operations.md, and names only scrape jobs that prometheus.yml defines.

usage: check_prometheus.py config|rules"""
import re
import sys

import yaml

from opscheck import ROOT, Report

PROM = ROOT / "deploy/prometheus"


def github_anchors(markdown):
    """Anchors GitHub generates for headings: lower-case, punctuation dropped, spaces to '-'."""
    anchors = set()
    for line in markdown.splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def check_config(r):
    r.run(["promtool", "check", "config", str(PROM / "prometheus.yml")])


def check_rules(r):
    r.run(["promtool", "check", "rules", str(PROM / "alerts.yml")])
    r.run(["promtool", "test", "rules", str(ROOT / "tests/ops/alerts_test.yml")])
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    jobs = {c["job_name"] for c in yaml.safe_load((PROM / "prometheus.yml").read_text())["scrape_configs"]}
    anchors = github_anchors((ROOT / "docs/operations.md").read_text())
    alerts = [rule for g in rules["groups"] for rule in g["rules"] if "alert" in rule]
    r.check(len(alerts) >= 8, "expected at least 8 alerts, found %d" % len(alerts))
    names = [a["alert"] for a in alerts]
    r.check(len(names) == len(set(names)), "duplicate alert names: %s" % names)
    for a in alerts:
        name = a["alert"]
        ann = a.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            r.check(ann.get(key), "%s: annotation %s missing" % (name, key))
        r.check(a.get("labels", {}).get("severity") in ("critical", "warning", "info"),
                "%s: labels.severity must be critical, warning or info" % name)
        runbook = ann.get("runbook_url", "")
        r.check(runbook.startswith("docs/operations.md#") and runbook.split("#", 1)[1] in anchors,
                "%s: runbook_url %r names no heading in docs/operations.md" % (name, runbook))
        for job in re.findall(r'job\s*=\s*"([^"]+)"', a["expr"]):
            r.check(job in jobs, "%s: job %r is not a scrape job in prometheus.yml %s" % (name, job, sorted(jobs)))
    # The alerts the operations guide promises.
    for required in ("HookrelayDLQGrowing", "HookrelayConsumerLagGrowing", "HookrelayIngest5xxRatioHigh",
                     "HookrelayVerificationFailureSpike", "HookrelayCircuitOpenTooLong", "HookrelayNoWorkerUp",
                     "HookrelayWorkerPostgresDown", "HookrelayOffsetReset"):
        r.check(required in names, "alert %s missing" % required)


def main(argv):
    what = argv[1] if len(argv) > 1 else ""
    r = Report("check_prometheus " + what)
    if what == "config":
        check_config(r)
    elif what == "rules":
        check_rules(r)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return r.finish()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
