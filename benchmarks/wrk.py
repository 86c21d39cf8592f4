"""Issue 24's first table, measured with wrk: a trivial upstream-style model (predict returns a ``ModelResponse``)
served by core, a bare Starlette app doing the same JSON work, and, when its venv is given, the upstream SDK
(HumanSignal/label-studio-ml-backend 2.x: Flask ``api.py``, ``model.py`` with its SQLite cache) under
upstream's own image command.

    python benchmarks/wrk.py [--rounds 3] [--seconds 10] [--upstream-python /tmp/upstream-venv/bin/python]

Needs ``wrk`` on PATH (Debian: ``apt-get install wrk``); installs nothing. Every server runs in its own process
on loopback; the cells ({1, 100} LS-shaped tasks per request x {1, 16} connections) run round by round and,
within a cell, server after server (the order reversed every other round), so that load drift hits all of
them alike. One ``wrk -t1 -cC -dS --latency`` run per cell, server and round; the table holds the median over
rounds of req/s, p50 and p99, and each ratio is the median of the ratios within a round. Core runs the model
twice: as users get it by default (its first predicts are measured in worker threads, then this
sub-millisecond one runs on the event loop) and with ``inline_predict = False`` (every predict in a worker
thread). Upstream runs ``gunicorn --preload --bind :PORT --workers 1 --threads 8 --timeout 0 _wsgi:app``
with its cache file (``MODEL_DIR``) on tmpfs (/dev/shm). Before measuring, every server's /predict answer is
checked against the bare app's (the same predictions, ``model_version`` aside).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from core import MODEL_RESPONSE, Server, bare_server, body, core_server, server_env

CELLS = [(1, 1), (1, 16), (100, 1), (100, 16)]
#: core's servers from core.py's CORE_SERVERS, by the label the table gives them
CORE_VARIANTS = {"core-mr": "ours (default: measured, then on the event loop)", "core-mr-threads": "ours, threads"}
#: the same model with upstream's import paths (its package exports nothing at the top level)
UPSTREAM_MODEL = MODEL_RESPONSE.replace("INLINE", "None").replace(
    "from label_studio_ml import LabelStudioMLBase, ModelResponse",
    "from label_studio_ml.model import LabelStudioMLBase\nfrom label_studio_ml.response import ModelResponse",
)
#: upstream's examples set logging up in _wsgi.py, then call init_app; the level as core's servers get it
UPSTREAM_WSGI = textwrap.dedent("""
    import logging.config
    import os

    logging.config.dictConfig({"version": 1, "root": {"level": os.getenv("LOG_LEVEL", "INFO")}})

    from label_studio_ml.api import init_app  # noqa: E402
    from model import Trivial  # noqa: E402

    app = init_app(model_class=Trivial)
""")
#: upstream's Dockerfile CMD, with its WORKERS=1 and THREADS=8
UPSTREAM_COMMAND = "gunicorn --preload --bind :{port} --workers 1 --threads 8 --timeout 0 _wsgi:app".split()
LUA = textwrap.dedent("""
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    local file = assert(io.open({path}, "rb"))
    wrk.body = file:read("*a")
    file:close()
""")
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(output: str) -> dict[str, float]:
    """req/s, p50 and p99 in ms, and the failed requests (non-2xx answers and socket errors) of one wrk run."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    percentiles = {
        int(q): float(value) * UNITS[unit]
        for q, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    }
    if rate is None or 50 not in percentiles or 99 not in percentiles:
        raise RuntimeError(f"could not read wrk's output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    failed = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    return {"rate": float(rate.group(1)), "p50": percentiles[50], "p99": percentiles[99], "failed": failed}


def run_wrk(port: int, script: Path, connections: int, seconds: int) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script)]
    done = subprocess.run(
        [*command, f"http://127.0.0.1:{port}/predict"], capture_output=True, text=True, timeout=seconds + 60
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}")
    return parse_wrk(done.stdout)


