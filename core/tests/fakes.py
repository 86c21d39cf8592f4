"""Trivial model classes the core tests serve (no ML libraries: core is tested against fakes of a model,
never of core itself)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

from label_studio_ml import LabelStudioMLBase, ModelResponse, PredictionValue

CONFIG = """<View><Text name="text" value="$text"/><Choices name="label" toName="text">
<Choice value="Positive"/><Choice value="Negative"/></Choices></View>"""

#: what the models saw, reset before every test by the autouse fixture in conftest.py
calls: Counter[str] = Counter()
seen: list[dict[str, Any]] = []


def choice(label: str = "Positive", score: float = 0.9) -> dict[str, Any]:
    return {
        "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}],
        "score": score,
    }


class Echo(LabelStudioMLBase):
    """Positive for texts containing 'good', Negative otherwise; records what reached it."""

    pause = 0.0  # seconds each predict call sleeps (tests of where predict runs)

    @classmethod
    def load(cls) -> Any:
        calls["load"] += 1
        return {"loaded_at": time.monotonic()}

    def setup(self) -> None:
        calls["setup"] += 1

    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        calls["predict"] += 1
        if self.pause:
            time.sleep(self.pause)
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        seen.append(
            {
                "on_loop": on_loop,
                "project": self.project_id,
                "tasks": len(tasks),
                "context": context,
                "kwargs": kwargs,
                "resources": self.resources,
                "extra_params": self.extra_params,
                "label_config": self.label_config,
            }
        )
        return [choice("Positive" if "good" in t["data"].get("text", "") else "Negative") for t in tasks]


class Slow(Echo):
    delay = 1.5
    started = threading.Event()
    running = 0
    peak = 0
    lock = threading.Lock()

    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        cls = type(self)
        with cls.lock:
            cls.running += 1
            cls.peak = max(cls.peak, cls.running)
        cls.started.set()
        time.sleep(self.delay)
        with cls.lock:
            cls.running -= 1
        return super().predict(tasks, context, **kwargs)


class GatedLoad(Echo):
    """load() blocks until the test opens the gate (or fails if told to)."""

    gate = threading.Event()
    fail = False

    @classmethod
    def load(cls) -> Any:
        cls.gate.wait(10)
        if cls.fail:
            raise RuntimeError("weights file is corrupt")
        return super().load()


class Broken(Echo):
    @classmethod
    def load(cls) -> Any:
        raise FileNotFoundError("no weights at /models/x.bin")


class BoomOnSome(Echo):
    """Raises for the whole batch when any task says 'boom' (core retries task by task)."""

    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        if any(t["data"].get("text") == "boom" for t in tasks):
            raise ValueError("cannot handle 'boom'")
        return super().predict(tasks, context, **kwargs)


class WrongCount(Echo):
    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        return super().predict(tasks, context, **kwargs)[:-1]


class TooMany(Echo):
    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        predictions = super().predict(tasks, context, **kwargs)
        return predictions + predictions[:1]


class InvalidRegions(Echo):
    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        out = super().predict(tasks, context, **kwargs)
        out[0]["result"].append(
            {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["Maybe"]}}
        )
        return out


class SeedModelResponse(LabelStudioMLBase):
    """Written for the seed SDK: ModelResponse of PredictionValues, model_version set in setup()."""

    def setup(self) -> None:
        self.set("model_version", "seed-0.0.1")

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> ModelResponse:
        from_name, to_name, value = self.get_first_tag_occurence("Choices", "Text")
        predictions = [
            PredictionValue(
                result=[
                    {"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": ["Negative"]}}
                ],
                score=0.25,
            )
            for _ in tasks
        ]
        return ModelResponse(predictions=predictions)


class SeedDicts(LabelStudioMLBase):
    """Seed-era: a list of dicts, one per task, without model_version or score."""

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        return [
            {
                "result": [
                    {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}
                ]
            }
            for _ in tasks
        ]


class SeedResultLists(LabelStudioMLBase):
    """Seed-era: per task a bare list of result items, or a one-item list of prediction dicts."""

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[list[dict]]:
        item = {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}
        return [[item] if i % 2 == 0 else [{"result": [item], "score": 0.5}] for i, _ in enumerate(tasks)]


class Inline(Echo):
    inline_predict = True


class Threaded(Echo):
    inline_predict = False
