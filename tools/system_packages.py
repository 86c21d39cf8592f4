"""The Debian packages an env needs, read from the one list each env keeps, and installed when missing.

    python3 tools/system_packages.py list    [--test] ENV[,ENV...]   # print them, space-separated
    python3 tools/system_packages.py ensure  [--test] ENV[,ENV...]   # install what is missing (root + apt)

ENV is a tox env: ``core``, ``e2e``, ``lint`` or a service (``services/<name>/``). Each folder keeps
``apt.txt`` (what it needs to run; images and ``make run`` install it) and ``apt-test.txt`` (what its
tests need besides). A line is a package, ``# ...`` a comment, ``-r PATH`` includes another list.

``ensure`` installs the missing packages with apt-get when it runs as root; otherwise it prints one
line naming them and the command to install them, and exits 2, before any test runs.
``SYSTEM_PACKAGES=skip`` skips the check (a machine without apt where they are installed another way).
Standard library only: it runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_LIST, TEST_LIST = "apt.txt", "apt-test.txt"


class UnknownEnv(Exception):
    pass


def env_folder(env: str) -> Path | None:
    """The folder whose lists an env reads; None for an env that keeps none (lint)."""
    if env in ("core", "e2e"):
        return ROOT / env
    if env == "lint":
        return None
    if (ROOT / "services" / env / "model.py").is_file():
        return ROOT / "services" / env
    raise UnknownEnv(f"system_packages: unknown env {env!r}: one of core, e2e, lint or a folder in services/")


def read_list(path: Path, seen: set[Path] | None = None) -> list[str]:
    seen = set() if seen is None else seen
    if path in seen or not path.is_file():
        return []
    seen.add(path)
    packages: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            packages += read_list((path.parent / line[3:].strip()).resolve(), seen)
        elif line:
            packages += line.split()
    return packages


def packages_for(envs: list[str], tests: bool) -> list[str]:
    wanted: list[str] = []
    for env in envs:
        folder = env_folder(env)
        if folder is None:
            continue
        for name in (RUN_LIST, TEST_LIST) if tests else (RUN_LIST,):
            wanted += [p for p in read_list(folder / name) if p not in wanted]
    return wanted


def installed(package: str) -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.endswith(" installed")


def ensure(packages: list[str], envs: list[str]) -> int:
    if not packages or os.environ.get("SYSTEM_PACKAGES") == "skip":
        return 0
    command = f"apt-get install -y --no-install-recommends {' '.join(packages)}"
    if shutil.which("dpkg-query") is None or shutil.which("apt-get") is None:
        print(
            f"system packages: this machine has no apt/dpkg; the tests of {', '.join(envs)} need the Debian "
            f"packages {' '.join(packages)} (install their equivalents, then run with SYSTEM_PACKAGES=skip)",
            file=sys.stderr,
        )
        return 2
    missing = [p for p in packages if not installed(p)]
    if not missing:
        return 0
    if os.geteuid() != 0:
        print(
            f"system packages missing: {' '.join(missing)}; install them with: "
            f"sudo apt-get update && sudo apt-get install -y --no-install-recommends {' '.join(missing)}",
            file=sys.stderr,
        )
        return 2
    started = time.monotonic()
    print(f"system packages: installing {' '.join(missing)} (apt-get, as root) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        done = subprocess.run(step, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            tail = " ".join(done.stderr.strip().splitlines()[-2:])
            print(
                f"system packages: `{' '.join(step)}` failed (exit {done.returncode}): {tail}; run `{command}` by hand",
                file=sys.stderr,
            )
            return 2
    print(f"system packages: installed {len(missing)} in {time.monotonic() - started:.0f} s", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="system_packages", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["list", "ensure"])
    parser.add_argument("envs", nargs="+", metavar="ENV", help="tox envs, comma- or space-separated")
    parser.add_argument("--test", action="store_true", help="also the packages the tests need (apt-test.txt)")
    args = parser.parse_args(argv)
    envs = [e for item in args.envs for e in item.split(",") if e]
    try:
        packages = packages_for(envs, args.test)
    except UnknownEnv as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.action == "list":
        print(" ".join(packages))
        return 0
    return ensure(packages, envs)


if __name__ == "__main__":
    sys.exit(main())
