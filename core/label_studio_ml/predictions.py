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


def _pydantic_model(value: Any) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(value, pydantic.BaseModel)


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


def normalize_prediction(raw: Any) -> dict[str, Any]:
    """One task's prediction as a plain dict ``{result, score, ...}`` (its own keys kept)."""
    if isinstance(raw, list) and raw and (isinstance(raw[0], dict) and "result" in raw[0] or _pydantic_model(raw[0])):
        raw = raw[0]  # several predictions for one task: LS stores the first
    objects = sys.modules.get("label_studio_sdk.label_interface.objects")
    if objects is not None and type(raw) is objects.PredictionValue:
        # its fields as they are (model_dump took ~3 us each, 0.3 ms of a 100-task request); its regions are
        # serialized below, as its own serializer would
        raw = raw.__dict__
    elif _pydantic_model(raw):
        raw = raw.model_dump()
    if isinstance(raw, dict):
        if "result" not in raw:
            raise TypeError("prediction dict has no 'result' key")
        out = dict(raw)
        result = out["result"] or []
        if objects is not None and any(not isinstance(item, dict) for item in result):
            result = objects.serialize_regions(result)  # the sdk's Regions (``control.label(...)``)
        out["result"] = result
        out.setdefault("score", None)
        return out
    if isinstance(raw, list):
        return {"result": raw, "score": None}
    raise TypeError(f"unsupported prediction type {type(raw).__name__}")
