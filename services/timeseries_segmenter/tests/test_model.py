from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from synthetic import DATE_FORMAT, config, iou, make_series, row_labels, to_csv, with_dates

from label_studio_ml.testing.plugin import FakeLabelStudio, assert_conformant, model_client, recorded, wait_for_version

from model import TimeSeriesSegmenter

PROJECT = "4.1700000000"
INLINE = config(value_type="json")  # series held in the task
BY_URL = config(sep=";")  # series in a CSV file LS serves, ';'-separated
TRAIN_SEEDS = range(4)
HELD_OUT_SEEDS = (10, 11, 12)
IOU_FLOOR = 0.85  # measured 0.975-0.987 per label on the held-out series


def annotation_event(task_id: int, data: dict[str, Any], result: list[dict], label_config: str, project: int) -> dict:
    """An ANNOTATION_CREATED webhook shaped as LS 1.23.2 sends it (the recording's envelope, our task)."""
    event = copy.deepcopy(next(r["body"] for r in recorded("/webhook") if r["body"]["action"] == "ANNOTATION_CREATED"))
    event["project"].update({"id": project, "label_config": label_config})
    event["task"].update({"id": task_id, "data": data, "project": project})
    event["annotation"].update({"id": 1000 + task_id, "task": task_id, "project": project, "result": result})
    return event


def regions_of(columns: dict[str, list], segments: list[tuple[str, int, int]]) -> list[dict]:
    """The annotation an annotator makes: one timeserieslabels region per segment, in time-column values."""
    times = columns["time"]
    return [
        {
            "id": f"seg{first}",
            "from_name": "label",
            "to_name": "ts",
            "type": "timeserieslabels",
            "origin": "manual",
            "value": {"start": times[first], "end": times[last], "instant": False, "timeserieslabels": [label]},
        }
        for label, first, last in segments
    ]


def predict(client: Any, label_config: str, tasks: list[dict], project: str = PROJECT) -> list[dict]:
    """/predict with the recorded LS request's envelope around our tasks."""
    body = copy.deepcopy(recorded("/predict")[0]["body"])
    body.update({"tasks": tasks, "project": project, "label_config": label_config})
    reply = client.post("/predict", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()["results"]


def predicted_rows(times: list, prediction: dict) -> list[str | None]:
    labels: list[str | None] = [None] * len(times)
    for region in prediction["result"]:
        first, last = times.index(region["value"]["start"]), times.index(region["value"]["end"])
        labels[first : last + 1] = [region["value"]["timeserieslabels"][0]] * (last - first + 1)
    return labels


@pytest.fixture(scope="module")
def label_studio() -> Iterator[FakeLabelStudio]:
    with FakeLabelStudio() as ls:
        yield ls


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, label_studio: FakeLabelStudio) -> Iterator[Any]:
    """The real app, trained through LS-shaped annotation webhooks on four synthetic series held in the tasks."""
    settings = {"label_studio_url": label_studio.url, "label_studio_api_key": label_studio.pat}
    with model_client(TimeSeriesSegmenter, tmp_path_factory.mktemp("models"), **settings) as client:
        v0 = client.post("/setup", json={"project": PROJECT, "schema": INLINE}).json()["model_version"]
        for seed in TRAIN_SEEDS:
            columns, segments = make_series(seed)
            event = annotation_event(seed + 1, {"csv": columns}, regions_of(columns, segments), INLINE, 4)
            reply = client.post("/webhook", json=event)
            assert reply.status_code == 201 and reply.json()["status"] == "ok", reply.text
        client.version = wait_for_version(client, PROJECT, INLINE, v0)
        assert client.runtime.trainer.wait_idle(60)
        client.version = client.post("/setup", json={"project": PROJECT, "schema": INLINE}).json()["model_version"]
        yield client


def test_untrained_model_answers_one_empty_prediction_per_task(make_client):
    client = make_client(TimeSeriesSegmenter)
    tasks = [{"id": seed, "data": {"csv": make_series(seed)[0]}} for seed in (1, 2)]
    results = assert_conformant(client, INLINE, tasks, expect_regions=False)
    assert [r["model_version"] for r in results] == ["timeseries_segmenter-0"] * 2


