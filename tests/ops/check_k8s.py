#!/usr/bin/env python3
"""deploy/k8s: every document parses and names itself; the workloads (ingest Deployment, worker
StatefulSet) are production-shaped (probes on /readyz and /healthz, resources, non-root read-only
containers, a preStop sleep and a grace period longer than preStop + the configured drain);
Services, PDBs, the HPA and the KEDA ScaledObject point at what exists; the worker is a static
group member named by its stable pod name; Jobs run `hookrelay migrate` and `hookrelay topics
apply`; ingest is scraped on the port of ingest.metrics_listen, which no Service exposes; ingest's memory limit holds its request-body budget plus its produce queue (each accepted
body is held in both until Kafka acknowledges it) plus headroom; with --config-check BIN the
ConfigMap's configuration passes the services' own validation with the example Secret's values
(and a worker pod's POD_NAME); links to docs/operations.md#... in the manifests name a heading.

usage: check_k8s.py [--config-check PATH_TO_ops_config_check]"""
import argparse
import re
import sys
import tempfile
from pathlib import Path

import yaml

from check_prometheus import github_anchors
from opscheck import ROOT, Report

K8S = ROOT / "deploy/k8s"
PRESTOP_SECONDS = 5
# (workload, config section whose shutdown_grace_ms is the drain, default ms)
DRAINS = {"hookrelay-ingest": ("ingest", 10000), "hookrelay-worker": ("worker", 20000)}
# What a workload's SIGTERM may take after its drain: the worker's final offset commit (5 s), its
# consumer's close (10 s) and its retry producer's flush (5 s).
AFTER_DRAIN_SECONDS = {"hookrelay-ingest": 0, "hookrelay-worker": 20}
# The kind each workload must be: the worker's pod names are its group.instance.id, so they must
# survive restarts (a Deployment renames pods on every restart).
KINDS = {"hookrelay-ingest": "Deployment", "hookrelay-worker": "StatefulSet"}
WORKLOADS = ("Deployment", "StatefulSet")
# Ingest memory: the defaults of ingest.max_buffered_body_bytes (shared/config/config.h) and of
# the producer's queue.buffering.max.kbytes (shared/kafka/kafka_producer.cpp), and what the
# container's limit must keep besides them (process, connection buffers, allocator slack).
DEFAULT_BODY_BUDGET = 256 << 20
DEFAULT_PRODUCE_QUEUE_KBYTES = 262144
INGEST_HEADROOM = 128 << 20


