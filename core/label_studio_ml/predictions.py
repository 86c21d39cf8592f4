"""What a model's ``predict`` returns, turned into the wire shape: one dict per task with ``result``,
``score`` and, when the model set one, its own ``model_version``.

Accepted, as the upstream SDK accepts them: a list (or a ``ModelResponse``) of dicts with ``result``,
bare lists of result items, ``PredictionValue`` objects (any pydantic model) or a list of several
predictions for one task (the first is served). Neither pydantic nor label-studio-sdk is imported
here: an object can only be one of theirs when its module was imported already.
"""

from __future__ import annotations

import sys
from typing import Any


def unpack_response(raw: Any) -> tuple[list[Any], str | None]:
    """The per-task items of a predict return value, and the version a ``ModelResponse`` carries."""
    response = sys.modules.get("label_studio_ml.response")
    if response is not None and isinstance(raw, response.ModelResponse):
        return list(raw.predictions), raw.model_version or None
    if raw is None:
        return [], None
    if isinstance(raw, dict) and isinstance(raw.get("predictions"), list):  # a dumped ModelResponse
        return list(raw["predictions"]), raw.get("model_version") or None
    return list(raw), None


def normalize_predictions(items: list[Any]) -> list[dict[str, Any]]:
    """Each task's prediction as a plain dict ``{result, score, ...}`` (its own keys kept), a new dict
    that the caller may change. The optional libraries' modules are looked up once per batch."""
    objects = sys.modules.get("label_studio_sdk.label_interface.objects")
    prediction_value = objects.PredictionValue if objects is not None else None
    pydantic = sys.modules.get("pydantic")
    base_model = pydantic.BaseModel if pydantic is not None else None
    out = []
    for raw in items:
        if (
            type(raw) is list
            and raw
            and (type(raw[0]) is dict and "result" in raw[0] or type(raw[0]) is prediction_value)
        ):
            raw = raw[0]  # several predictions for one task: LS stores the first
        if type(raw) is dict:
            prediction = raw.copy()
        elif prediction_value is not None and type(raw) is prediction_value:
            # its fields as they are (model_dump took ~3 us each, 0.3 ms of a 100-task request); its regions are
            # serialized below, as its own serializer would
            prediction = raw.__dict__.copy()
        else:
            prediction = _unusual(raw, base_model)
        if "result" not in prediction:
            raise TypeError("prediction dict has no 'result' key")
        result = prediction["result"] or []
        if objects is not None:
            for region in result:
                if type(region) is not dict:  # the sdk's Regions (``control.label(...)``)
                    result = objects.serialize_regions(result)
                    break
        prediction["result"] = result
        if "score" not in prediction:
            prediction["score"] = None
        out.append(prediction)
    return out


def normalize_prediction(raw: Any) -> dict[str, Any]:
    """One task's prediction as a plain dict (see ``normalize_predictions``)."""
    return normalize_predictions([raw])[0]


def _unusual(raw: Any, base_model: type | None) -> dict[str, Any]:
    """A prediction given as a dict subclass, any other pydantic model, several of those for one task,
    or a bare result list."""
    if (
        isinstance(raw, list)
        and raw
        and (
            isinstance(raw[0], dict) and "result" in raw[0] or base_model is not None and isinstance(raw[0], base_model)
        )
    ):
        raw = raw[0]
    if base_model is not None and isinstance(raw, base_model):
        return raw.model_dump()
    if isinstance(raw, dict):
        return dict(raw)
    if isinstance(raw, list):
        return {"result": raw, "score": None}
    raise TypeError(f"unsupported prediction type {type(raw).__name__}")