def test_trained_segmenter_recovers_the_labelled_segments(trained, record_testsuite_property):
    assert trained.version.startswith("timeseries_segmenter-") and trained.version != "timeseries_segmenter-0"
    held_out = [make_series(seed) for seed in HELD_OUT_SEEDS]
    tasks = [{"id": 100 + i, "data": {"csv": columns}} for i, (columns, _) in enumerate(held_out)]
    results = assert_conformant(trained, INLINE, tasks, project=PROJECT, expect_regions=True)
    truth, found = [], []
    for (columns, segments), prediction in zip(held_out, results):
        truth += row_labels(len(columns["time"]), segments)
        found += predicted_rows(columns["time"], prediction)
    scores = {label: iou(truth, found, label) for label in ("Run", "Walk")}
    print(f"\nrow IoU per label over {len(truth)} held-out rows: {scores}")  # shown with -s
    for label, score in scores.items():
        record_testsuite_property(f"row_iou_{label}", round(score, 4))  # in the junit report CI keeps
    assert min(scores.values()) >= IOU_FLOOR, scores
    assert all(r["model_version"] == trained.version for r in results)


def test_regions_are_well_formed_and_do_not_overlap_within_a_label(trained):
    columns, _ = make_series(21)
    (prediction,) = predict(trained, INLINE, [{"id": 1, "data": {"csv": columns}}])
    regions = prediction["result"]
    assert regions
    for region in regions:
        value = region["value"]
        assert set(region) >= {"id", "from_name", "to_name", "type", "value", "score"}
        assert (region["from_name"], region["to_name"], region["type"]) == ("label", "ts", "timeserieslabels")
        assert value["start"] in columns["time"] and value["end"] in columns["time"]
        assert value["start"] <= value["end"] and value["instant"] == (value["start"] == value["end"])
        assert value["timeserieslabels"][0] in ("Run", "Walk") and 0 < region["score"] <= 1
    assert len({r["id"] for r in regions}) == len(regions)
    for label in ("Run", "Walk"):
        mine = [r["value"] for r in regions if r["value"]["timeserieslabels"] == [label]]
        spans = sorted((v["start"], v["end"]) for v in mine)
        assert all(previous[1] < following[0] for previous, following in zip(spans, spans[1:])), spans
    assert prediction["score"] == pytest.approx(sum(r["score"] for r in regions) / len(regions))


def test_a_csv_behind_a_label_studio_url_gives_the_inline_regions(trained, label_studio):
    columns, _ = make_series(11)
    label_studio.files["/data/upload/4/walk.csv"] = to_csv(columns, sep=";").encode()
    tasks = [{"id": 7, "data": {"csv": "/data/upload/4/walk.csv"}}, {"id": 8, "data": {"csv": columns}}]
    by_url, inline = predict(trained, BY_URL, tasks)

    def comparable(prediction: dict) -> list:
        return [(r["value"], round(r["score"], 9)) for r in prediction["result"]]

    assert by_url["result"] and comparable(by_url) == comparable(inline)
    assert label_studio.auth_headers_seen("/data/upload/4/walk.csv") == [f"Bearer {label_studio.access}"]


def test_a_series_that_cannot_be_read_fails_alone(trained):
    good, _ = make_series(12)
    tasks = [
        {"id": 1, "data": {"csv": {"time": [0, 1], "accel": [0.0, 1.0]}}},  # no gyro channel
        {"id": 2, "data": {"csv": good}},
        {"id": 3, "data": {"other": 1}},
    ]
    results = predict(trained, INLINE, tasks)
    assert [bool(r["result"]) for r in results] == [False, True, False]


