#!/usr/bin/env python3
"""Prometheus artefacts: promtool accepts the scrape configs (compose prometheus.yml, Kubernetes
kubernetes-scrape.yml) and the rules, the rule unit tests in alerts_test.yml pass, and every alert
carries severity, summary, description and a runbook that exists in docs/operations.md, and names
only scrape jobs that both scrape configs produce: prometheus.yml's job names, and the jobs
kubernetes-scrape.yml's relabeling gives the pods of deploy/k8s (simulated on each pod template's
labels and prometheus.io/* annotations). Each compose service running hookrelay-ingest, -worker
or -admin has its scrape job on its listen port (ingest: metrics_listen when it is set).

usage: check_prometheus.py config|rules"""
import re
import subprocess
import sys
import tempfile
from pathlib import Path

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


K8S_SCRAPE = PROM / "kubernetes-scrape.yml"
# The services whose /metrics the scrape configs must cover, by binary.
SERVICES = ("ingest", "worker", "admin")


def check_config(r):
    r.run(["promtool", "check", "config", str(PROM / "prometheus.yml")])
    try:
        proc = subprocess.run(["promtool", "check", "config", str(K8S_SCRAPE)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        r.check(False, "promtool: not installed (scripts/dev deps installs it)")
        return
    output = proc.stdout + proc.stderr
    if proc.returncode == 0 or "field kubernetes_sd_configs not found" not in output:
        r.check(proc.returncode == 0, "promtool check config kubernetes-scrape.yml failed (exit %d):\n%s"
                % (proc.returncode, output))
        return
    # Debian's promtool is built without Kubernetes discovery: check everything else (global,
    # rule_files, relabel_configs) with a static target standing in for the pod discovery.
    print("note: this promtool lacks kubernetes_sd_configs; kubernetes-scrape.yml checked with "
          "static_configs in its place")
    cfg = yaml.safe_load(K8S_SCRAPE.read_text())
    cfg["rule_files"] = [str(PROM / f) for f in cfg.get("rule_files", [])]
    for sc in cfg["scrape_configs"]:
        if sc.pop("kubernetes_sd_configs", None) is not None:
            sc["static_configs"] = [{"targets": ["10.0.0.1:8080"]}]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kubernetes-scrape.yml"
        path.write_text(yaml.safe_dump(cfg))
        r.run(["promtool", "check", "config", str(path)],
              what="promtool check config kubernetes-scrape.yml (static stand-in)")


def sanitize(name):
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def expand(template, match):
    """Go regexp Expand, as Prometheus uses for replacement: $1, ${1}, $name, ${name}."""
    def one(m):
        name = m.group(1) or m.group(2)
        try:
            value = match.group(int(name) if name.isdigit() else name)
        except (IndexError, re.error):
            value = None
        return value or ""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, template)


def relabel(labels, rules):
    """Prometheus relabeling of one target's labels; None when a rule drops it."""
    labels = dict(labels)
    for rule in rules:
        action = rule.get("action", "replace")
        value = rule.get("separator", ";").join(labels.get(l, "") for l in rule.get("source_labels", []))
        regex = re.compile(rule.get("regex", "(.*)"))
        m = regex.fullmatch(value)
        if action == "keep":
            if not m:
                return None
        elif action == "drop":
            if m:
                return None
        elif action == "replace":
            if m:
                result = expand(str(rule.get("replacement", "$1")), m)
                if result:
                    labels[rule["target_label"]] = result
                else:
                    labels.pop(rule["target_label"], None)
        elif action == "labelmap":
            for name, v in list(labels.items()):
                lm = regex.fullmatch(name)
                if lm:
                    labels[expand(str(rule.get("replacement", "$1")), lm)] = v
        else:
            raise ValueError("relabel action %r is not simulated here" % action)
    return labels


def pod_templates():
    """(kind/name, pod template) of every workload, Job and CronJob in deploy/k8s."""
    out = []
    for path in sorted((ROOT / "deploy/k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            kind, spec = doc.get("kind"), doc.get("spec", {})
            if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
                out.append(("%s/%s" % (kind, doc["metadata"]["name"]), spec["template"]))
            elif kind == "CronJob":
                out.append(("%s/%s" % (kind, doc["metadata"]["name"]), spec["jobTemplate"]["spec"]["template"]))
    return out


def discovered(template, pod_ip, scrape_config):
    """The targets Kubernetes pod discovery gives one running pod of the template: one per declared
    container port (one per container without ports), as Prometheus's role: pod does."""
    meta = template.get("metadata", {})
    base = {
        "job": scrape_config["job_name"],
        "__metrics_path__": scrape_config.get("metrics_path", "/metrics"),
        "__scheme__": scrape_config.get("scheme", "http"),
        "__meta_kubernetes_namespace": "hookrelay",
        "__meta_kubernetes_pod_name": "pod-0",
        "__meta_kubernetes_pod_ip": pod_ip,
        "__meta_kubernetes_pod_phase": "Running",
    }
    for k, v in meta.get("labels", {}).items():
        base["__meta_kubernetes_pod_label_" + sanitize(k)] = str(v)
        base["__meta_kubernetes_pod_labelpresent_" + sanitize(k)] = "true"
    for k, v in meta.get("annotations", {}).items():
        base["__meta_kubernetes_pod_annotation_" + sanitize(k)] = str(v)
        base["__meta_kubernetes_pod_annotationpresent_" + sanitize(k)] = "true"
    host = "[%s]" % pod_ip if ":" in pod_ip else pod_ip
    targets = []
    for c in template["spec"].get("containers", []):
        ports = c.get("ports") or [None]
        for p in ports:
            t = dict(base, __meta_kubernetes_pod_container_name=c["name"])
            if p:
                t["__address__"] = "%s:%d" % (host, p["containerPort"])
                t["__meta_kubernetes_pod_container_port_number"] = str(p["containerPort"])
                t["__meta_kubernetes_pod_container_port_name"] = p.get("name", "")
            else:
                t["__address__"] = host
            targets.append(t)
    return targets


def kubernetes_jobs(r):
    """Job names kubernetes-scrape.yml gives the pods of deploy/k8s; checks each scraped pod's
    target against its annotations."""
    cfg = yaml.safe_load(K8S_SCRAPE.read_text())
    pod_configs = [sc for sc in cfg.get("scrape_configs", [])
                   if any(sd.get("role") == "pod" for sd in sc.get("kubernetes_sd_configs", []))]
    r.check(pod_configs, "kubernetes-scrape.yml has no kubernetes_sd_configs role: pod job")
    jobs = set()
    for where, template in pod_templates():
        meta = template.get("metadata", {})
        ann = meta.get("annotations", {})
        component = meta.get("labels", {}).get("app.kubernetes.io/component")
        wanted = ann.get("prometheus.io/scrape") == "true"
        declared = {str(p["containerPort"]) for c in template["spec"].get("containers", [])
                    for p in c.get("ports", [])}
        if wanted:
            r.check(component in SERVICES, "%s: scraped, but its component label %r is not one of %s"
                    % (where, component, SERVICES))
            r.check(str(ann.get("prometheus.io/port")) in declared,
                    "%s: prometheus.io/port %s is no declared containerPort %s"
                    % (where, ann.get("prometheus.io/port"), sorted(declared)))
        for pod_ip in ("10.1.2.3", "fd00::7"):
            targets = []
            for sc in pod_configs:
                for t in discovered(template, pod_ip, sc):
                    out = relabel(t, sc.get("relabel_configs", []))
                    if out is not None:
                        targets.append(out)
            if not wanted:
                r.check(not targets, "%s: not annotated for scraping, yet kubernetes-scrape.yml scrapes it" % where)
                continue
            r.check(len(targets) == 1, "%s (pod IP %s): %d targets, want 1" % (where, pod_ip, len(targets)))
            host = "[%s]" % pod_ip if ":" in pod_ip else pod_ip
            for t in targets:
                r.check(t.get("job") == "hookrelay-%s" % component,
                        "%s: job %r, want hookrelay-%s (its component label)" % (where, t.get("job"), component))
                r.check(t.get("__address__") == "%s:%s" % (host, ann.get("prometheus.io/port")),
                        "%s: address %r, want the pod IP and its prometheus.io/port" % (where, t.get("__address__")))
                r.check(t.get("__metrics_path__") == ann.get("prometheus.io/path", "/metrics"),
                        "%s: metrics path %r, want its prometheus.io/path" % (where, t.get("__metrics_path__")))
                jobs.add(t.get("job"))
    return jobs


def compose_jobs(r):
    """prometheus.yml's job names; checks that each compose service running a hookrelay service
    binary has its job, scraping the port the compose configuration makes it listen on."""
    scrape = yaml.safe_load((PROM / "prometheus.yml").read_text())["scrape_configs"]
    by_name = {c["job_name"]: c for c in scrape}
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    config = yaml.safe_load((ROOT / "deploy/compose/hookrelay.yaml").read_text())
    for name, svc in compose.get("services", {}).items():
        command = svc.get("command") or []
        binary = command[0] if isinstance(command, list) and command else ""
        service = binary[len("hookrelay-"):] if binary.startswith("hookrelay-") else ""
        if service not in SERVICES:
            continue
        job = by_name.get("hookrelay-" + service)
        if not r.check(job is not None, "compose service %s runs %s, but prometheus.yml has no job hookrelay-%s"
                       % (name, binary, service)):
            continue
        section = config.get(service, {})
        # ingest serves /metrics on metrics_listen when it is set, on listen otherwise.
        port = str(section.get("metrics_listen") or section.get("listen", "")).rsplit(":", 1)[-1]
        targets = [t for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
        targets += ["%s:%s" % (n, sd.get("port")) for sd in job.get("dns_sd_configs", []) for n in sd.get("names", [])]
        r.check(targets and all(t == "%s:%s" % (name, port) for t in targets),
                "prometheus.yml job hookrelay-%s targets %s, want %s:%s (compose service, its metrics port)"
                % (service, targets, name, port))
    return set(by_name)


def check_rules(r):
    r.run(["promtool", "check", "rules", str(PROM / "alerts.yml")])
    r.run(["promtool", "test", "rules", str(ROOT / "tests/ops/alerts_test.yml")])
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    jobs = compose_jobs(r)
    k8s_jobs = kubernetes_jobs(r)
    ours = {j for j in jobs if j.startswith("hookrelay-")}
    r.check(ours == k8s_jobs, "hookrelay jobs differ: prometheus.yml %s, kubernetes-scrape.yml %s"
            % (sorted(ours), sorted(k8s_jobs)))
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
            r.check(job in k8s_jobs, "%s: job %r is no job kubernetes-scrape.yml gives a deploy/k8s pod %s"
                    % (name, job, sorted(k8s_jobs)))
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
