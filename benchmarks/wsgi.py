"""What the WSGI bridge costs: one trivial model served by core under uvicorn (``label-studio-ml start``)
and under upstream's image command (``gunicorn --preload --workers 1 --threads 8 _wsgi:app``, core's app
through a2wsgi), in one run; and, to tell gunicorn's own cost from the bridge's, a bare WSGI function doing
the same JSON work under the same gunicorn command. The client and servers are core.py's; bursts
interleave the servers cell by cell and round by round, so machine noise hits them alike. Prints req/s,
p50/p99 latency and server CPU time per request (all of gunicorn's processes) per cell, and the ratios to
core under uvicorn.

    python benchmarks/wsgi.py [--rounds 8] [--burst 0.6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

from core import MODEL, Server, cpu_seconds, measure, percentile, rss_mb

WSGI_PY = "from label_studio_ml.api import init_app\nfrom model import Trivial\n\napp = init_app(model_class=Trivial)\n"
BARE_WSGI = textwrap.dedent("""
    import json

    RESULT = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}]


    def app(environ, start_response):
        if environ["PATH_INFO"] == "/health":
            body = b'{"status": "UP"}'
        else:
            request = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
            results = [{"result": RESULT, "score": 0.9, "model_version": "bare-0"} for _ in request["tasks"]]
            body = json.dumps({"results": results}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
""")


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
    (work / "bare_wsgi.py").write_text(BARE_WSGI)
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
    bare_args = [*gunicorn_args[:-1], "bare_wsgi:app"]
    bare = Server("gunicorn-bare", [str(bin_dir / "gunicorn"), *bare_args], env, str(work))
    servers = (uvicorn, gunicorn, bare)
    starts = {server.name: server.start() for server in servers}
    rss = {s.name: sum(rss_mb(p) for p in process_tree(s.proc.pid)) for s in servers if s.proc is not None}

    cells = [(1, 1), (1, 8), (100, 1), (100, 8)]
    try:
        stats = measure(servers, cells, args.rounds, args.burst, cpu=tree_cpu)  # gunicorn: master + workers
    finally:
        for server in servers:
            server.stop()

    print(
        f"WSGI bridge benchmark: {args.rounds} interleaved rounds x {args.burst:.1f} s bursts per cell, "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    print("uvicorn = core under label-studio-ml start; gunicorn = core under gunicorn --preload --workers 1")
    print("--threads 8 _wsgi:app (a2wsgi); gunicorn-bare = a plain WSGI function, same JSON work, same command.")
    print("ratio = req/s and cpu ratio = CPU per request against core under uvicorn: medians of per-round ratios.")
    print(
        f"{'server':>13} {'tasks':>5} {'conc':>4} | {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'cpu us':>7} | "
        f"{'ratio':>5} {'cpu ratio':>9}"
    )
    for n, c in cells:
        per_round = {}
        for server in servers:
            name = server.name
            cell = stats[(n, c, name)]
            rates = [k / e for k, e in zip(cell["count"], cell["elapsed"], strict=True)]
            cpus = [1e6 * u / max(k, 1) for u, k in zip(cell["cpu"], cell["count"], strict=True)]
            per_round[name] = (rates, cpus)
            line = (
                f"{name:>13} {n:>5} {c:>4} | {sum(cell['count']) / sum(cell['elapsed']):7.0f} "
                f"{1000 * statistics.median(cell['lat']):7.2f} {1000 * percentile(cell['lat'], 0.99):7.2f} "
                f"{statistics.median(cpus):7.0f} |"
            )
            if name != "uvicorn":
                base_rates, base_cpus = per_round["uvicorn"]
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
