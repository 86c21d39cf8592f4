"""What the status page costs the server: one render of its live part (what an open browser tab asks for
every 2 s), for an empty backend and for a busy one (40 projects, 20 job records each), next to /health.

    python benchmarks/status_page.py [--calls 50]

Through Starlette's TestClient (in-process), so the figures include the test client's own overhead.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.testing.plugin import model_client

CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
    '<Choice value="Positive"/><Choice value="Negative"/></Choices></View>'
)
HTML = {"Accept": "text/html"}


class Quiet(LabelStudioMLBase):
    def predict(self, tasks: list[dict[str, Any]], context: Any = None, **kwargs: Any) -> list[dict[str, Any]]:
        return [{"result": []} for _ in tasks]


def per_call_ms(client: Any, path: str, calls: int, headers: dict[str, str] | None = None) -> tuple[float, int]:
    started = time.perf_counter()
    for _ in range(calls):
        reply = client.get(path, headers=headers or {})
        assert reply.status_code == 200, reply.text
    return 1000 * (time.perf_counter() - started) / calls, len(reply.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    calls = parser.parse_args().calls
    with model_client(Quiet, Path(tempfile.mkdtemp())) as client:
        client.get("/", headers=HTML)  # the first view imports Jinja2 and compiles the templates
        empty, empty_size = per_call_ms(client, "/?fragment=1", calls, HTML)
        now = time.time()
        for project in range(40):
            client.post("/setup", json={"project": f"{project}.1", "schema": CONFIG})
            ids = [f"{project:04d}{job:08d}" for job in range(20)]
            client.runtime.store.set(str(project), "jobs", ids)
            for job_id in ids:
                client.runtime.store.set(
                    str(project),
                    f"job-{job_id}",
                    {"id": job_id, "project": str(project), "state": "done", "progress": 1.0, "created_at": now},
                )
        busy, busy_size = per_call_ms(client, "/?fragment=1", calls, HTML)
        health, _ = per_call_ms(client, "/health", calls)
    print(f"live part, no project:              {empty:6.1f} ms  {empty_size / 1024:5.1f} KiB")
    print(
        f"live part, 40 projects, 800 jobs:   {busy:6.1f} ms  {busy_size / 1024:5.1f} KiB"
        f"  ({busy / 2000:.1%} of a core per open tab at one refresh every 2 s)"
    )
    print(f"/health, for scale:                 {health:6.1f} ms")


if __name__ == "__main__":
    main()
