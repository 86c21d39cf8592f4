"""What a service folder's Dockerfile and compose file say about running it: image, port, MODEL_DIR,
user, start command, health check and environment. ``deploy k8s`` reads them here instead of
repeating them per service.

The compose file is ``<folder>/docker-compose.yml`` (a project from ``label-studio-ml create``) or
``compose/<name>.yml`` beside ``services/`` (a service of this repository).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}\Z")
URL_PATH = re.compile(r"https?://[^/\s'\"]+(/[\w./-]*)")
USERADD_UID = re.compile(r"\buseradd\b[^;&|]*?(?:--uid|-u)[ =](\d+)")
DURATION = re.compile(r"(\d+)(h|m|s)")
ENVIRONMENT_KEY = re.compile(r"environment:(\s*&[\w-]+)?\Z")


class ServiceError(Exception):
    pass


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str
    comment: str = ""


@dataclass(frozen=True)
class ServiceFacts:
    name: str
    image: str
    port: int
    model_dir: str
    uid: int
    home: str | None
    command: tuple[str, ...]
    health_path: str
    start_period: int
    environment: tuple[EnvVar, ...]
    gpu: bool
    has_gpu_variant: bool


def seconds(duration: str | int | float) -> int:
    """A Docker duration (``300s``, ``5m``, ``1m30s``) in seconds."""
    if isinstance(duration, (int, float)):
        return int(duration)
    parts = DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ServiceError(f"cannot read the duration {duration!r}")
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):  # Docker drops comment lines, inside continuations too
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    result = []
    for line in joined:
        parts = line.strip().split(None, 1)
        if parts:
            result.append((parts[0].upper(), parts[1] if len(parts) > 1 else ""))
    return result


def production_stage(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The instructions that build the image that runs: the ``production`` stage (or the last one)
    preceded by the stages it is built ``FROM``; and the image the first of them starts from."""
    stages: dict[str, tuple[str | None, list[tuple[str, str]]]] = {}
    order: list[str] = []
    froms: dict[str, str] = {}
    for instruction, args in instructions(text):
        if instruction == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else f"stage{len(order)}"
            stages[name] = (words[0] if words[0] in stages else None, [])
            froms[name] = words[0]
            order.append(name)
        elif order:
            stages[order[-1]][1].append((instruction, args))
    if not order:
        raise ServiceError("the Dockerfile has no FROM")
    chain, name, image = [], "production" if "production" in stages else order[-1], ""
    while name is not None:
        parent, steps = stages[name]
        chain[:0] = steps
        image = froms[name]
        name = parent
    return image, chain


def env_assignments(args: str) -> dict[str, str]:
    words = shlex.split(args)
    if words and "=" not in words[0]:  # legacy form: ENV NAME value
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words if "=" in word)


@dataclass(frozen=True)
class Dockerfile:
    env: dict[str, str]
    exposed: list[int]
    user: str
    uid: int | None
    creates_home: bool
    command: tuple[str, ...]
    health_path: str | None
    start_period: int | None


def image_steps(path: Path) -> list[tuple[str, str]]:
    """The production stage's instructions, after those of core/Dockerfile when a service of this
    repository builds on the core image (``FROM ${CORE_IMAGE}``): what the running image is made of."""
    image, steps = production_stage(path.read_text(encoding="utf-8"))
    if "CORE_IMAGE" in image:
        core = path.resolve().parents[2] / "core" / "Dockerfile"
        if not core.is_file():
            raise ServiceError(f"{path} builds on the core image, but {core} is missing")
        steps = image_steps(core) + steps
    return steps


def read_dockerfile(path: Path) -> Dockerfile:
    env: dict[str, str] = {}
    exposed: list[int] = []
    user, uid, creates_home, command = "root", None, False, ()
    health_path, start_period = None, None
    for instruction, args in image_steps(path):
        if instruction == "ENV":
            env.update(env_assignments(args))
        elif instruction == "EXPOSE":
            exposed += [int(word.split("/")[0]) for word in args.split()]
        elif instruction == "USER":
            user = args.split(":")[0].strip()
        elif instruction == "RUN" and (found := USERADD_UID.search(args)):
            uid = int(found.group(1))
            creates_home = "--create-home" in args or re.search(r"\s-m\b", args) is not None
        elif instruction == "CMD":
            try:
                command = tuple(json.loads(args))
            except ValueError:
                raise ServiceError(
                    f'{path}: CMD must be in exec form, e.g. CMD ["label-studio-ml", "start", "/app"]'
                ) from None
        elif instruction == "HEALTHCHECK":
            found_path = URL_PATH.search(args)
            health_path = found_path.group(1) if found_path else health_path
            period = re.search(r"--start-period=(\S+)", args)
            start_period = seconds(period.group(1)) if period else start_period
    if user.isdigit():
        uid = int(user)
    return Dockerfile(env, exposed, user, uid, creates_home, command, health_path, start_period)


