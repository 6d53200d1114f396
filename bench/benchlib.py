"""Shared helpers for the hookrelay benchmarks (bench/ingest, bench/worker).

Processes started here are tracked by pid and stopped by pid at exit; nothing is killed by name.
Everything listens on 127.0.0.1 only.
"""

import atexit
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("HOOKRELAY_BUILD_DIR", ROOT / "build"))
PEERS_SRC = Path(os.environ.get("HOOKRELAY_PEERS_DIR", ROOT.parent / "shared" / "peers"))
RESULTS = ROOT / "bench" / "results"

_started = []


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def die(msg):
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def binary(rel):
    """A built executable under the build dir; the benchmarks never build anything."""
    p = BUILD / rel
    if not os.access(p, os.X_OK):
        die(f"{p} is missing: run `scripts/dev build` first (the benchmarks build nothing)")
    return p


def ensure_deps():
    """wrk, nginx-light, nodejs, npm (and the build packages) through scripts/dev deps."""
    if all(shutil.which(t) for t in ("wrk", "nginx", "node", "npm", "psql")):
        return
    log("installing benchmark packages (scripts/dev deps)")
    subprocess.run([str(ROOT / "scripts" / "dev"), "deps"], check=True)


def raise_fd_limit():
    """Children inherit it: 10,000 connections need more than the usual 1024 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workdir(prefix):
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)  # nginx workers run as nobody and read files from here
    return d


def tail_file(path, n=20):
    """The last n lines of a log file ("" when it cannot be read)."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


