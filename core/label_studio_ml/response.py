"""Prediction containers kept compatible with the seed SDK (``ModelResponse``, ``PredictionValue``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PredictionValue:
    result: list[dict[str, Any]] = field(default_factory=list)
    score: float | None = None
    model_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"result": list(self.result), "score": self.score, "model_version": self.model_version}


@dataclass
class ModelResponse:
    predictions: list[PredictionValue | dict[str, Any] | list[dict[str, Any]]] = field(default_factory=list)
    model_version: str | None = None

    def has_model_version(self) -> bool:
        return self.model_version is not None

    def update_predictions_version(self) -> None:
        for prediction in self.predictions:
            if isinstance(prediction, PredictionValue) and prediction.model_version is None:
                prediction.model_version = self.model_version

    def serialize(self) -> dict[str, Any]:
        return {"results": [p.to_dict() if isinstance(p, PredictionValue) else p for p in self.predictions]}


def normalize_prediction(raw: Any) -> dict[str, Any]:
    """One task's prediction as a plain dict ``{result, score, model_version}``.

    Accepts what seed-era models return: a PredictionValue, a dict with ``result``, or a bare list of
    result items. Anything else is a programming error in the model.
    """
    if isinstance(raw, PredictionValue):
        return raw.to_dict()
    if isinstance(raw, dict):
        if "result" not in raw:
            raise TypeError("prediction dict has no 'result' key")
        out = dict(raw)
        out.setdefault("score", None)
        return out
    if isinstance(raw, list):
        return {"result": raw, "score": None}
    raise TypeError(f"unsupported prediction type {type(raw).__name__}")
