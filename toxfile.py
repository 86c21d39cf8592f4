"""tox plugin: one env per service folder (discovered from services/*/), no hand-kept list.

A service whose requirements.txt starts with ``# tox-env: NAME`` shares the virtualenv NAME with
the other services naming it (their pins agree, so one heavy torch install serves them all).
"""

from __future__ import annotations

import json
from pathlib import Path

from tox.config.loader.memory import MemoryLoader
from tox.plugin import impl

ROOT = Path(__file__).parent


def services() -> list[str]:
    return sorted(p.parent.name for p in ROOT.glob("services/*/model.py"))


def shared_env(service: str) -> str | None:
    requirements = ROOT / "services" / service / "requirements.txt"
    if requirements.exists():
        first = requirements.read_text().splitlines()[:1]
        if first and first[0].startswith("# tox-env:"):
            return first[0].split(":", 1)[1].strip()
    return None


@impl
def tox_extend_envs() -> list[str]:
    return services()


@impl
def tox_add_env_config(env_conf, state) -> None:  # type: ignore[no-untyped-def]
    name = env_conf.name
    if name in services():
        group = shared_env(name)
        if group:
            env_conf.loaders.insert(0, MemoryLoader(env_dir=ROOT / ".tox" / f"shared-{group}"))


@impl
def tox_env_teardown(tox_env) -> None:  # type: ignore[no-untyped-def]
    """tox records in a venv which env created it and recreates the venv when another env uses it: a
    shared venv forgets that name after each use, so the next service sharing it reuses it as is."""
    if tox_env.name in services() and shared_env(tox_env.name):
        info = Path(tox_env.env_dir) / ".tox-info.json"
        try:
            content = json.loads(info.read_text())
            content.pop("ToxEnv", None)
            info.write_text(json.dumps(content))
        except (OSError, ValueError):
            pass
