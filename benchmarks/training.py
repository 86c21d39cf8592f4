"""Webhook latency while a training runs, and time for a new version to reach a second replica.

python benchmarks/training.py      (needs redis-server on PATH for the replica figure)
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from label_studio_ml.testing.plugin import ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "core" / "tests" / "models" / "trainable.py"
CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
    '<Choice value="Positive"/><Choice value="Negative"/></Choices></View>'
)


def event(action: str, label: str = "Positive") -> dict:
    return {
        "action": action,
        "project": {"id": 3, "label_config": CONFIG},
        "label": label,
        "annotation": {"id": 1},
        "task": {"id": 1, "data": {"text": "x"}},
    }


def version(url: str) -> str:
    return requests.post(url + "/setup", json={"project": "3", "schema": CONFIG}, timeout=5).json()["model_version"]


def webhook_latency(tmp: Path) -> None:
    env = {"MODEL_DIR": str(tmp / "single"), "TRAINABLE_FIT_SECONDS": "10"}
    with ServerProcess(TARGET, env=env) as server:
        session = requests.Session()
        version(server.url)
        session.post(server.url + "/webhook", json=event("START_TRAINING"), timeout=5)
        time.sleep(0.5)
        latencies = []
        for _ in range(200):
            started = time.perf_counter()
            session.post(server.url + "/webhook", json=event("ANNOTATION_CREATED"), timeout=5)
            latencies.append(1000 * (time.perf_counter() - started))
        jobs = session.get(server.url + "/jobs?project=3", timeout=5).json()["jobs"]
    latencies.sort()
    print(
        f"webhook during training: n=200 p50={statistics.median(latencies):.2f} ms "
        f"p99={latencies[197]:.2f} ms max={latencies[-1]:.2f} ms (target < 100 ms); "
        f"jobs after 201 events: {len(jobs)} ({[j['state'] for j in jobs]})"
    )


def replica_propagation(tmp: Path) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        print("replica propagation: skipped, redis-server not installed")
        return
    port = free_port()
    redis = subprocess.Popen([binary, "--port", str(port), "--save", "", "--dir", str(tmp)], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    env = {"MODEL_DIR": str(tmp / "shared"), "REDIS_URL": f"redis://127.0.0.1:{port}/0", "TRAINABLE_FIT_SECONDS": "0"}
    try:
        with (
            ServerProcess(TARGET, env=env) as one,
            ServerProcess(TARGET, env=env) as two,
            ServerProcess(TARGET, env=env, command="worker", wait_healthy=False),
        ):
            time.sleep(2)  # worker loaded
            figures = []
            for label in ("Negative", "Positive", "Negative"):
                old = version(two.url)
                started = time.perf_counter()
                requests.post(one.url + "/webhook", json=event("START_TRAINING", label), timeout=5)
                while version(two.url) == old:
                    time.sleep(0.005)
                figures.append(1000 * (time.perf_counter() - started))
            print(
                "new version visible on the second replica after: "
                + ", ".join(f"{f:.0f} ms" for f in figures)
                + " (webhook -> worker trains -> replica /setup)"
            )
    finally:
        redis.terminate()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        webhook_latency(Path(tmp))
        replica_propagation(Path(tmp))
    sys.exit(0)
