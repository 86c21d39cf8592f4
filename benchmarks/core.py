"""Core's overhead: a trivial model served by core versus a bare Starlette app doing the same JSON work.

Each runs as uvicorn in its own process on loopback, on the same HTTP stack (httptools, a dependency
of core, so the bare app gets it too), and answer POST /predict with one ``{result, score, model_version}``
per task. The client (a small keep-alive asyncio HTTP/1.1 client, so
it costs little CPU) interleaves short bursts against the servers, cell by cell and round by
round, so that machine noise hits both alike. Prints req/s, p50/p99 latency and the core/bare ratio
per cell, the server CPU time per request (robust to load from other processes), then core's idle
RSS and its start-to-healthy time. The model comes twice: returning a list of dicts, and returning
upstream's ``label_studio_ml.response.ModelResponse``; each runs as a model gets it by default (core
measures the model's first predicts in worker threads, then runs this sub-millisecond one on the event
loop: see label_studio_ml/engine/scheduling.py) and with ``inline_predict = False`` (every predict in a worker
thread).

    python benchmarks/core.py [--rounds 10] [--burst 0.6]
    python benchmarks/core.py --profile 100     where a 100-task /predict spends its time, in-process
    python benchmarks/core.py --profile 100 --model-response    the same for the ModelResponse model

Targets (issue 24): core/bare >= 0.85 in every cell on the event loop and >= 0.80 through worker
threads, p99 <= 1.5x bare's p99, idle RSS <= 60 MB, start to healthy <= 0.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
    '<Choice value="Positive"/><Choice value="Negative"/></Choices></View>'
)

MODEL = textwrap.dedent("""
    from label_studio_ml import LabelStudioMLBase

    RESULT = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}]


    class Trivial(LabelStudioMLBase):
        inline_predict = INLINE

        def predict(self, tasks, context=None, **kwargs):
            return [{"result": RESULT, "score": 0.9} for _ in tasks]
""")
#: the same model written the upstream way: predict returns a ModelResponse
MODEL_RESPONSE = MODEL.replace(
    "from label_studio_ml import LabelStudioMLBase", "from label_studio_ml import LabelStudioMLBase, ModelResponse"
).replace(
    'return [{"result": RESULT, "score": 0.9} for _ in tasks]',
    'return ModelResponse(predictions=[{"result": RESULT, "score": 0.9} for _ in tasks])',
)
#: server name -> (model source, inline_predict); "-threads": every predict through a worker thread
CORE_SERVERS = {
    "core": (MODEL, None),
    "core-threads": (MODEL, False),
    "core-mr": (MODEL_RESPONSE, None),
    "core-mr-threads": (MODEL_RESPONSE, False),
}
INLINE_TARGET, THREADS_TARGET, P99_TARGET = 0.85, 0.80, 1.5

BARE = textwrap.dedent("""
    import json

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    RESULT = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}]


    async def predict(request):
        body = json.loads(await request.body())
        results = [{"result": RESULT, "score": 0.9, "model_version": "bare-0"} for _ in body["tasks"]]
        return JSONResponse({"results": results})


    async def health(request):
        return JSONResponse({"status": "UP"})


    app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health)])
""")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def task(i: int) -> dict:
    """A task shaped like LS 1.23.2's batch serializer (PROTOCOL.md §4.1)."""
    return {
        "id": i,
        "data": {"text": f"Task {i}: the quick brown fox jumps over the lazy dog, twice over."},
        "meta": {},
        "created_at": "2026-11-27T16:41:32.651669Z",
        "updated_at": "2026-11-27T16:41:32.651685Z",
        "is_labeled": False,
        "overlap": 1,
        "inner_id": i,
        "total_annotations": 0,
        "cancelled_annotations": 0,
        "total_predictions": 0,
        "comment_count": 0,
        "unresolved_comment_count": 0,
        "last_comment_updated_at": None,
        "project": 2,
        "updated_by": None,
        "file_upload": None,
        "comment_authors": [],
        "annotations": [],
        "predictions": [],
    }