def compose_file(folder: Path) -> Path:
    own = folder / "docker-compose.yml"
    repository = folder.resolve().parent.parent / "compose" / f"{folder.resolve().name}.yml"
    for path in (own, repository):
        if path.is_file():
            return path
    raise ServiceError(f"{folder} has no compose file: expected {own} or {repository}")


def wants_gpu(service: dict[str, Any]) -> bool:
    devices = (((service.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices") or []
    return any(d.get("driver") == "nvidia" or "gpu" in (d.get("capabilities") or []) for d in devices)


def compose_services(path: Path, name: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The service that runs the model on the CPU and, if there is one, its GPU variant."""
    services = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("services") or {}
    plain = {key: s for key, s in services.items() if not s.get("profiles") and not wants_gpu(s)}
    main = services.get(name) or (next(iter(plain.values())) if len(plain) == 1 else None)
    if main is None:
        raise ServiceError(f"{path} has no service named {name!r}")
    gpu = next((s for s in services.values() if wants_gpu(s)), None)
    return main, gpu


def env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = "" if value is None else str(value)
    found = INTERPOLATION.match(text)
    return (found.group(2) or "") if found else text


def environment(service: dict[str, Any], comments: dict[str, str]) -> tuple[EnvVar, ...]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return tuple(EnvVar(name, env_value(value), comments.get(name, "")) for name, value in raw.items())


def env_comments(text: str) -> dict[str, str]:
    """The comment lines right above each ``NAME: value`` line of an ``environment:`` block of a compose
    file, by NAME; a build argument of the same name has its own comment, about building."""
    comments: dict[str, str] = {}
    above: list[str] = []
    block: int | None = None  # the indentation of the `environment:` key while inside its block
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        indent = len(line) - len(line.lstrip())
        if stripped and block is not None and indent <= block:
            block = None
        if ENVIRONMENT_KEY.match(stripped):
            block = indent
        elif block is not None and (found := re.match(r"([A-Z][A-Z0-9_]*):\s", stripped + " ")) and above:
            comments.setdefault(found.group(1), " ".join(above))
        above = []
    return comments


def read_service(folder: Path, gpu: bool = False) -> ServiceFacts:
    folder = Path(folder)
    if not (folder / "model.py").is_file():
        raise ServiceError(
            f"{folder} has no model.py: pass a service folder (services/<name>) or a project "
            f"made with `label-studio-ml create`"
        )
    if not (folder / "Dockerfile").is_file():
        raise ServiceError(f"{folder} has no Dockerfile: the cluster runs the image it builds")
    name = folder.resolve().name
    docker = read_dockerfile(folder / "Dockerfile")
    compose_path = compose_file(folder)
    main, gpu_service = compose_services(compose_path, name)
    service = gpu_service if gpu and gpu_service is not None else main
    image = env_value(service.get("image") or "")
    if not image:
        raise ServiceError(f"{compose_path}: the service {name!r} names no image")
    if docker.uid is None or docker.uid == 0:
        raise ServiceError(
            f"{folder / 'Dockerfile'} runs as root (no `useradd --uid N` and USER): the pods run "
            f"as a non-root user and need its uid"
        )
    port = int(docker.env.get("PORT") or (docker.exposed[0] if docker.exposed else 0))
    if not port:
        raise ServiceError(f"{folder / 'Dockerfile'} sets no PORT and exposes no port")
    if len(docker.command) < 3 or docker.command[1] != "start":
        raise ServiceError(
            f'{folder / "Dockerfile"}: CMD should be ["label-studio-ml", "start", DIR], not {list(docker.command)}'
        )
    healthcheck = service.get("healthcheck") or {}
    test = (
        " ".join(healthcheck.get("test") or [])
        if isinstance(healthcheck.get("test"), list)
        else str(healthcheck.get("test") or "")
    )
    found = URL_PATH.search(test)
    health_path = found.group(1) if found else docker.health_path or "/health"
    start_period = healthcheck.get("start_period")
    start = seconds(start_period) if start_period is not None else docker.start_period or 30
    return ServiceFacts(
        name=name,
        image=image,
        port=port,
        model_dir=docker.env.get("MODEL_DIR", "/data/models"),
        uid=docker.uid,
        home=f"/home/{docker.user}" if docker.creates_home and not docker.user.isdigit() else None,
        command=docker.command,
        health_path=health_path,
        start_period=start,
        environment=environment(service, env_comments(compose_path.read_text(encoding="utf-8"))),
        gpu=gpu,
        has_gpu_variant=gpu_service is not None,
    )