def predictions(port: int, payload: bytes) -> list[dict]:
    """One /predict answer's results, ``model_version`` left out (each server names its own)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/predict", payload, {"Content-Type": "application/json"})
        reply = connection.getresponse()
        text = reply.read()
    finally:
        connection.close()
    if reply.status != 200:
        raise RuntimeError(f"/predict answered {reply.status}: {text[:300]!r}")
    return [{k: v for k, v in result.items() if k != "model_version"} for result in json.loads(text)["results"]]


def upstream_server(python: str, work: Path, model_dir: Path) -> Server:
    """Upstream's SDK under its image command, from ``python``'s venv; refuses a venv that imports core instead."""
    env = server_env(model_dir)
    env.pop("PYTHONPATH", None)  # one that names core/ would shadow upstream's package
    found = subprocess.run(
        [python, "-c", "import flask, label_studio_ml.api as api; print(api.__file__)"],
        env=env,
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        raise SystemExit(f"--upstream-python {python}: cannot import upstream's SDK: {found.stderr.strip()[-300:]}")
    core_dir = Path(__file__).resolve().parent.parent / "core"
    if Path(found.stdout.strip()).resolve().is_relative_to(core_dir):
        raise SystemExit(f"--upstream-python {python} imports this repository's core, not upstream's SDK")
    folder = work / "upstream"
    folder.mkdir()
    (folder / "model.py").write_text(UPSTREAM_MODEL)
    (folder / "_wsgi.py").write_text(UPSTREAM_WSGI)
    return Server("upstream", [python, "-m", *UPSTREAM_COMMAND], env, str(folder))


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def fmt_ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--seconds", type=int, default=10, help="whole seconds per wrk run (default 10)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="whole seconds of wrk per server and cell, first (default 1)"
    )
    parser.add_argument(
        "--upstream-python", metavar="PATH", help="python of a venv with upstream's label_studio_ml 2.x and gunicorn"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("error: wrk is not on PATH (Debian: apt-get update && apt-get install -y wrk)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="lsml-bench-wrk-"))
    env = server_env(work / "model_dir")
    servers = [core_server(name, work, env) for name in CORE_VARIANTS]
    bare = bare_server(work, env)
    servers.append(bare)
    shm = Path("/dev/shm")
    upstream_dir = Path(tempfile.mkdtemp(prefix="lsml-bench-upstream-", dir=shm if shm.is_dir() else None))
    if args.upstream_python:
        servers.append(upstream_server(args.upstream_python, work, upstream_dir))
        why_not_upstream = ""
    else:
        why_not_upstream = "no --upstream-python given (a venv with upstream's SDK: see README, Benchmarks)"
    scripts = {}
    for n, _ in CELLS:
        (work / f"body-{n}.json").write_bytes(body(n))
        scripts[n] = work / f"post-{n}.lua"
        scripts[n].write_text(LUA.replace("{path}", json.dumps(str(work / f"body-{n}.json"))))

    runs: dict[tuple[int, int, str], list[dict[str, float]]] = {}
    try:
        for server in servers:
            server.start()
        for n in sorted({n for n, _ in CELLS}):
            expected = predictions(bare.port, body(n))
            if len(expected) != n:
                raise RuntimeError(f"the bare app answered {len(expected)} results for {n} tasks")
            for server in servers:
                if predictions(server.port, body(n)) != expected:
                    raise RuntimeError(f"{server.name}'s /predict answer differs from the bare app's for {n} tasks")
        print(f"all {len(servers)} servers answer /predict with the bare app's predictions (1 and 100 tasks)")
        for server in servers:  # core's policy measures its first predicts; every server gets warm
            for n, c in CELLS:
                run_wrk(server.port, scripts[n], c, args.warmup)
        for round_no in range(args.rounds):
            for n, c in CELLS:
                for server in servers if round_no % 2 == 0 else servers[::-1]:
                    runs.setdefault((n, c, server.name), []).append(run_wrk(server.port, scripts[n], c, args.seconds))
            print(f"round {round_no + 1} of {args.rounds} done", flush=True)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(upstream_dir, ignore_errors=True)

    def median(n: int, c: int, name: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[(n, c, name)])

    def ratio(n: int, c: int, name: str, other: str) -> float:
        pairs = zip(runs[(n, c, name)], runs[(n, c, other)], strict=True)
        return statistics.median(mine["rate"] / theirs["rate"] for mine, theirs in pairs)

    print(
        f"\nwrk, {args.seconds} s per cell, {args.rounds} round(s), medians; python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end"
    )
    print("ratios: the median over rounds of the ratio within a round (neighbouring runs)")
    has_upstream = any(server.name == "upstream" for server in servers)
    for name, label in CORE_VARIANTS.items():
        print(f"\n{label}")
        print("| cell | ours req/s | bare req/s | ours/bare | ours p50 / p99 ms | bare p99 ms | ours/upstream |")
        print("|---|---|---|---|---|---|---|")
        for n, c in CELLS:
            versus_upstream = f"{ratio(n, c, name, 'upstream'):.1f}x" if has_upstream else "not measured"
            print(
                f"| {n} task{'s' if n > 1 else ''}, c{c} | {fmt_rate(median(n, c, name, 'rate'))} | "
                f"{fmt_rate(median(n, c, 'bare', 'rate'))} | {ratio(n, c, name, 'bare'):.2f} | "
                f"{fmt_ms(median(n, c, name, 'p50'))} / {fmt_ms(median(n, c, name, 'p99'))} | "
                f"{fmt_ms(median(n, c, 'bare', 'p99'))} | {versus_upstream} |"
            )
    if has_upstream:
        print("\nupstream SDK (gunicorn, 1 worker x 8 threads, SQLite cache on tmpfs)")
        print("| cell | req/s | p50 / p99 ms |")
        print("|---|---|---|")
        for n, c in CELLS:
            print(
                f"| {n} task{'s' if n > 1 else ''}, c{c} | {fmt_rate(median(n, c, 'upstream', 'rate'))} | "
                f"{fmt_ms(median(n, c, 'upstream', 'p50'))} / {fmt_ms(median(n, c, 'upstream', 'p99'))} |"
            )
    else:
        print(f"\nupstream: not measured: {why_not_upstream}")
    failed = {key: sum(run["failed"] for run in cell) for key, cell in runs.items()}
    for (n, c, name), count in failed.items():
        if count:
            print(f"WARNING: {name}, {n} task(s), c{c}: {count} requests failed (non-2xx or socket errors)")
    return 1 if any(failed.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
