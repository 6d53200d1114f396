#!/usr/bin/env python3
"""docker-compose.yml: docker-compose accepts it, and it is the stack the operations guide
describes: the services, their healthchecks and start order, three workers, drain-sized stop
grace periods, mounted files that exist, and (with --config-check BIN) a hookrelay configuration
that the services' own validation accepts with the environment compose gives them.

usage: check_compose.py [--config-check PATH_TO_ops_config_check]"""
import argparse
import re
import sys

import yaml

from opscheck import ROOT, Report

REQUIRED = ("kafka", "kafka-topics", "postgres", "migrate", "ingest", "worker", "prometheus",
            "grafana", "demo-receiver")
LONG_RUNNING_WITH_HEALTHCHECK = ("kafka", "postgres", "ingest", "worker", "prometheus", "grafana")


def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m)", str(text))
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2)
    return {"ms": n / 1000, "s": n, "m": n * 60}[unit]


def interpolate(value):
    """Compose's ${VAR:-default} with an empty environment: the defaults."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", str(value))


def depends(service):
    d = service.get("depends_on", {})
    return d if isinstance(d, dict) else {name: {"condition": "service_started"} for name in d}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config-check", help="ops_config_check binary: validate the mounted config")
    args = ap.parse_args()
    r = Report("check_compose")
    compose_file = ROOT / "docker-compose.yml"
    # The tool itself: syntax, schema, interpolation. Not starting anything (no engine needed).
    r.run(["docker-compose", "-f", str(compose_file), "config", "-q"])
    r.run(["docker-compose", "--compatibility", "-f", str(compose_file), "config", "-q"])

    doc = yaml.safe_load(compose_file.read_text())
    services = doc.get("services", {})
    for name in REQUIRED:
        r.check(name in services, "service %s missing" % name)
    if r.failures:
        return r.finish()

    r.check(services["kafka"]["image"].startswith("apache/kafka:"), "kafka must use the official apache/kafka image")
    kafka_env = services["kafka"].get("environment", {})
    r.check("controller" in str(kafka_env.get("KAFKA_PROCESS_ROLES", "")), "kafka must run in KRaft mode (KAFKA_PROCESS_ROLES)")
    r.check(services["postgres"]["image"].startswith("postgres:15"), "postgres must be 15")
    # The topics come from the hookrelay configuration's topics: section, applied by the CLI.
    r.check(services["kafka-topics"].get("command") == ["hookrelay", "topics", "apply"],
            "kafka-topics must run `hookrelay topics apply`")
    r.check(services["kafka-topics"].get("restart") == "no", "kafka-topics is a one-shot service (restart: \"no\")")
    r.check(services["kafka-topics"].get("image") == services["ingest"].get("image"),
            "kafka-topics must use the hookrelay image")
    r.check("kafka" in depends(services["kafka-topics"]), "kafka-topics must wait for kafka")
    compose_config = yaml.safe_load((ROOT / "deploy/compose/hookrelay.yaml").read_text()) or {}
    topics_cfg = compose_config.get("topics", {})
    r.check(topics_cfg.get("replication_factor") == 1 and topics_cfg.get("min_insync_replicas") == 1,
            "topics: replication_factor and min_insync_replicas 1 expected on one broker")
    r.check(len(compose_config.get("retry", {}).get("schedule_seconds", [])) == 6,
            "six retry tiers expected (hookrelay.retry.0-5)")
    r.check("min_insync_replicas: 2" in (ROOT / "deploy/compose/hookrelay.yaml").read_text(),
            "the production setting min_insync_replicas: 2 must be noted next to the topics: section")

    for name in LONG_RUNNING_WITH_HEALTHCHECK:
        r.check("healthcheck" in services[name], "%s has no healthcheck" % name)
    for name, svc in services.items():
        for dep, cond in depends(svc).items():
            r.check(dep in services, "%s depends on unknown service %s" % (name, dep))
            condition = cond.get("condition")
            if dep in ("kafka-topics", "migrate"):
                r.check(condition == "service_completed_successfully",
                        "%s must wait for %s to complete successfully" % (name, dep))
            elif "healthcheck" in services.get(dep, {}):
                r.check(condition == "service_healthy", "%s must wait for %s to be healthy" % (name, dep))
    r.check("postgres" in depends(services["migrate"]), "migrate must wait for postgres")
    r.check("migrate" in depends(services["worker"]), "worker must wait for migrate")
    r.check("kafka-topics" in depends(services["ingest"]), "ingest must wait for the topics")
    r.check("kafka-topics" in depends(services["worker"]), "worker must wait for the topics")

    r.check(services["worker"].get("deploy", {}).get("replicas") == 3, "worker: deploy.replicas must be 3")
    r.check("container_name" not in services["worker"], "a replicated service cannot have container_name")
    for name in ("ingest", "worker", "migrate", "kafka-topics"):
        r.check(services[name].get("command", [None])[0] in ("hookrelay-ingest", "hookrelay-worker", "hookrelay"),
                "%s: command must name a hookrelay binary" % name)

    # Mounted files and folders exist in the repository.
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if src.startswith("./"):
                r.check((ROOT / src).exists(), "%s mounts %s, which does not exist" % (name, src))
    build = services["ingest"].get("build", {})
    r.check((ROOT / build.get("dockerfile", "")).is_file(), "build.dockerfile does not exist")

    # Drain fits the stop grace period.
    config_path = ROOT / "deploy/compose/hookrelay.yaml"
    config = yaml.safe_load(config_path.read_text()) or {}
    drains = {"ingest": config.get("ingest", {}).get("shutdown_grace_ms", 10000) / 1000,
              "worker": config.get("worker", {}).get("shutdown_grace_ms", 20000) / 1000}
    for name, drain in drains.items():
        grace = seconds(services[name].get("stop_grace_period", "10s"))
        r.check(grace is not None and grace > drain,
                "%s: stop_grace_period %s must exceed its drain of %ss" % (name, services[name].get("stop_grace_period"), drain))

    # Containers must listen beyond loopback for healthchecks and scraping to reach them.
    r.check(str(config.get("ingest", {}).get("listen", "")).startswith("0.0.0.0:"), "ingest.listen must be 0.0.0.0:PORT in compose")
    r.check(str(config.get("worker", {}).get("listen", "")).startswith("0.0.0.0:"), "worker.listen must be 0.0.0.0:PORT in compose")

    if args.config_check:
        env = {k: interpolate(v) for k, v in services["ingest"]["environment"].items()}
        r.run([args.config_check, str(config_path)], env=env, what="ops_config_check deploy/compose/hookrelay.yaml")
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