def body(n: int) -> bytes:
    return json.dumps(
        {
            "tasks": [task(i) for i in range(1, n + 1)],
            "project": "2.1795797692",
            "label_config": CONFIG,
            "params": {"login": None, "password": None, "context": None},
        }
    ).encode()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """CPU time of a process's live threads so far, in ns resolution (/proc/PID/task/*/schedstat)."""
    total = 0
    for task_dir in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task_dir / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            pass
    return total / 1e9


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> float:
    started = time.perf_counter()
    request = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(request)
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.002)
    raise RuntimeError("server did not become healthy")


class Server:
    def __init__(self, name: str, args: list[str], env: dict[str, str], cwd: str) -> None:
        self.name, self.args, self.env, self.cwd = name, args, env, cwd
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start the server; return seconds from spawn to the first 200 on /health."""
        args = [a.replace("{port}", str(self.port)) for a in self.args]
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            args, env=self.env, cwd=self.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return wait_healthy(self.port, self.proc) - started

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _connection(port: int, request: bytes, deadline: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected reply: {head[:80]!r}")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def burst(port: int, payload: bytes, concurrency: int, seconds: float) -> tuple[int, float, list[float]]:
    request = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(_connection(port, request, started + seconds, latencies) for _ in range(concurrency)))
    return len(latencies), time.perf_counter() - started, latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(
    servers: list[Server],
    cells: list[tuple[int, int]],
    rounds: int,
    burst_s: float,
    cpu: Callable[[int], float] = cpu_seconds,
) -> dict[tuple[int, int, str], dict[str, list[float]]]:
    """Each (tasks, concurrency) cell on every server: a warm-up burst (the project instance, the inline-predict
    measurement), then ``rounds`` bursts, the servers' order reversed every other round so that neither always
    runs on the warmer machine; per cell and server: request counts, elapsed and CPU seconds, latencies."""
    payloads = {n: body(n) for n, _ in cells}
    stats: dict[tuple[int, int, str], dict[str, list[float]]] = {}
    for server in servers:
        for n, c in cells:
            asyncio.run(burst(server.port, payloads[n], c, 0.3))
    for round_no in range(rounds):
        for n, c in cells:
            for server in servers if round_no % 2 == 0 else servers[::-1]:
                assert server.proc is not None
                before = cpu(server.proc.pid)
                count, elapsed, latencies = asyncio.run(burst(server.port, payloads[n], c, burst_s))
                cell = stats.setdefault((n, c, server.name), {"count": [], "elapsed": [], "cpu": [], "lat": []})
                cell["cpu"].append(cpu(server.proc.pid) - before)
                cell["count"].append(count)
                cell["elapsed"].append(elapsed)
                cell["lat"].extend(latencies)
    return stats


def server_env(model_dir: Path) -> dict[str, str]:
    """This process's environment for a server, without the settings that would add auth, Redis or LS calls."""
    env = {**os.environ, "MODEL_DIR": str(model_dir), "LOG_LEVEL": "INFO", "PYTHONDONTWRITEBYTECODE": "1"}
    for name in ("BASIC_AUTH_USER", "BASIC_AUTH_PASS", "REDIS_URL", "LABEL_STUDIO_URL"):
        env.pop(name, None)
    return env


def bare_server(work: Path, env: dict[str, str]) -> Server:
    """The bare Starlette app (``BARE``, written to ``work/bare.py``) under uvicorn."""
    (work / "bare.py").write_text(BARE)
    args = [sys.executable, "-m", "uvicorn", "bare:app", "--host", "127.0.0.1", "--port", "{port}"]
    return Server("bare", [*args, "--log-level", "warning", "--no-access-log"], env, str(work))


def core_server(name: str, work: Path, env: dict[str, str]) -> Server:
    source, declared = CORE_SERVERS[name]
    (work / name).mkdir(exist_ok=True)
    (work / name / "model.py").write_text(source.replace("INLINE", str(declared)))
    args = [sys.executable, "-m", "label_studio_ml", "start", str(work / name), "--host", "127.0.0.1", "-p", "{port}"]
    return Server(name, args, env, str(work))