class Proc:
    """A child process with its output in a log file, stopped by its own pid."""

    def __init__(self, name, argv, logdir, env=None, cwd=None):
        self.name = name
        self.log_path = Path(logdir) / f"{name}.log"
        self._log = open(self.log_path, "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.popen = subprocess.Popen([str(a) for a in argv], stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=full_env, cwd=cwd)
        self.pid = self.popen.pid
        _started.append(self)

    def alive(self):
        return self.popen.poll() is None

    def stop(self, timeout=15):
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        if self in _started:
            _started.remove(self)

    def tail(self, n=20):
        return tail_file(self.log_path, n)


@atexit.register
def _stop_all():
    for p in list(reversed(_started)):
        p.stop(timeout=5)


def wait_for(predicate, what, timeout=30.0, proc=None, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            die(f"{proc.name} exited while waiting for {what}; log {proc.log_path}:\n{proc.tail()}")
        try:
            v = predicate()
            if v:
                return v
        except (OSError, ValueError):
            pass
        time.sleep(interval)
    die(f"timed out waiting for {what}" + (f"; log {proc.log_path}:\n{proc.tail()}" if proc else ""))


def http_status(url, data=None, headers=None, timeout=5):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def tcp_open(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def start_devbroker(logdir, name="devbroker"):
    """A fresh hookrelay-devbroker (3 brokers, 12 partitions); returns (proc, bootstrap)."""
    bootfile = Path(logdir) / f"{name}.bootstrap"
    if bootfile.exists():
        bootfile.unlink()
    proc = Proc(name, [binary("devbroker/hookrelay-devbroker"), "--brokers", "3", "--partitions", "12",
                       "--bootstrap-file", bootfile, "--log-level", "warn"], logdir)
    wait_for(lambda: bootfile.exists() and bootfile.read_text().strip(), "devbroker bootstrap file", proc=proc)
    return proc, bootfile.read_text().strip()


BROKERS = ("kafka", "devbroker")
KAFKA_SCRIPT = ROOT / "scripts" / "kafka"
# The partition count the devbroker gives every topic; real Kafka gets the same for every topic.
# HOOKRELAY_BENCH_PARTITIONS changes it for an experiment (the report's broker line names it).
PARTITIONS = int(os.environ.get("HOOKRELAY_BENCH_PARTITIONS", "12"))


def add_broker_arg(ap):
    ap.add_argument("--broker", choices=BROKERS + ("both",), default="kafka",
                    help="kafka (default): one Apache Kafka KRaft node started with scripts/kafka in the work "
                         "dir, log on disk, topics from `hookrelay topics apply` (12 partitions); devbroker: "
                         "hookrelay-devbroker --brokers 3 --partitions 12 (librdkafka's in-memory mock cluster); "
                         "both: hookrelay on each of the two in one invocation (the Node peer and nginx once, "
                         "the peer on kafka), one report with a hookrelay row per broker")


def broker_kinds(choice):
    """The brokers hookrelay runs on for a --broker choice, the first also the Node peer's."""
    return list(BROKERS) if choice == "both" else [choice]


def broker_description(kind):
    """One line for a report header: which broker ran."""
    if kind == "devbroker":
        return f"hookrelay-devbroker --brokers 3 --partitions {PARTITIONS} (librdkafka mock cluster, in memory)"
    return (f"Apache Kafka {os.environ.get('HOOKRELAY_KAFKA_VERSION', '4.1.1')}, one KRaft node "
            f"(scripts/kafka start --nodes 1), log on local disk; topics from `hookrelay topics apply`, "
            f"{PARTITIONS} partitions each, replication factor 1")


def _free_port_pair():
    """A base port P with P and P + 1 free (a Kafka node's client and controller ports)."""
    for _ in range(50):
        p = free_port()
        if p >= 65535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue
    die("no two consecutive free ports for Kafka")


class KafkaNode:
    """One Apache Kafka KRaft node started by scripts/kafka in DIR (data, server.log, pid there).
    Tracked with the Procs, so the atexit handler stops it with `scripts/kafka stop --dir DIR
    --kill` on every exit path (die(), an exception, Ctrl-C, SIGTERM: see _exit_on_sigterm)."""

    def __init__(self, name, kdir):
        self.name = name
        self.dir = Path(kdir)
        self.log_path = self.dir / "node-1" / "server.log"
        self.pid = None
        self._stopped = False
        _started.append(self)

    def alive(self):
        try:
            os.kill(self.pid, 0)
            return True
        except (OSError, TypeError):
            return False

    def stop(self, timeout=15):
        if not self._stopped:
            subprocess.run([str(KAFKA_SCRIPT), "stop", "--dir", str(self.dir), "--kill"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self._stopped = True
        if self in _started:
            _started.remove(self)

    def tail(self, n=20):
        return tail_file(self.log_path, n)


def _exit_on_sigterm(signum, frame):
    sys.exit(128 + signum)  # SystemExit runs the atexit handler, which stops every broker and Proc


signal.signal(signal.SIGTERM, _exit_on_sigterm)
signal.signal(signal.SIGHUP, _exit_on_sigterm)


def extra_keys(var):
    """Keys added to a mapping of a config for experiments, from the environment variable `var`
    (YAML flow-mapping entries), as ", <entries>" (or "" when unset): HOOKRELAY_BENCH_WORKER for
    bench/e2e's `worker` mapping (e.g. `http_threads: 1`), HOOKRELAY_BENCH_KAFKA for its `kafka`
    mapping (e.g. `producer_properties: { linger.ms: "5" }`), HOOKRELAY_BENCH_TOPICS for the
    `topics` mapping of start_kafka (e.g. `retry_partitions: 3`)."""
    extra = os.environ.get(var, "").strip()
    return f", {extra}" if extra else ""


def start_kafka(logdir, name="kafka"):
    """A fresh single-node Apache Kafka in logdir/<name> with the hookrelay topics (12 partitions,
    RF 1) made by `hookrelay topics apply`; returns (node, bootstrap). node.pid is the broker JVM
    (for CPU accounting); node.stop() runs `scripts/kafka stop --dir ... --kill`."""
    kdir = Path(logdir) / name
    node = KafkaNode(name, kdir)
    port = _free_port_pair()
    r = subprocess.run([str(KAFKA_SCRIPT), "start", "--dir", str(kdir), "--nodes", "1", "--port", str(port)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        die(f"scripts/kafka start failed:\n{r.stdout[-3000:]}\n{node.tail()}")
    node.pid = int((kdir / "node-1" / "pid").read_text().strip())
    bootstrap = subprocess.run([str(KAFKA_SCRIPT), "bootstrap", "--dir", str(kdir)], capture_output=True,
                               text=True, check=True).stdout.strip()
    cfg = Path(logdir) / f"{name}-topics.yaml"
    cfg.write_text(f"""kafka: {{ bootstrap_servers: "{bootstrap}" }}
topics: {{ partitions: {PARTITIONS}, replication_factor: 1, min_insync_replicas: 1{extra_keys("HOOKRELAY_BENCH_TOPICS")} }}
log_level: warn
""")
    r = subprocess.run([str(binary("cli/hookrelay")), "topics", "apply", "--config", str(cfg)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        die(f"hookrelay topics apply failed:\n{r.stdout[-3000:]}")
    log(f"Kafka up at {bootstrap} ({kdir}); topics applied")
    return node, bootstrap


def start_broker(kind, logdir, name):
    """The broker a benchmark runs on: kind "kafka" (start_kafka) or "devbroker" (start_devbroker).
    Returns (handle, bootstrap); handle has .pid, .alive(), .stop(), .tail()."""
    if kind == "devbroker":
        return start_devbroker(logdir, name.replace("kafka", "devbroker"))
    return start_kafka(logdir, name)


def start_nginx(logdir, name, server_block, worker_processes="auto"):
    """nginx in the foreground with a minimal config of our own (no system config touched)."""
    prefix = Path(logdir) / name
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(f"""daemon off;
worker_processes {worker_processes};
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  keepalive_requests 100000;
  client_body_temp_path {prefix}/client_body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
{server_block}
}}
""")
    return Proc(name, ["nginx", "-p", prefix, "-c", conf], logdir)


def prepare_peers(logdir):
    """A copy of shared/peers with its npm dependencies installed; returns its path."""
    if not (PEERS_SRC / "package.json").exists():
        die(f"peer baselines not found in {PEERS_SRC} (set HOOKRELAY_PEERS_DIR)")
    dest = Path(logdir) / "peers"
    shutil.copytree(PEERS_SRC, dest, ignore=shutil.ignore_patterns("node_modules"))
    log("npm install in a copy of the peers folder")
    r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=dest,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        die(f"npm install failed:\n{r.stdout[-2000:]}")
    return dest


def finish(work):
    """Removes the work dir (logs, configs, the peers copy) after a successful run, unless
    HOOKRELAY_BENCH_KEEP=1; after a failure it stays for inspection."""
    if os.environ.get("HOOKRELAY_BENCH_KEEP") == "1":
        log(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def tool_versions():
    def first_line(argv):
        r = subprocess.run(argv, capture_output=True, text=True)
        return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else "?"
    return (f"{first_line(['wrk', '-v'])}; node {first_line(['node', '--version'])}; "
            f"{first_line(['nginx', '-v'])}; {first_line(['psql', '--version'])}")


def _stat_fields(pid):
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()


def process_children():
    """parent pid -> child pids, from one pass over /proc."""
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents.setdefault(int(_stat_fields(d.name)[1]), []).append(int(d.name))
            except (OSError, ValueError, IndexError):
                pass
    return parents


def cpu_seconds(pid, children=None):
    """User + system CPU of a process and its live descendants (nginx workers), all threads.
    `children` (from process_children()) lets one /proc pass serve several calls; with {} only
    the process itself is counted."""
    try:
        if children is None:
            children = process_children()
        total, todo = 0, [pid]
        while todo:
            p = todo.pop()
            try:
                f = _stat_fields(p)
                total += int(f[11]) + int(f[12])
            except (OSError, ValueError, IndexError):
                pass
            todo += children.get(p, [])
        return total / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


# The private development PostgreSQL (`scripts/dev pg`).
PG_PORT = 55432
PG_BASE = f"postgresql://postgres@127.0.0.1:{PG_PORT}"
PEER_TABLES = """
CREATE TABLE peer_idem(key text primary key, state text, updated_at timestamptz default now());
CREATE TABLE peer_attempts(id bigserial primary key, key text, attempt int, status int, duration_ms int,
                           at timestamptz default now());
"""


def psql(db, sql):
    r = subprocess.run(["psql", f"{PG_BASE}/{db}", "-X", "-qtA", "-v", "ON_ERROR_STOP=1", "-c", sql],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise ValueError(r.stderr.strip())
    return r.stdout.strip()


class PsqlSession:
    """One psql process for the whole measurement: a poll every 200 ms must not cost a process
    start and a new connection (about a tenth of a core on this machine, taken from whatever is
    being measured)."""

    MARK = "__hookrelay_bench_end__"

    def __init__(self, db):
        self.proc = subprocess.Popen(["psql", f"{PG_BASE}/{db}", "-X", "-qtA"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def query(self, sql):
        """The first output line, or None when the query failed (psql goes on after an error)."""
        self.proc.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo " + self.MARK + "\n")
        self.proc.stdin.flush()
        lines = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise ValueError("psql session ended")
            line = line.rstrip("\n")
            if line == self.MARK:
                return lines[0] if lines else None
            lines.append(line)

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


def fresh_database(name, migrations=True):
    """Drops and makes database `name`: with migrations/*.sql applied, or (migrations=False) with
    the Node peer worker's tables (PEER_TABLES). Returns its URL."""
    psql("postgres", f"DROP DATABASE IF EXISTS {name}")
    psql("postgres", f"CREATE DATABASE {name}")
    if migrations:
        for f in sorted((ROOT / "migrations").glob("*.sql")):
            r = subprocess.run(["psql", f"{PG_BASE}/{name}", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(f)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                die(f"applying {f.name} to {name} failed:\n{r.stderr}")
    else:
        psql(name, PEER_TABLES)
    return f"{PG_BASE}/{name}"


def start_pg():
    """The private PostgreSQL on 127.0.0.1:55432 (`scripts/dev pg` starts it when it is down)."""
    subprocess.run([str(ROOT / "scripts" / "dev"), "pg"], check=True, stdout=subprocess.DEVNULL)


def body_1k():
    """The 1 KiB GitHub-style JSON body every webhook benchmark posts."""
    head = '{"action":"opened","repository":{"full_name":"acme/widgets"},"sender":{"login":"bench"},"pad":"'
    return (head + "x" * (1024 - len(head) - 2) + '"}').encode()


def worker_postgres_breakdown(port):
    """{op: (round trips, total seconds)} from a hookrelay-worker's
    hookrelay_worker_postgres_batch_duration_seconds histogram (its /metrics on `port`)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    ops = {}
    for kind, op, value in re.findall(
            r'^hookrelay_worker_postgres_batch_duration_seconds_(sum|count)\{[^}]*op="([^"]+)"[^}]*\} (\S+)$',
            text, re.M):
        n, total = ops.get(op, (0, 0.0))
        ops[op] = (int(float(value)), total) if kind == "count" else (n, float(value))
    return ops


def worker_stage_buckets(port):
    """{stage: {upper bound: cumulative count}} from a hookrelay-worker's
    hookrelay_worker_stage_seconds histogram (its /metrics on `port`)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    stages = {}
    for labels, value in re.findall(r'^hookrelay_worker_stage_seconds_bucket\{([^}]*)\} (\S+)$', text, re.M):
        le = re.search(r'le="([^"]+)"', labels).group(1)
        stage = re.search(r'stage="([^"]+)"', labels).group(1)
        stages.setdefault(stage, {})[float(le)] = float(value)
    return stages


def histogram_quantile(buckets, q):
    """The q-quantile of {upper bound: cumulative count}, interpolated linearly within its bucket
    (as Prometheus' histogram_quantile does); nan when empty."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for b in bounds:
        if buckets[b] >= rank:
            if b == float("inf"):
                return lower
            inside = buckets[b] - below
            return lower + (b - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = b, buckets[b]
    return lower


# A venv with confluent-kafka, for reading Kafka back (bench/chaos, bench/e2e); outside the repository.
KAFKA_VENV = Path(os.environ.get("HOOKRELAY_CHAOS_VENV", Path.home() / ".cache" / "hookrelay" / "chaos-venv"))
CONFLUENT_KAFKA = "confluent-kafka==2.16.1"


def kafka_venv_python():
    """The Python of KAFKA_VENV, made and filled with CONFLUENT_KAFKA on first use."""
    py = KAFKA_VENV / "bin" / "python"
    ok = py.exists() and subprocess.run([str(py), "-c", "import confluent_kafka"],
                                        capture_output=True).returncode == 0
    if not ok:
        log(f"making {KAFKA_VENV} with {CONFLUENT_KAFKA} (once)")
        subprocess.run([sys.executable, "-m", "venv", str(KAFKA_VENV)], check=True)
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", CONFLUENT_KAFKA], capture_output=True, text=True)
        if r.returncode != 0:
            die(f"pip install {CONFLUENT_KAFKA} into {KAFKA_VENV} failed:\n{r.stdout}{r.stderr}")
    return py


def start_perf(pid, out, logdir):
    """perf record (DWARF call graphs, 299 Hz) attached to one of our processes."""
    if not shutil.which("perf"):
        die("--perf needs perf (Debian package linux-perf)")
    return Proc("perf", ["perf", "record", "-F", "299", "--call-graph", "dwarf,8192", "-o", out, "-p", str(pid)],
                logdir)


def perf_summary(out, lines=40):
    """The flat profile (self time by symbol) of a perf.data file."""
    r = subprocess.run(["perf", "report", "-i", str(out), "--stdio", "--no-children", "--sort", "dso,sym",
                        "-g", "none", "--percent-limit", "0.7"], capture_output=True, text=True)
    body = [ln for ln in r.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
    return "\n".join(body[:lines])


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def machine_line():
    load = os.getloadavg()
    return (f"{platform.node()}, {os.cpu_count()} cores, {platform.machine()}, kernel {platform.release()}, "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def command_line():
    """The benchmark's command as run, with the HOOKRELAY_BENCH_TOPICS setting in front when set."""
    env = [f"HOOKRELAY_BENCH_TOPICS={shlex.quote(os.environ['HOOKRELAY_BENCH_TOPICS'])}"] \
        if os.environ.get("HOOKRELAY_BENCH_TOPICS", "").strip() else []
    return " ".join(env + [shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]])


def git_rev():
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def write_report(kind, text):
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.md"
    path.write_text(text)
    return path


def verdict(ok):
    return "met" if ok else "NOT met"