def load_all():
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_spec(doc):
    kind = doc["kind"]
    if kind in ("Deployment", "StatefulSet", "Job"):
        return doc["spec"]["template"]["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def check_containers(r, where, spec):
    pod_sc = spec.get("securityContext", {})
    for c in spec.get("containers", []):
        name = "%s/%s" % (where, c["name"])
        sc = c.get("securityContext", {})
        r.check(sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, "%s: runAsNonRoot must be true" % name)
        r.check(sc.get("readOnlyRootFilesystem") is True, "%s: readOnlyRootFilesystem must be true" % name)
        r.check(sc.get("allowPrivilegeEscalation") is False, "%s: allowPrivilegeEscalation must be false" % name)
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                r.check(resource in res.get(kind, {}), "%s: resources.%s.%s missing" % (name, kind, resource))


def probe_path(container, probe):
    return container.get(probe, {}).get("httpGet", {}).get("path")


def check_deployment(r, doc, config):
    name = doc["metadata"]["name"]
    spec = doc["spec"]
    template_labels = spec["template"]["metadata"].get("labels", {})
    r.check(selects(spec["selector"].get("matchLabels", {}), template_labels),
            "%s: selector does not match its pod template labels" % name)
    pod = spec["template"]["spec"]
    check_containers(r, name, pod)
    for c in pod["containers"]:
        r.check(probe_path(c, "readinessProbe") == "/readyz", "%s: readinessProbe must GET /readyz" % name)
        r.check(probe_path(c, "livenessProbe") == "/healthz", "%s: livenessProbe must GET /healthz" % name)
        port_names = {p.get("name") for p in c.get("ports", [])}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            port = c.get(probe, {}).get("httpGet", {}).get("port")
            if isinstance(port, str):
                r.check(port in port_names, "%s: %s uses undeclared port %s" % (name, probe, port))
        prestop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        r.check(prestop == ["sleep", str(PRESTOP_SECONDS)], "%s: preStop must be sleep %d" % (name, PRESTOP_SECONDS))
    if name in DRAINS:
        section, default_ms = DRAINS[name]
        drain = config.get(section, {}).get("shutdown_grace_ms", default_ms) / 1000
        grace = pod.get("terminationGracePeriodSeconds", 30)
        after = AFTER_DRAIN_SECONDS[name]
        r.check(grace > PRESTOP_SECONDS + drain + after,
                "%s: terminationGracePeriodSeconds %s must exceed preStop %ds + drain %ss + %ds after it"
                % (name, grace, PRESTOP_SECONDS, drain, after))
    return template_labels


def quantity_bytes(q):
    """A Kubernetes memory quantity (512Mi, 1Gi, 500M, 1e9, 268435456) in bytes."""
    m = re.fullmatch(r"([0-9.eE+]+)(Ki|Mi|Gi|Ti|k|K|M|G|T)?", str(q).strip())
    if not m:
        raise ValueError("memory quantity %r" % q)
    factor = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
              "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[m.group(2)]
    return int(float(m.group(1)) * factor)


def check_ingest_memory(r, by_kind, config):
    """Bodies are held twice until acknowledged: request buffers (ingest.max_buffered_body_bytes)
    and librdkafka's copies (queue.buffering.max.kbytes); both at most, plus headroom, must fit the
    ingest container's memory limit, or a burst gets the pod OOM-killed."""
    ingest = by_kind.get("Deployment", {}).get("hookrelay-ingest")
    if ingest is None:
        return
    budget = int(config.get("ingest", {}).get("max_buffered_body_bytes", DEFAULT_BODY_BUDGET))
    kafka = config.get("kafka", {}) or {}
    queue_kb = DEFAULT_PRODUCE_QUEUE_KBYTES
    for section in ("properties", "producer_properties"):  # producer_properties win
        value = (kafka.get(section) or {}).get("queue.buffering.max.kbytes")
        if value is not None:
            queue_kb = int(str(value))
    queue = queue_kb * 1024
    for c in ingest["spec"]["template"]["spec"]["containers"]:
        limit = c.get("resources", {}).get("limits", {}).get("memory")
        if not r.check(limit is not None, "hookrelay-ingest/%s: no memory limit" % c["name"]):
            continue
        limit = quantity_bytes(limit)
        r.check(budget + queue + INGEST_HEADROOM <= limit,
                "hookrelay-ingest/%s: memory limit %d MiB < ingest.max_buffered_body_bytes %d MiB + "
                "produce queue (queue.buffering.max.kbytes) %d MiB + headroom %d MiB"
                % (c["name"], limit >> 20, budget >> 20, queue >> 20, INGEST_HEADROOM >> 20))


def check_ingest_metrics_port(r, by_kind, config):
    """ingest serves /metrics on ingest.metrics_listen when it is set (the public listener answers
    404): the pod's prometheus.io/port must be that port, a declared containerPort, and no Service
    in front of ingest may expose it."""
    ingest = by_kind.get("Deployment", {}).get("hookrelay-ingest")
    if ingest is None:
        return
    section = config.get("ingest", {}) or {}
    metrics = str(section.get("metrics_listen") or section.get("listen", "")).rsplit(":", 1)[-1]
    template = ingest["spec"]["template"]
    ann = template.get("metadata", {}).get("annotations", {})
    r.check(str(ann.get("prometheus.io/port")) == metrics,
            "hookrelay-ingest: prometheus.io/port %s, but ingest serves /metrics on port %s (ConfigMap "
            "ingest.metrics_listen, else ingest.listen)" % (ann.get("prometheus.io/port"), metrics))
    if not section.get("metrics_listen"):
        return
    labels = template.get("metadata", {}).get("labels", {})
    for name, svc in by_kind.get("Service", {}).items():
        spec = svc.get("spec", {})
        if not selects(spec.get("selector", {}), labels):
            continue
        for p in spec.get("ports", []):
            r.check(str(p.get("targetPort", p.get("port"))) not in (metrics, "metrics"),
                    "Service %s exposes ingest's metrics port %s: ingest.metrics_listen keeps /metrics "
                    "off what clients reach" % (name, metrics))


def check_worker_membership(r, by_kind, config):
    """Static membership: group.instance.id from the pod name, which only a StatefulSet keeps."""
    sts = by_kind.get("StatefulSet", {}).get("hookrelay-worker")
    if sts is None:
        return
    worker = config.get("worker", {})
    r.check(worker.get("static_membership") is True or "group_instance_id" in worker,
            "ConfigMap: worker.static_membership (or group_instance_id) must be set for the StatefulSet")
    r.check(sts["spec"].get("serviceName") in by_kind.get("Service", {}),
            "StatefulSet hookrelay-worker: serviceName must name an existing (headless) Service")
    svc = by_kind.get("Service", {}).get(sts["spec"].get("serviceName"), {})
    r.check(svc.get("spec", {}).get("clusterIP") == "None", "the worker StatefulSet's Service must be headless")
    for c in sts["spec"]["template"]["spec"]["containers"]:
        pod_name = [e for e in c.get("env", []) if e.get("name") == "POD_NAME"]
        r.check(len(pod_name) == 1 and pod_name[0].get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                == "metadata.name", "StatefulSet hookrelay-worker/%s: POD_NAME must come from metadata.name" % c["name"])
    r.check("hookrelay-worker" not in by_kind.get("Deployment", {}), "the worker must not also be a Deployment")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config-check", help="ops_config_check binary: validate the ConfigMap's config")
    args = ap.parse_args()
    r = Report("check_k8s")
    docs = load_all()
    r.check(len(docs) >= 10, "expected at least 10 manifests, found %d" % len(docs))
    for file, doc in docs:
        for key in ("apiVersion", "kind"):
            r.check(doc.get(key), "%s: a document has no %s" % (file, key))
        r.check(doc.get("metadata", {}).get("name"), "%s: a %s has no metadata.name" % (file, doc.get("kind")))
        r.check("namespace" not in doc.get("metadata", {}), "%s: manifests are namespace-less" % file)
    by_kind = {}
    for _, doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc

    configmap = by_kind.get("ConfigMap", {}).get("hookrelay-config")
    r.check(configmap is not None, "ConfigMap hookrelay-config missing")
    config_text = (configmap or {}).get("data", {}).get("hookrelay.yaml", "")
    config = yaml.safe_load(config_text) or {}

    deployments = {name: d for kind in WORKLOADS for name, d in by_kind.get(kind, {}).items()}
    for name, kind in KINDS.items():
        r.check(name in by_kind.get(kind, {}), "%s %s missing" % (kind, name))
    pod_labels = {name: check_deployment(r, d, config) for name, d in deployments.items()}
    check_worker_membership(r, by_kind, config)
    check_ingest_memory(r, by_kind, config)
    check_ingest_metrics_port(r, by_kind, config)
    for kind in ("Job", "CronJob"):
        for name, doc in by_kind.get(kind, {}).items():
            check_containers(r, name, pod_spec(doc))
    for job, command in (("hookrelay-migrate", ["hookrelay", "migrate"]),
                         ("hookrelay-topics", ["hookrelay", "topics", "apply"])):
        r.check(job in by_kind.get("Job", {}), "Job %s missing" % job)
        if job in by_kind.get("Job", {}):
            cmd = pod_spec(by_kind["Job"][job])["containers"][0].get("command")
            r.check(cmd == command, "Job %s must run `%s`" % (job, " ".join(command)))

    # Every pod that mounts or reads config and secrets names objects that exist (the Secret only
    # as an example file).
    secret_names = {d["metadata"]["name"] for _, d in docs if d["kind"] == "Secret"}
    for kind in WORKLOADS + ("Job", "CronJob"):
        for name, doc in by_kind.get(kind, {}).items():
            pod = pod_spec(doc)
            for vol in pod.get("volumes", []):
                if "configMap" in vol:
                    r.check(vol["configMap"]["name"] in by_kind.get("ConfigMap", {}),
                            "%s mounts unknown ConfigMap %s" % (name, vol["configMap"]["name"]))
            for c in pod["containers"]:
                refs = [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
                refs += [e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
                         if "secretKeyRef" in e.get("valueFrom", {})]
                for ref in refs:
                    r.check(ref in secret_names, "%s refers to Secret %s, which no example defines" % (name, ref))

    for name, svc in by_kind.get("Service", {}).items():
        selector = svc["spec"].get("selector", {})
        matches = [d for d, labels in pod_labels.items() if selects(selector, labels)]
        r.check(len(matches) == 1, "Service %s selects %d workloads (want 1)" % (name, len(matches)))
        for m in matches:
            port_names = {p.get("name") for c in deployments[m]["spec"]["template"]["spec"]["containers"]
                          for p in c.get("ports", [])}
            for port in svc["spec"]["ports"]:
                target = port.get("targetPort")
                if isinstance(target, str):
                    r.check(target in port_names, "Service %s targets unknown port %s on %s" % (name, target, m))

    pdbs = by_kind.get("PodDisruptionBudget", {})
    for name in DRAINS:
        covering = [p for p, doc in pdbs.items()
                    if selects(doc["spec"]["selector"].get("matchLabels", {}), pod_labels.get(name, {}))]
        r.check(len(covering) == 1, "%s is covered by %d PodDisruptionBudgets (want 1)" % (name, len(covering)))
    for name, doc in pdbs.items():
        r.check(any(selects(doc["spec"]["selector"].get("matchLabels", {}), l) for l in pod_labels.values()),
                "PDB %s selects no workload's pods" % name)

    hpas = by_kind.get("HorizontalPodAutoscaler", {})
    ingest_hpa = [h for h in hpas.values() if h["spec"]["scaleTargetRef"]["name"] == "hookrelay-ingest"]
    r.check(len(ingest_hpa) == 1, "ingest needs one HPA")
    for h in ingest_hpa:
        cpu = [m["resource"]["target"].get("averageUtilization") for m in h["spec"].get("metrics", [])
               if m.get("type") == "Resource" and m["resource"]["name"] == "cpu"]
        r.check(cpu == [70], "ingest HPA must target 70%% CPU, has %s" % cpu)

    scaled = list(by_kind.get("ScaledObject", {}).values())
    r.check(len(scaled) == 1, "expected one KEDA ScaledObject")
    group = config.get("worker", {}).get("group_id", "hookrelay-workers")
    for so in scaled:
        target = so["spec"]["scaleTargetRef"]
        r.check(target["name"] == "hookrelay-worker", "ScaledObject must target hookrelay-worker")
        r.check(target.get("kind", "Deployment") == KINDS["hookrelay-worker"],
                "ScaledObject scaleTargetRef.kind must be %s (KEDA assumes Deployment)" % KINDS["hookrelay-worker"])
        r.check(not any(h["spec"]["scaleTargetRef"]["name"] == "hookrelay-worker" for h in hpas.values()),
                "the worker must not also have an HPA (KEDA creates its own)")
        triggers = so["spec"].get("triggers", [])
        r.check(triggers and all(t["type"] == "kafka" for t in triggers), "ScaledObject triggers must be kafka")
        topics = set()
        for t in triggers:
            md = t.get("metadata", {})
            r.check(md.get("consumerGroup") == group, "kafka trigger consumerGroup %r != worker.group_id %r" % (md.get("consumerGroup"), group))
            r.check(str(md.get("lagThreshold", "")).isdigit(), "kafka trigger needs a numeric lagThreshold")
            r.check(md.get("bootstrapServers"), "kafka trigger needs bootstrapServers")
            topics.add(md.get("topic"))
        r.check(topics == {"hookrelay.webhooks", "hookrelay.calls"},
                "ScaledObject should scale on the main topics only, has %s" % sorted(topics))

    # Links from the manifests' comments to the operations guide name a heading there.
    anchors = github_anchors((ROOT / "docs/operations.md").read_text())
    for path in sorted(K8S.glob("*.yaml")):
        for anchor in re.findall(r"operations\.md#([\w-]+)", path.read_text()):
            r.check(anchor in anchors, "%s links docs/operations.md#%s, which is no heading there" % (path.name, anchor))

    # The kustomization lists every manifest except the example Secret.
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization.get("resources", []))
    for path in K8S.glob("*.yaml"):
        if path.name in ("kustomization.yaml", "secret.example.yaml"):
            continue
        r.check(path.name in listed, "kustomization.yaml does not list %s" % path.name)
    r.check("secret.example.yaml" not in listed, "the example Secret must not be applied by kustomize")

    if args.config_check:
        secret = by_kind.get("Secret", {}).get("hookrelay-secrets", {})
        env = {k: str(v) for k, v in secret.get("stringData", {}).items()}
        env["POD_NAME"] = "hookrelay-worker-0"  # what the worker pods set (static membership)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "hookrelay.yaml"
            path.write_text(config_text)
            r.run([args.config_check, str(path)], env=env, what="ops_config_check (ConfigMap hookrelay-config)")
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
