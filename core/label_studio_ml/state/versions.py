"""Model versions per project: ``<service>-<n>-<hash>``, published atomically under MODEL_DIR."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

from .storage import Store, safe_name

logger = logging.getLogger(__name__)


def folder_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class Versions:
    """Reads and publishes versions. The active version string lives in the store (shared by
    replicas); the artifacts live in ``MODEL_DIR/projects/<project>/versions/<version>/``."""

    def __init__(self, store: Store, model_dir: Path, prefix: str, initial: str, keep: int = 5) -> None:
        self.store = store
        self.model_dir = Path(model_dir)
        self.prefix = prefix
        self.initial = initial
        self.keep = max(1, keep)

    def project_dir(self, project: str) -> Path:
        return self.model_dir / "projects" / safe_name(project)

    def active(self, project: str | None) -> str:
        if project is None:
            return self.initial
        return self.store.get(project, "model_version") or self.initial

    def active_dir(self, project: str | None) -> Path | None:
        if project is None:
            return None
        version = self.active(project)
        path = self.project_dir(project) / "versions" / safe_name(version)
        return path if path.is_dir() else None

    def history(self, project: str) -> list[str]:
        """Kept versions, newest first."""
        return list(self.store.get(project, "versions") or [])

    def staging_dir(self, project: str, job_id: str) -> Path:
        path = self.project_dir(project) / "staging" / safe_name(job_id)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def clean_staging(self, project: str | None = None) -> None:
        """Drop half-written training output left by a crashed process."""
        roots = [self.project_dir(project)] if project else list((self.model_dir / "projects").glob("*"))
        for root in roots:
            shutil.rmtree(root / "staging", ignore_errors=True)

    def publish(self, project: str, staged: Path) -> str | None:
        """Make ``staged`` the active version. None when it is empty or equal to the active one."""
        if not any(p.is_file() for p in staged.rglob("*")):
            shutil.rmtree(staged, ignore_errors=True)
            return None
        digest = folder_hash(staged)
        current_hash = self.store.get(project, "model_version_hash")
        if digest == current_hash:
            shutil.rmtree(staged, ignore_errors=True)
            return None
        number = int(self.store.get(project, "model_version_number") or 0) + 1
        version = f"{self.prefix}-{number}-{digest[:7]}"
        final = self.project_dir(project) / "versions" / safe_name(version)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)  # atomic on one filesystem: a reader sees all or nothing
        history = [version] + [v for v in self.history(project) if v != version]
        self.store.set(project, "model_version_number", number)
        self.store.set(project, "model_version_hash", digest)
        self.store.set(project, "versions", history[: self.keep])
        self.store.set(project, "model_version", version)  # the switch: written last
        for old in history[self.keep :]:
            shutil.rmtree(self.project_dir(project) / "versions" / safe_name(old), ignore_errors=True)
        logger.info("project %s now serves model version %s", project, version)
        return version
