"""timeseries_segmenter connected to a real Label Studio: CSV files uploaded to LS, empty predictions before
training, annotations -> training -> a new version whose time-series regions LS stores and which recover
the held-out series' segments."""

from __future__ import annotations

import sys
import time

import requests
from ls_server import ROOT
from test_label_studio import assert_predictions, connection_version, prediction_of

sys.path.insert(0, str(ROOT / "services" / "timeseries_segmenter" / "tests"))
from synthetic import config, iou, make_series, row_labels, to_csv  # noqa: E402

SERIES = config()  # valueType="url", numeric time column
TRAIN_SEEDS = (0, 1, 2, 3)
HELD_OUT_SEEDS = (10, 11)


def trained(backend_url: str, project: int) -> bool:
    """Every training job the backend took for the project has finished, and one of them published."""
    jobs = requests.get(f"{backend_url}/jobs?project={project}", timeout=10).json()["jobs"]
    assert not [j for j in jobs if j["state"] == "failed"], jobs
    return bool(jobs) and all(j["state"] == "done" for j in jobs) and any(j["version"] for j in jobs)


def test_timeseries_segmenter_trains_and_stores_regions_through_label_studio(label_studio, backend):
    ls = label_studio
    server = backend("timeseries_segmenter")
    project = ls.create_project(SERIES)
    ml = ls.connect(project, server.url)
    series = {f"series{seed}.csv": make_series(seed) for seed in TRAIN_SEEDS + HELD_OUT_SEEDS}
    # as LS's import dialog does for "Treat CSV/TSV as: time series": upload, then one task per file
    files = {name: (name, to_csv(columns).encode()) for name, (columns, _) in series.items()}
    uploaded = ls.api("POST", f"/api/projects/{project}/import?commit_to_project=false", files=files)
    ids = uploaded["file_upload_ids"]
    ls.api("POST", f"/api/projects/{project}/reimport", json={"file_upload_ids": ids, "files_as_tasks_list": False})
    tasks = ls.tasks(project)
    assert len(tasks) == len(series) and all(t["data"]["csv"].startswith("/data/upload/") for t in tasks), tasks
    by_name = {next(n for n in series if t["data"]["csv"].endswith(n)): t for t in tasks}

    ls.retrieve_predictions(project)
    v0 = connection_version(ls, ml["id"])
    assert v0 == "timeseries_segmenter-0"
    assert_predictions(ls, project, SERIES, v0, expect_regions=False)

    for seed in TRAIN_SEEDS:
        columns, segments = series[f"series{seed}.csv"]
        result = [
            {
                "from_name": "label",
                "to_name": "ts",
                "type": "timeserieslabels",
                "value": {
                    "start": columns["time"][first],
                    "end": columns["time"][last],
                    "instant": False,
                    "timeserieslabels": [label],
                },
            }
            for label, first, last in segments
        ]
        ls.api("POST", f"/api/tasks/{by_name[f'series{seed}.csv']['id']}/annotations/", json={"result": result})
    ls.api("POST", f"/api/ml/{ml['id']}/train", json={"use_ground_truth": False})
    deadline = time.monotonic() + 90
    while not trained(server.url, project):  # annotation webhooks and Start Training: jobs that coalesce
        assert time.monotonic() < deadline, server.log_tail()
        time.sleep(0.5)
    v1 = connection_version(ls, ml["id"])
    assert v1.startswith("timeseries_segmenter-")

    ls.retrieve_predictions(project)
    stored = {t["id"]: t for t in assert_predictions(ls, project, SERIES, v1, expect_regions=True)}
    for seed in HELD_OUT_SEEDS:
        columns, segments = series[f"series{seed}.csv"]
        prediction = prediction_of(stored[by_name[f"series{seed}.csv"]["id"]], v1)
        times, found = columns["time"], [None] * len(columns["time"])
        for region in prediction["result"]:
            assert region["type"] == "timeserieslabels" and 0 < region["score"] <= 1
            first, last = times.index(region["value"]["start"]), times.index(region["value"]["end"])
            found[first : last + 1] = [region["value"]["timeserieslabels"][0]] * (last - first + 1)
        truth = row_labels(len(times), segments)
        scores = {label: round(iou(truth, found, label), 3) for label in ("Run", "Walk")}
        print(f"series{seed}: {len(prediction['result'])} regions stored by LS, row IoU {scores}")
        assert min(scores.values()) >= 0.85, scores
    assert "Traceback" not in server.log_tail(400)