def test_missing_values_and_empty_series_are_answered(trained):
    columns, _ = make_series(11)
    holes = {**columns, "accel": [None if i % 7 == 0 else v for i, v in enumerate(columns["accel"])]}
    empty = {"time": [], "accel": [], "gyro": []}
    tasks = [{"id": 1, "data": {"csv": holes}}, {"id": 2, "data": {"csv": empty}}]
    with_holes, nothing = predict(trained, INLINE, tasks)
    labels = {r["value"]["timeserieslabels"][0] for r in with_holes["result"]}
    assert labels == {"Run", "Walk"} and nothing == {**nothing, "result": [], "score": None}
    assert predict(trained, INLINE, [{"id": 2, "data": {"csv": empty}}])[0]["result"] == []


def test_date_time_column_in_time_format_trains_and_answers_in_that_format(make_client, tmp_path: Path):
    label_config = config(time_format=DATE_FORMAT, value_type="json")
    client = make_client(TimeSeriesSegmenter)
    v0 = client.post("/setup", json={"project": "9", "schema": label_config}).json()["model_version"]
    for seed in TRAIN_SEEDS:
        columns, segments = make_series(seed)
        dated = with_dates(columns)
        event = annotation_event(seed + 1, {"csv": dated}, regions_of(dated, segments), label_config, 9)
        assert client.post("/webhook", json=event).status_code == 201
    wait_for_version(client, "9", label_config, v0)
    assert client.runtime.trainer.wait_idle(60)
    columns, segments = make_series(10)
    dated = with_dates(columns)
    (prediction,) = assert_conformant(client, label_config, [{"id": 1, "data": {"csv": dated}}], project="9")
    starts = [r["value"]["start"] for r in prediction["result"]]
    assert starts and all(isinstance(s, str) and s in dated["time"] for s in starts), starts
    found = predicted_rows(dated["time"], prediction)
    truth = row_labels(len(dated["time"]), segments)
    assert min(iou(truth, found, label) for label in ("Run", "Walk")) >= IOU_FLOOR


def test_start_training_reads_annotated_tasks_and_their_csv_files_from_label_studio(make_client):
    files, tasks = {}, []
    for seed in TRAIN_SEEDS:
        columns, segments = make_series(seed)
        files[f"/data/upload/5/{seed}.csv"] = to_csv(columns, sep=";").encode()
        annotation = {
            "id": seed,
            "was_cancelled": False,
            "updated_at": "2026-01-01",
            "result": regions_of(columns, segments),
        }
        tasks.append({"id": seed + 1, "data": {"csv": f"/data/upload/5/{seed}.csv"}, "annotations": [annotation]})
    with FakeLabelStudio(files=files, tasks={5: tasks}) as ls:
        client = make_client(TimeSeriesSegmenter, label_studio_url=ls.url, label_studio_api_key=ls.legacy_token)
        v0 = client.post("/setup", json={"project": "5", "schema": BY_URL}).json()["model_version"]
        reply = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 5}})
        assert reply.status_code == 201 and reply.json()["job"]
        v1 = wait_for_version(client, "5", BY_URL, v0)
        assert len(ls.auth_headers_seen("/data/upload/5/")) == len(TRAIN_SEEDS)
        columns, segments = make_series(12)
        ls.files["/data/upload/5/new.csv"] = to_csv(columns, sep=";").encode()
        task = {"id": 9, "data": {"csv": "/data/upload/5/new.csv"}}
        (prediction,) = assert_conformant(client, BY_URL, [task], project="5")
    assert prediction["model_version"] == v1
    found = predicted_rows(columns["time"], prediction)
    truth = row_labels(len(columns["time"]), segments)
    assert min(iou(truth, found, label) for label in ("Run", "Walk")) >= IOU_FLOOR


def test_a_config_without_channels_is_refused_with_a_reason(make_client):
    client = make_client(TimeSeriesSegmenter)
    no_channels = INLINE.replace('<Channel column="accel"/>', "").replace('<Channel column="gyro"/>', "")
    reply = client.post("/predict", json={"tasks": [{"id": 1, "data": {"csv": {}}}], "label_config": no_channels})
    assert reply.status_code == 422 and "Channel" in reply.json()["error"], reply.text
