"""testing/plugin.py: the conformance check fails when a service breaks the protocol, and passes otherwise."""

from __future__ import annotations

from typing import Any

import fakes
import pytest
from fakes import CONFIG

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.testing.plugin import assert_conformant, recorded, recorded_requests, wait_for_version

TASKS = [{"id": 1, "data": {"text": "good"}}, {"id": 2, "data": {"text": "meh"}}]


def test_conformant_model_passes(make_client: Any) -> None:
    results = assert_conformant(make_client(fakes.Echo), CONFIG, TASKS, expect_regions=True)
    assert [r["result"][0]["value"]["choices"] for r in results] == [["Positive"], ["Negative"]]


class Empty(LabelStudioMLBase):
    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        return [{"result": [], "score": 0.0} for _ in tasks]


@pytest.mark.parametrize(
    "model_class, kwargs, message",
    [
        (fakes.InvalidRegions, {}, "invalid regions"),
        (fakes.WrongCount, {}, "one prediction per task"),
        (fakes.Broken, {}, "503"),
        (Empty, {"expect_regions": True}, None),
    ],
)
def test_broken_models_fail_the_check(
    make_client: Any, model_class: type, kwargs: dict[str, Any], message: str | None
) -> None:
    with pytest.raises(AssertionError, match=message):
        assert_conformant(make_client(model_class), CONFIG, TASKS, **kwargs)


def test_empty_results_are_conformant_unless_regions_expected(make_client: Any) -> None:
    assert assert_conformant(make_client(Empty), CONFIG, TASKS, expect_regions=False)[0]["result"] == []


def test_recorded_loaders(ls_requests: Any) -> None:
    everything = ls_requests()
    assert everything == recorded_requests()
    predicts = recorded("/predict")
    assert predicts and all(r["method"] == "POST" and r["body"]["tasks"] for r in predicts)
    interactive = [r for r in predicts if r["body"]["tasks"][0].get("drafts") is not None]
    assert interactive, "the recording holds the interactive (single task with drafts) shape too"
    assert {r["body"]["action"] for r in recorded("/webhook")} >= {"START_TRAINING", "ANNOTATION_CREATED"}


def test_wait_for_version_returns_a_new_version_and_fails_with_the_jobs(make_client: Any) -> None:
    client = make_client(fakes.Echo)
    current = client.post("/setup", json={"project": "4", "schema": CONFIG}).json()["model_version"]
    assert wait_for_version(client, "4", CONFIG, "an older version") == current
    client.runtime.store.set("4", "model_version", "Echo-9")  # what a finished training does last
    assert wait_for_version(client, "4", CONFIG, current, timeout=5) == "Echo-9"
    with pytest.raises(AssertionError, match="no new version after 0.2 s.*'jobs'"):
        wait_for_version(client, "4", CONFIG, "Echo-9", timeout=0.2)
