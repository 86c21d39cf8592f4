"""Training examples a project accumulates: from annotation webhooks, or LS's export on "Start Training".

A service passes ``example_of(task, annotation)`` that turns one annotation into a JSON-able example
(or None when the annotation has nothing for the model); ``collect`` keeps the project's examples in
its state, one per task, and returns them after applying a training job's events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..results.label_config import ControlPair

if TYPE_CHECKING:
    from ..model import LabelStudioMLBase

logger = logging.getLogger(__name__)

ANNOTATION_EVENTS = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED"}
DELETE_EVENTS = {"ANNOTATIONS_DELETED", "ANNOTATION_DELETED"}

ExampleOf = Callable[[dict[str, Any], dict[str, Any]], "dict[str, Any] | None"]


def collect(
    model: LabelStudioMLBase,
    event: str,
    data: dict[str, Any],
    example_of: ExampleOf,
    events: list[tuple[str, dict[str, Any]]] | None = None,
    key: str = "examples",
) -> dict[str, dict[str, Any]]:
    """The project's examples after a training job: ``{task_id: example}``, saved under ``key``.

    With ``LABEL_STUDIO_URL`` set, any event other than an annotation webhook (``START_TRAINING``)
    re-reads every labeled task from LS's export; otherwise the annotations received by webhook are
    what the model trains on.
    """
    examples: dict[str, dict[str, Any]] = model.get(key) or {}
    if model.settings.label_studio_url and event not in ANNOTATION_EVENTS:
        examples = {}
        for task in model.fetch_labeled_tasks():
            annotation = max(task["annotations"], key=lambda a: a.get("updated_at") or "")
            example = example_of(task, annotation)
            if example is not None:
                examples[str(task["id"])] = {**example, "annotation": annotation.get("id")}
    elif event == "START_TRAINING":
        logger.warning(
            "LABEL_STUDIO_URL is not set: training on the %d annotation(s) received by webhook", len(examples)
        )
    for name, payload in events or [(event, data)]:
        apply_event(examples, name, payload, example_of)
    model.set(key, examples)
    return examples


def apply_event(
    examples: dict[str, dict[str, Any]], event: str, payload: dict[str, Any], example_of: ExampleOf
) -> None:
    """Add, replace or remove the example an annotation webhook is about."""
    if event in ANNOTATION_EVENTS and isinstance(payload.get("task"), dict):
        annotation = payload.get("annotation") or {}
        key = str(payload["task"].get("id"))
        example = None if annotation.get("was_cancelled") else example_of(payload["task"], annotation)
        if example is None:
            examples.pop(key, None)
        else:
            examples[key] = {**example, "annotation": annotation.get("id")}
    elif event in DELETE_EVENTS:
        deleted = {
            a.get("id") for a in payload.get("annotations") or [payload.get("annotation") or {}] if isinstance(a, dict)
        }
        deleted.discard(None)
        for key in [k for k, e in examples.items() if e.get("annotation") in deleted]:
            examples.pop(key)


def labeled_spans(pair: ControlPair, annotation: dict[str, Any], text: str) -> list[tuple[int, int, str]]:
    """``(start, end, label)`` of the annotation's spans on ``pair`` that agree with ``text``."""
    spans = []
    for item in annotation.get("result") or []:
        if item.get("from_name") != pair.from_name or item.get("to_name") != pair.to_name:
            continue
        value = item.get("value") or {}
        labels = value.get(pair.result_type) or value.get("labels") or []
        start, end = value.get("start"), value.get("end")
        if not labels or not isinstance(start, int) or not isinstance(end, int) or not 0 <= start < end <= len(text):
            continue
        if isinstance(value.get("text"), str) and text[start:end] != value["text"]:
            logger.warning(
                "annotation %s: span %d-%d does not match the task text; skipped", annotation.get("id"), start, end
            )
            continue
        spans.append((start, end, str(labels[0])))
    return sorted(spans)
