"""timeseries_segmenter: training time, and the predict cost per task and per 1,000 rows, through the service's
/predict (`label-studio-ml start` on loopback, series held in the tasks) and in-process (the same trained
model: read the series, window features, classifier, runs -> regions) on synthetic two-channel series.

    python benchmarks/timeseries_segmenter.py      (make bench MODEL=timeseries_segmenter)

Prints medians of 3 runs and checks that the service's regions equal the in-process ones.
"""

from __future__ import annotations

import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.append(sys.path.pop(0))  # this folder after site-packages
ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "services" / "timeseries_segmenter"
sys.path[:0] = [str(SERVICE), str(SERVICE / "tests")]

from _serving import Service  # noqa: E402
from series import SeriesSpec, read_series  # noqa: E402
from synthetic import config, iou, make_series, row_labels  # noqa: E402

from model import Segmenter, runs  # noqa: E402

CONFIG = config(value_type="json")
TRAIN = 8  # annotated series of TRAIN_ROWS rows
TRAIN_ROWS = 2_000
SIZES = [(1, 1_000), (100, 1_000), (1, 10_000), (1, 100_000)]  # (tasks per request, rows per task)
RUNS = 3


def regions(segmenter: Segmenter, spec: SeriesSpec, columns_list: list[dict]) -> list[list[tuple]]:
    """In-process: the same steps as the service's predict, without HTTP, JSON and validation."""
    series = [read_series(spec, columns) for columns in columns_list]
    out = []
    for s, probabilities in zip(series, segmenter.probabilities(series)):
        classes = probabilities.argmax(axis=1)
        out.append([(s.times[a], s.times[b], segmenter.labels[classes[a] - 1]) for a, b in runs(classes) if classes[a]])
    return out


def annotation(task_id: int, columns: dict, segments: list) -> dict:
    times = columns["time"]
    result = [
        {
            "from_name": "label",
            "to_name": "ts",
            "type": "timeserieslabels",
            "value": {"start": times[a], "end": times[b], "instant": False, "timeserieslabels": [label]},
        }
        for label, a, b in segments
    ]
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": 1, "label_config": CONFIG},
        "task": {"id": task_id, "data": {"csv": columns}, "project": 1},
        "annotation": {"id": task_id, "result": result, "was_cancelled": False, "task": task_id},
    }


def wait_jobs(service: Service) -> list[dict]:
    while True:
        jobs = service.session.get(service.url + "/jobs?project=1", timeout=10).json()["jobs"]
        if jobs and all(j["state"] in ("done", "failed") for j in jobs):
            return jobs
        time.sleep(0.1)


def main() -> None:
    model_dir = tempfile.TemporaryDirectory()
    with Service("timeseries_segmenter", env={"MODEL_DIR": model_dir.name}) as service:
        service.session.post(service.url + "/setup", json={"project": "1", "schema": CONFIG}, timeout=10)
        for i in range(TRAIN):
            columns, segments = make_series(i, rows=TRAIN_ROWS)
            service.session.post(service.url + "/webhook", json=annotation(i + 1, columns, segments), timeout=10)
        wait_jobs(service)
        service.session.post(service.url + "/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
        time.sleep(0.5)
        job = max(wait_jobs(service), key=lambda j: j["created_at"])
        assert job["state"] == "done", job  # "no change: version kept": the same data trains the same model
        fit_s = job["ended_at"] - job["started_at"]
        setup = service.session.post(service.url + "/setup", json={"project": "1"}, timeout=10).json()
        active = Path(model_dir.name) / "projects" / "1" / "versions" / setup["model_version"]
        with (active / "segmenter.pkl").open("rb") as fh:
            segmenter = Segmenter(**pickle.load(fh))
        trees = segmenter.classifier.n_estimators
        spec = SeriesSpec.from_config(CONFIG, "ts")
        warm_up = {"tasks": [{"id": 1, "data": {"csv": make_series(99)[0]}}], "label_config": CONFIG, "project": "1"}
        service.session.post(service.url + "/predict", json=warm_up, timeout=60)  # builds the project's instance
        print(f"timeseries_segmenter: 2 channels, Run/Walk/background, {trees} trees, medians of {RUNS} runs")
        print(f"  fit (service job, START_TRAINING): {TRAIN} series x {TRAIN_ROWS} rows = {TRAIN * TRAIN_ROWS} rows")
        print(f"    {fit_s:.2f} s  ({1000 * fit_s / (TRAIN * TRAIN_ROWS / 1000):.0f} ms per 1k training rows)")
        print(f"  {'tasks x rows':>16} {'service':>10} {'in-process':>11} {'per task':>9} {'per 1k rows':>12} ratio")
        for count, rows in SIZES:
            data = [make_series(100 + i, rows=rows) for i in range(count)]
            tasks = [{"id": i + 1, "data": {"csv": columns}} for i, (columns, _) in enumerate(data)]
            body = {"tasks": tasks, "label_config": CONFIG, "project": "1"}
            served, direct = [], []
            for _ in range(RUNS):
                started = time.perf_counter()
                reply = service.session.post(service.url + "/predict", json=body, timeout=600)
                served.append(time.perf_counter() - started)
                started = time.perf_counter()
                expected = regions(segmenter, spec, [columns for columns, _ in data])
                direct.append(time.perf_counter() - started)
            results = reply.json()["results"]
            got = [
                [(r["value"]["start"], r["value"]["end"], r["value"]["timeserieslabels"][0]) for r in p["result"]]
                for p in results
            ]
            assert got == expected, "service regions differ from the in-process ones"
            t_service, t_direct = statistics.median(served), statistics.median(direct)
            truth = [label for columns, segments in data for label in row_labels(rows, segments)]
            found: list = []
            for (columns, _), prediction in zip(data, got):
                labels: list = [None] * rows
                for start, end, label in prediction:
                    a, b = columns["time"].index(start), columns["time"].index(end)
                    labels[a : b + 1] = [label] * (b - a + 1)
                found += labels
            quality = min(iou(truth, found, label) for label in ("Run", "Walk"))
            print(
                f"  {count:>5} x {rows:>8} {t_service:>9.3f}s {t_direct:>10.3f}s {1000 * t_service / count:>7.1f}ms"
                f" {1000 * t_service / (count * rows / 1000):>10.2f}ms {t_service / t_direct:5.2f}x"
                f"  (min row IoU {quality:.3f})"
            )


if __name__ == "__main__":
    main()