def profile(tasks: int, requests: int, source: str = MODEL) -> int:
    """Drive core's ASGI app in this process with ``tasks``-task /predict requests (no HTTP server, no
    client) to the model ``source``: cProfile's top functions, and the garbage collector's work per request."""
    import cProfile
    import gc
    import pstats

    work = Path(tempfile.mkdtemp(prefix="lsml-profile-"))
    os.environ["MODEL_DIR"] = str(work / "model_dir")
    (work / "svc").mkdir()
    (work / "svc" / "model.py").write_text(source.replace("INLINE", "True"))
    from label_studio_ml.engine.loader import load_model_class
    from label_studio_ml.engine.runtime import settle_heap
    from label_studio_ml.server.app import create_app

    app = create_app(load_model_class(str(work / "svc")), background_load=False)
    payload = body(tasks)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]

    async def one() -> None:
        messages = [{"type": "http.request", "body": payload, "more_body": False}]
        replies: list[dict] = []

        async def receive() -> dict:
            return messages.pop() if messages else {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            replies.append(message)

        scope = {"type": "http", "method": "POST", "path": "/predict", "headers": headers, "query_string": b""}
        await app({**scope, "root_path": "", "http_version": "1.1", "scheme": "http"}, receive, send)
        assert replies[0]["status"] == 200, replies

    async def run() -> None:
        async with app.router.lifespan_context(app):
            for _ in range(200):  # the policy's warm-up, then steady state
                await one()
            settle_heap()
            collections = sum(generation["collections"] for generation in gc.get_stats())
            started = time.process_time()
            for _ in range(requests):
                await one()
            cpu = (time.process_time() - started) / requests
            collected = sum(generation["collections"] for generation in gc.get_stats()) - collections
            print(f"{requests} requests of {tasks} task(s): {1e6 * cpu:.0f} us CPU each, {collected} collections")
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(requests):
                await one()
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)

    asyncio.run(run())
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds per cell (default 10)")
    parser.add_argument("--burst", type=float, default=0.6, help="seconds per burst (default 0.6)")
    parser.add_argument("--starts", type=int, default=5, help="cold starts timed for start-to-healthy (default 5)")
    parser.add_argument("--profile", type=int, metavar="TASKS", help="profile TASKS-task requests in-process instead")
    parser.add_argument("--model-response", action="store_true", help="profile the model returning a ModelResponse")
    args = parser.parse_args()
    if args.profile:
        return profile(args.profile, 2000, MODEL_RESPONSE if args.model_response else MODEL)

    work = Path(tempfile.mkdtemp(prefix="lsml-bench-"))
    env = server_env(work / "model_dir")
    cores = [core_server(name, work, env) for name in CORE_SERVERS]
    core = cores[0]
    bare = bare_server(work, env)
    servers = [*cores, bare]

    # start to healthy: cold starts (each a fresh process), core and bare alternating
    starts, bare_starts = [], []
    for _ in range(args.starts):
        starts.append(core.start())
        core.stop()
        bare_starts.append(bare.start())
        bare.stop()
    bare.port = free_port()
    core.port = free_port()
    for server in servers:
        server.start()
    assert core.proc is not None and bare.proc is not None
    idle_rss = rss_mb(core.proc.pid)
    bare_rss = rss_mb(bare.proc.pid)

    cells = [(1, 1), (1, 16), (100, 1), (100, 16)]
    try:
        stats = measure(servers, cells, args.rounds, args.burst)
        time.sleep(0.5)
        after_rss = rss_mb(core.proc.pid)
    finally:
        for server in servers:
            server.stop()

    print(
        f"core overhead benchmark: {args.rounds} interleaved rounds x {args.burst:.1f} s bursts per cell, "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    print("req/s and latency are wall-clock figures; 'cpu us' is the server process's CPU time per request.")
    print("ratio = core/bare req/s and cpu ratio = bare/core CPU per request, each the median over rounds of")
    print("the ratio within a round (neighbouring bursts), which cancels most of the load other processes add;")
    print("p99 ratio = core's p99 / bare's p99. core = a model returning dicts, core-mr = one returning a")
    print("ModelResponse; -threads = the model sets inline_predict = False (every predict in a worker thread).")
    print(
        f"{'server':>15} {'tasks':>5} {'conc':>4} | {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'cpu us':>7} | "
        f"{'ratio':>5} {'cpu ratio':>9} {'p99 ratio':>9}"
    )

    def per_round(n: int, c: int, name: str) -> tuple[list[float], list[float]]:
        cell = stats[(n, c, name)]
        rates = [k / e for k, e in zip(cell["count"], cell["elapsed"], strict=True)]
        cpus = [1e6 * u / max(k, 1) for u, k in zip(cell["cpu"], cell["count"], strict=True)]
        return rates, cpus

    worst: dict[str, tuple[float, float, float]] = {}
    for n, c in cells:
        bare_rates, bare_cpus = per_round(n, c, "bare")
        bare_p99 = percentile(stats[(n, c, "bare")]["lat"], 0.99)
        for server in servers:
            rates, cpus = per_round(n, c, server.name)
            lat = stats[(n, c, server.name)]["lat"]
            count, elapsed = stats[(n, c, server.name)]["count"], stats[(n, c, server.name)]["elapsed"]
            line = (
                f"{server.name:>15} {n:>5} {c:>4} | {sum(count) / sum(elapsed):7.0f} "
                f"{1000 * statistics.median(lat):7.2f} {1000 * percentile(lat, 0.99):7.2f} "
                f"{statistics.median(cpus):7.0f} |"
            )
            if server is not bare:
                ratio = statistics.median(r / b for r, b in zip(rates, bare_rates, strict=True))
                cpu_ratio = statistics.median(b / u for u, b in zip(cpus, bare_cpus, strict=True))
                p99_ratio = percentile(lat, 0.99) / bare_p99
                old = worst.get(server.name, (1e9, 1e9, 0.0))
                worst[server.name] = (min(old[0], ratio), min(old[1], cpu_ratio), max(old[2], p99_ratio))
                line += f" {ratio:5.2f} {cpu_ratio:9.2f} {p99_ratio:9.2f}"
            print(line)
    for name, (ratio, cpu_ratio, p99_ratio) in worst.items():
        target = THREADS_TARGET if name.endswith("-threads") else INLINE_TARGET
        print(
            f"worst {name}/bare: {ratio:.2f} req/s, {cpu_ratio:.2f} CPU per request "
            f"(target >= {target:.2f}: {'ok' if min(ratio, cpu_ratio) >= target else 'MISSED'}); "
            f"p99 {p99_ratio:.2f}x bare's (target <= {P99_TARGET}: {'ok' if p99_ratio <= P99_TARGET else 'MISSED'})"
        )
    start_median, start_worst = statistics.median(starts), max(starts)
    rss_ok = "ok" if max(idle_rss, after_rss) <= 60 else "MISSED"
    print(
        f"core idle RSS: {idle_rss:.1f} MB after start, {after_rss:.1f} MB after the run "
        f"(bare Starlette {bare_rss:.1f} MB; target <= 60 MB: {rss_ok})"
    )
    print(
        f"core start to healthy: median {start_median:.3f} s, worst {start_worst:.3f} s of {len(starts)} "
        f"(target <= 0.5 s: {'ok' if start_median <= 0.5 else 'MISSED'}); "
        f"bare Starlette under uvicorn: median {statistics.median(bare_starts):.3f} s"
    )
    load = os.getloadavg()[0]
    print(
        f"load average at the end: {load:.1f} on {os.cpu_count()} CPUs"
        + (
            " (a busy shared machine: wall-clock ratios are noisy, trust the CPU ratios)"
            if load > 1.5 * (os.cpu_count() or 1)
            else ""
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
