#!/usr/bin/env python3
"""deploy/Dockerfile: a bookworm build stage without tests and a slim runtime stage that installs
no -dev package, copies the binaries and migrations, runs as uid 10001 and has no ENTRYPOINT.
Given built binaries (BIN...), also checks that every shared library they link directly comes
from a Debian package the runtime stage installs (or that the slim base image has), so the image
does not fail at start with a missing .so.

usage: check_dockerfile.py [BIN ...]"""
import re
import subprocess
import sys
from pathlib import Path

from opscheck import ROOT, Report

# Essential packages present in debian:bookworm-slim.
BASE_PACKAGES = {"libc6", "libstdc++6", "libgcc-s1", "zlib1g"}
BINARIES = ["hookrelay-ingest", "hookrelay-worker", "hookrelay-admin", "hookrelay", "hookrelay-demo-receiver"]


def stages(text):
    """[(from line, [instructions])] with line continuations joined."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append((line, []))
        elif out:
            out[-1][1].append(line)
    return out


def apt_packages(instructions):
    pkgs = set()
    for ins in instructions:
        for m in re.finditer(r"apt-get install ([^&;]*)", ins):
            pkgs |= {w for w in m.group(1).split() if not w.startswith("-")}
    return pkgs


def needed_packages(binary):
    """{soname: debian package} for the binary's direct DT_NEEDED libraries."""
    dyn = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True).stdout
    libs = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn)
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    paths = dict(re.findall(r"^\s*(\S+) => (/\S+)", ldd, re.M))
    result = {}
    for lib in libs:
        path = paths.get(lib)
        if not path:
            result[lib] = None
            continue
        real = str(Path(path).resolve())
        owner = None
        for candidate in (path, real, real.replace("/usr/lib/", "/lib/", 1), real.replace("/lib/", "/usr/lib/", 1)):
            q = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if q.returncode == 0:
                owner = q.stdout.split(":")[0]
                break
        result[lib] = owner
    return result


def main(argv):
    r = Report("check_dockerfile")
    text = (ROOT / "deploy/Dockerfile").read_text()
    st = stages(text)
    r.check(len(st) >= 2, "expected a build and a runtime stage")
    if len(st) < 2:
        return r.finish()
    build_from, build = st[0]
    runtime_from, runtime = st[-1]
    r.check("debian:" in build_from or "DEBIAN_RELEASE" in build_from, "build stage must be Debian")
    r.check(re.search(r"ARG DEBIAN_RELEASE=bookworm", text), "Debian release must be bookworm")
    r.check("-slim" in runtime_from, "runtime stage must be the slim image")
    build_text = " ".join(build)
    r.check("-DHOOKRELAY_TESTS=OFF" in build_text, "build must configure with -DHOOKRELAY_TESTS=OFF")
    for b in BINARIES:
        r.check(b in build_text, "build stage does not build/copy %s" % b)
    runtime_pkgs = apt_packages(runtime)
    r.check(runtime_pkgs, "runtime stage installs no packages")
    r.check(not [p for p in runtime_pkgs if p.endswith("-dev")], "runtime stage installs -dev packages")
    r.check("--no-install-recommends" in " ".join(runtime), "runtime apt-get must use --no-install-recommends")
    r.check(any(i.startswith("COPY") and "migrations/" in i for i in runtime), "runtime must copy migrations/")
    r.check(any(i.startswith("COPY --from=") for i in runtime), "runtime must copy the built binaries")
    users = [i for i in runtime if i.upper().startswith("USER ")]
    r.check(users and users[-1].split()[1].split(":")[0] == "10001", "runtime must run as USER 10001")
    r.check(not any(i.upper().startswith("ENTRYPOINT") for s in st for i in s[1]), "no ENTRYPOINT allowed")
    r.check("useradd" in " ".join(runtime) and "10001" in " ".join(runtime), "runtime must create the uid 10001 user")

    for binary in argv[1:]:
        if not Path(binary).is_file():
            continue  # not built in this tree (e.g. a target another branch adds)
        for lib, pkg in needed_packages(binary).items():
            r.check(pkg is not None, "%s: %s resolves to no Debian package" % (binary, lib))
            if pkg:
                base = pkg.split(":")[0]
                r.check(base in runtime_pkgs or base in BASE_PACKAGES,
                        "%s needs %s from package %s, which the runtime stage does not install"
                        % (Path(binary).name, lib, base))
    return r.finish()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
