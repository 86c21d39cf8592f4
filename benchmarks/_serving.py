"""Shared by the text benchmarks: run a service as `label-studio-ml start` on loopback, time /predict,
and make sentences with known kinds of entities."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]

FIRST = ["Alice", "Barack", "Maria", "John", "Angela", "Tim", "Priya", "Lars", "Chen", "Fatima"]
LAST = ["Obama", "Merkel", "Cook", "Smith", "Garcia", "Nakamura", "Okafor", "Jensen", "Rossi", "Khan"]
ORGS = ["Google", "Microsoft", "the United Nations", "Apple", "Siemens", "Toyota", "Reuters", "NASA"]
PLACES = ["Paris", "Berlin", "Tokyo", "New York", "Lagos", "Mumbai", "London", "Cairo", "Lima", "Oslo"]
VERBS = ["visited", "left", "met officials in", "flew to", "spoke about", "opened an office in"]
TAILS = ["on Monday.", "last year.", "in March 2021.", "after the meeting.", "with colleagues.", "again."]


def sentences(n: int, seed: int = 7) -> list[str]:
    """``n`` news-like sentences naming people, organisations and places (deterministic)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        person = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        out.append(f"{person} of {rng.choice(ORGS)} {rng.choice(VERBS)} {rng.choice(PLACES)} {rng.choice(TAILS)}")
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """``label-studio-ml start services/<name>`` in a child process on 127.0.0.1, stopped on exit."""

    def __init__(self, name: str, env: dict[str, str] | None = None, start_timeout: float = 300.0) -> None:
        self.name = name
        self.env = {**os.environ, **(env or {})}
        self.start_timeout = start_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.session = requests.Session()

    def __enter__(self) -> Service:
        self._tmp = tempfile.TemporaryDirectory()
        self.env.setdefault("MODEL_DIR", self._tmp.name)
        self.env.setdefault("LOG_LEVEL", "WARNING")
        cmd = [
            sys.executable,
            "-m",
            "label_studio_ml",
            "start",
            str(ROOT / "services" / self.name),
            "--host",
            "127.0.0.1",
            "-p",
            str(self.port),
        ]
        self.process = subprocess.Popen(cmd, env=self.env)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
            try:
                if self.session.get(self.url + "/health", timeout=2).json().get("status") == "UP":
                    return self
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"{self.name} did not report UP within {self.start_timeout} s")

    def __exit__(self, *exc: Any) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._tmp.cleanup()

    def predict(self, texts: list[str], label_config: str, batch: int = 100) -> tuple[float, list[dict[str, Any]]]:
        """Seconds for all texts sent as requests of ``batch`` tasks, and the predictions in order."""
        tasks = [{"id": i + 1, "data": {"text": t}} for i, t in enumerate(texts)]
        results: list[dict[str, Any]] = []
        started = time.perf_counter()
        for offset in range(0, len(tasks), batch):
            reply = self.session.post(
                self.url + "/predict",
                timeout=600,
                json={"tasks": tasks[offset : offset + batch], "label_config": label_config, "project": "1"},
            )
            reply.raise_for_status()
            results.extend(reply.json()["results"])
        return time.perf_counter() - started, results


def spans(prediction: dict[str, Any]) -> list[tuple[int, int, str]]:
    return [(r["value"]["start"], r["value"]["end"], r["value"]["labels"][0]) for r in prediction["result"]]
