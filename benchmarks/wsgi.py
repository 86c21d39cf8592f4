"""What the WSGI bridge costs: one trivial model served by core under uvicorn (``label-studio-ml start``)
and under upstream's image command (``gunicorn --preload --workers 1 --threads 8 _wsgi:app``, core's app
through a2wsgi), in one run. The client and servers are core.py's; bursts interleave the two servers
cell by cell and round by round, so machine noise hits both alike. Prints req/s, p50/p99 latency and
server CPU time per request (all of gunicorn's processes) per cell, and the gunicorn/uvicorn ratios.

    python benchmarks/wsgi.py [--rounds 8] [--burst 0.6]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

from core import MODEL, Server, body, burst, cpu_seconds, percentile, rss_mb

WSGI_PY = "from label_studio_ml.api import init_app\nfrom model import Trivial\n\napp = init_app(model_class=Trivial)\n"


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (gunicorn's master and workers)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").iterdir():
            try:
                queue += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                pass
    return found


def tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) for p in process_tree(pid))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds per cell (default 8)")
    parser.add_argument("--burst", type=float, default=0.6, help="seconds per burst (default 0.6)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lsml-bench-wsgi-"))
    (work / "svc").mkdir()
    (work / "svc" / "model.py").write_text(MODEL.replace("INLINE", "None"))
    (work / "svc" / "_wsgi.py").write_text(WSGI_PY)
    env = {**os.environ, "MODEL_DIR": str(work / "model_dir"), "LOG_LEVEL": "INFO", "PYTHONDONTWRITEBYTECODE": "1"}
    for name in ("BASIC_AUTH_USER", "BASIC_AUTH_PASS", "REDIS_URL", "LABEL_STUDIO_URL"):
        env.pop(name, None)
    bin_dir = Path(sys.executable).parent
    uvicorn = Server(
        "uvicorn",
        [sys.executable, "-m", "label_studio_ml", "start", str(work / "svc"), "--host", "127.0.0.1", "-p", "{port}"],
        env,
        str(work),
    )
    gunicorn_args = ["--preload", "--bind", "127.0.0.1:{port}", "--workers", "1", "--threads", "8", "_wsgi:app"]
    gunicorn = Server("gunicorn", [str(bin_dir / "gunicorn"), *gunicorn_args], env, str(work / "svc"))
    servers = (uvicorn, gunicorn)
    starts = {server.name: server.start() for server in servers}
    rss = {s.name: sum(rss_mb(p) for p in process_tree(s.proc.pid)) for s in servers if s.proc is not None}

    cells = [(1, 1), (1, 8), (100, 1), (100, 8)]
    payloads = {n: body(n) for n, _ in cells}
    stats: dict[tuple[int, int, str], dict[str, list[float]]] = {}
    try:
        for server in servers:  # warm up: the project instance, the inline-predict measurement
            for n, c in cells:
                asyncio.run(burst(server.port, payloads[n], c, 0.3))
        for round_no in range(args.rounds):
            for n, c in cells:
                for server in servers if round_no % 2 == 0 else servers[::-1]:
                    assert server.proc is not None
                    cpu = tree_cpu(server.proc.pid)
                    count, elapsed, latencies = asyncio.run(burst(server.port, payloads[n], c, args.burst))
                    cell = stats.setdefault((n, c, server.name), {"count": [], "elapsed": [], "cpu": [], "lat": []})
                    cell["cpu"].append(tree_cpu(server.proc.pid) - cpu)
                    cell["count"].append(count)
                    cell["elapsed"].append(elapsed)
                    cell["lat"].extend(latencies)
    finally:
        for server in servers:
            server.stop()

    print(
        f"WSGI bridge benchmark: {args.rounds} interleaved rounds x {args.burst:.1f} s bursts per cell, "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    print("uvicorn = label-studio-ml start; gunicorn = gunicorn --preload --workers 1 --threads 8 _wsgi:app (a2wsgi).")
    print("ratio = gunicorn/uvicorn req/s, cpu ratio = uvicorn/gunicorn CPU per request: medians of per-round ratios.")
    print(
        f"{'server':>9} {'tasks':>5} {'conc':>4} | {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'cpu us':>7} | "
        f"{'ratio':>5} {'cpu ratio':>9}"
    )
    for n, c in cells:
        per_round = {}
        for name in ("uvicorn", "gunicorn"):
            cell = stats[(n, c, name)]
            rates = [k / e for k, e in zip(cell["count"], cell["elapsed"], strict=True)]
            cpus = [1e6 * u / max(k, 1) for u, k in zip(cell["cpu"], cell["count"], strict=True)]
            per_round[name] = (rates, cpus)
            line = (
                f"{name:>9} {n:>5} {c:>4} | {sum(cell['count']) / sum(cell['elapsed']):7.0f} "
                f"{1000 * statistics.median(cell['lat']):7.2f} {1000 * percentile(cell['lat'], 0.99):7.2f} "
                f"{statistics.median(cpus):7.0f} |"
            )
            if name == "gunicorn":
                (base_rates, base_cpus), (rates, cpus) = per_round["uvicorn"], per_round["gunicorn"]
                ratio = statistics.median(r / b for r, b in zip(rates, base_rates, strict=True))
                cpu_ratio = statistics.median(b / u for u, b in zip(cpus, base_cpus, strict=True))
                line += f" {ratio:5.2f} {cpu_ratio:9.2f}"
            print(line)
    print(
        "start to healthy: "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in starts.items())
        + "; RSS after start (all processes): "
        + ", ".join(f"{name} {mb:.1f} MB" for name, mb in rss.items())
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
