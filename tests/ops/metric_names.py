#!/usr/bin/env python3
"""Metric names used by the dashboard and the alert rules, checked against the catalog.

Static check (the ops_metric_names test):
    metric_names.py [--root DIR]
  every hookrelay_* name in the Grafana dashboard's target expressions and in the alert rules'
  expressions (histogram _bucket/_sum/_count suffixes stripped) must be listed in docs/metrics.md,
  and every label matcher on such a name must use a label the catalog gives it.

Live check (used by the stack test):
    metric_names.py --scrape URL [URL ...] [--all] [--ignore NAME ...]
  fetches each /metrics URL and checks that every name the dashboard and alerts use (--all: every
  catalog name) is exposed by at least one of them, and that no undocumented hookrelay_* name is.
  Note: a labelled family with no child yet is not exposed at all, so drive some traffic first.

Exit status 0 when everything matches, 1 with the problems listed on stderr.
Importable: catalog(), used_names(), scraped_names().
"""
import argparse
import json
import re
import sys
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
NAME_RE = re.compile(r"\bhookrelay_[a-z0-9_]*[a-z0-9]")
# name{matchers} directly: label names on the left of =, !=, =~, !~.
MATCHER_RE = re.compile(r"\b(hookrelay_[a-z0-9_]*[a-z0-9])\s*\{([^}]*)\}")
LABEL_RE = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Added by Prometheus or by histograms.
IMPLICIT_LABELS = {"job", "instance", "le"}


def base_name(name):
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def catalog(metrics_md):
    """{name: set(labels)} from the catalog tables: rows whose first cell is a `hookrelay_*` name."""
    names = {}
    for line in Path(metrics_md).read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3:
            continue
        m = re.fullmatch(r"`(hookrelay_[a-z0-9_]+)`", cells[0])
        if not m:
            continue
        labels = set(re.findall(r"`([a-z_]+)`", cells[2]))
        names[m.group(1)] = labels
    return names


def dashboard_exprs(dashboard_json):
    exprs = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    exprs.append(("dashboard panel '%s'" % p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))

    walk(json.loads(Path(dashboard_json).read_text(encoding="utf-8")).get("panels", []))
    return exprs


def alert_exprs(alerts_yml):
    doc = yaml.safe_load(Path(alerts_yml).read_text(encoding="utf-8"))
    exprs = []
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            what = "alert %s" % rule.get("alert") if "alert" in rule else "record %s" % rule.get("record")
            exprs.append((what, rule["expr"]))
    return exprs


def all_exprs(root):
    root = Path(root)
    return (dashboard_exprs(root / "deploy/grafana/dashboards/hookrelay.json")
            + alert_exprs(root / "deploy/prometheus/alerts.yml"))


def used_names(root=ROOT):
    """{base name: [where it is used]} over the dashboard and alert expressions."""
    used = {}
    for where, expr in all_exprs(root):
        for name in NAME_RE.findall(expr):
            used.setdefault(base_name(name), []).append(where)
    return used


def static_problems(root=ROOT):
    root = Path(root)
    known = catalog(root / "docs/metrics.md")
    problems = []
    if not known:
        return ["docs/metrics.md lists no hookrelay_* metric"]
    for name, where in sorted(used_names(root).items()):
        if name not in known:
            problems.append("%s (used in %s) is not in docs/metrics.md" % (name, ", ".join(sorted(set(where)))))
    for where, expr in all_exprs(root):
        for name, matchers in MATCHER_RE.findall(expr):
            labels = known.get(base_name(name))
            if labels is None:
                continue
            for label in LABEL_RE.findall(matchers):
                if label not in labels | IMPLICIT_LABELS:
                    problems.append("%s: label '%s' on %s is not in its catalog labels %s"
                                    % (where, label, name, sorted(labels)))
    return problems


def parse_exposition(text):
    """Metric family names in Prometheus text format (# TYPE lines and sample names)."""
    names = set()
    histograms = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                names.add(parts[2])
                if parts[3] in ("histogram", "summary"):
                    histograms.add(parts[2])
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", line)
            if m:
                sample = m.group(1)
                names.add(base_name(sample) if base_name(sample) in histograms else sample)
    return names


def scraped_names(urls, timeout=5.0):
    names = set()
    for url in urls:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            names |= parse_exposition(resp.read().decode("utf-8", "replace"))
    return names


def live_problems(urls, root=ROOT, check_all=False, ignore=()):
    root = Path(root)
    known = catalog(root / "docs/metrics.md")
    expected = set(known) if check_all else set(used_names(root))
    try:
        exposed = scraped_names(urls)
    except OSError as e:
        return ["cannot scrape: %s" % e]
    exposed_ours = {n for n in exposed if n.startswith("hookrelay_")}
    problems = ["missing from /metrics: %s" % n for n in sorted(expected - exposed_ours - set(ignore))]
    problems += ["exposed but not in docs/metrics.md: %s" % n for n in sorted(exposed_ours - set(known))]
    return problems


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=str(ROOT), help="repository root (default: this checkout)")
    ap.add_argument("--scrape", nargs="+", metavar="URL", help="check live /metrics endpoints instead")
    ap.add_argument("--all", action="store_true", help="with --scrape: expect every catalog name")
    ap.add_argument("--ignore", nargs="*", default=[], metavar="NAME",
                    help="with --scrape: names allowed to be absent (families with no sample yet)")
    args = ap.parse_args(argv)
    if args.scrape:
        problems = live_problems(args.scrape, args.root, args.all, args.ignore)
    else:
        problems = static_problems(args.root)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    if not args.scrape:
        print("%d metric names used by the dashboard and alerts, all in docs/metrics.md"
              % len(used_names(args.root)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
