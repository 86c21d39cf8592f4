"""Load: 60 s at concurrency 16 against a light service while training runs; errors, p99, RSS growth.

    python benchmarks/load.py [--seconds 60] [--concurrency 16] [--service simple_text_classifier]

Starts the service on loopback, trains it once, then mixes /predict (10 tasks), /setup and /health
requests with a START_TRAINING webhook every 2 s, and samples the server's RSS. Targets: zero
errors, RSS growth under 10% (after warm-up), p99 recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from label_studio_ml.testing.plugin import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
    '<Choice value="Positive"/><Choice value="Negative"/></Choices></View>'
)
WORDS = ["good", "great", "love", "bad", "awful", "hate", "fine", "terrible", "excellent", "poor"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def annotation(i: int) -> dict:
    label = "Positive" if i % 2 else "Negative"
    text = " ".join(WORDS[(i + k) % 5 + (0 if i % 2 else 5)] for k in range(4))
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": 1, "label_config": CONFIG},
        "task": {"id": i, "data": {"text": text}},
        "annotation": {
            "id": i,
            "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}],
        },
    }


async def worker(client: httpx.AsyncClient, deadline: float, latencies: list[float], errors: list[str], n: int) -> None:
    tasks = [{"id": i, "data": {"text": f"{WORDS[i % 10]} {WORDS[(i * 3) % 10]} product"}} for i in range(10)]
    i = n
    while time.monotonic() < deadline:
        i += 1
        kind = i % 10
        started = time.perf_counter()
        try:
            if kind < 8:
                reply = await client.post("/predict", json={"tasks": tasks, "project": "1.1", "label_config": CONFIG})
                ok = reply.status_code == 200 and len(reply.json()["results"]) == 10
            elif kind == 8:
                reply = await client.post("/setup", json={"project": "1.1", "schema": CONFIG})
                ok = reply.status_code == 200
            else:
                reply = await client.post("/webhook", json=annotation(i))
                ok = reply.status_code == 201  # a training job scheduled
            if not ok:
                errors.append(f"{reply.status_code} {reply.text[:100]}")
        except httpx.HTTPError as exc:
            errors.append(type(exc).__name__)
        latencies.append(time.perf_counter() - started)


async def run(url: str, pid: int, seconds: float, concurrency: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=concurrency)) as client:
        await client.post("/setup", json={"project": "1.1", "schema": CONFIG})
        for i in range(20):
            await client.post("/webhook", json=annotation(i))
        await asyncio.sleep(3)
        warm_latencies: list[float] = []
        await asyncio.gather(
            *(worker(client, time.monotonic() + 5, warm_latencies, [], n * 1000) for n in range(concurrency))
        )
        rss_start = rss_mb(pid)
        latencies: list[float] = []
        errors: list[str] = []
        samples = [rss_start]
        deadline = time.monotonic() + seconds

        async def sampler() -> None:
            while time.monotonic() < deadline:
                await asyncio.sleep(2)
                samples.append(rss_mb(pid))
                await client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})

        started = time.monotonic()
        await asyncio.gather(
            sampler(), *(worker(client, deadline, latencies, errors, n * 100000) for n in range(concurrency))
        )
        elapsed = time.monotonic() - started
        jobs = (await client.get("/jobs?project=1")).json()["jobs"]
        versions = (await client.get("/versions?project=1")).json()["versions"]
    latencies.sort()
    p = lambda q: 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    growth = 100 * (samples[-1] - rss_start) / rss_start
    print(
        f"{len(latencies)} requests in {elapsed:.0f} s at concurrency {concurrency}: "
        f"{len(latencies) / elapsed:.0f} req/s, errors {len(errors)} {errors[:3]}"
    )
    print(
        f"latency p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {p(0.99):.1f} ms, "
        f"max {latencies[-1] * 1000:.1f} ms"
    )
    print(
        f"RSS {rss_start:.1f} MB -> {samples[-1]:.1f} MB (max {max(samples):.1f}): growth {growth:+.1f}% (target < 10%)"
    )
    print(
        f"training during the run: {len(jobs)} job record(s) kept, states {sorted({j['state'] for j in jobs})}, "
        f"{len(versions)} version(s) kept, active {versions[0]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--service", default="simple_text_classifier")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        ServerProcess(ROOT / "services" / args.service, env={"MODEL_DIR": tmp, "LOG_LEVEL": "WARNING"}) as server,
    ):
        asyncio.run(run(server.url, server.proc.pid, args.seconds, args.concurrency))


if __name__ == "__main__":
    main()
