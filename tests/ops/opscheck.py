"""Small helpers shared by the tests/ops scripts: the repository root, running a tool, and
collecting failures so one run reports all of them."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Report:
    def __init__(self, name):
        self.name = name
        self.failures = []
        self.checks = 0

    def check(self, ok, message):
        self.checks += 1
        if not ok:
            self.failures.append(message)
        return ok

    def run(self, argv, cwd=ROOT, env=None, what=None):
        """Runs a tool; a non-zero exit is a failure carrying its output."""
        merged = dict(os.environ, **(env or {}))
        try:
            proc = subprocess.run(argv, cwd=cwd, env=merged, capture_output=True, text=True, timeout=120)
        except FileNotFoundError:
            self.check(False, "%s: not installed (scripts/dev deps installs it)" % argv[0])
            return None
        self.check(proc.returncode == 0, "%s failed (exit %d):\n%s%s"
                   % (what or " ".join(map(str, argv)), proc.returncode, proc.stdout, proc.stderr))
        return proc

    def finish(self):
        for f in self.failures:
            print("FAIL: %s" % f, file=sys.stderr)
        print("%s: %d checks, %d failed" % (self.name, self.checks, len(self.failures)))
        return 1 if self.failures else 0
