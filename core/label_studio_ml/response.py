"""``ModelResponse``, the upstream SDK's return type for ``predict`` (needs the ``sdk`` extra).

A pydantic model as upstream has it: ``predictions`` holds label-studio-sdk ``PredictionValue``s (dicts
are validated into them), per task one or a list of several. Core never imports this module itself
(see predictions.py), so services that don't use it don't pay for the sdk at start-up.

pydantic validates a prediction dict into a ``PredictionValue`` in ~6 us, most of it trying each result
item against the sdk's ``Region`` too (``result`` is ``List[Union[Dict[str, Any], Region]]``): 0.6 ms of
a 100-task response, more than the rest of the request. So predictions that are plainly well formed
(dicts and lists of exactly the types pydantic would keep as they are) are built here directly, into
the very objects pydantic makes; anything else, invalid input included, goes through pydantic as before.
"""

from __future__ import annotations

from typing import Any

from .sdk_extra import require

# first: without the extra, this is the error to see (pydantic comes with the sdk)
PredictionValue = require("label_studio_sdk.label_interface.objects", "ModelResponse").PredictionValue

from pydantic import BaseModel, ConfigDict, ValidatorFunctionWrapHandler, field_validator  # noqa: E402

#: what ``predictions`` holds for one task: a prediction, or several
SingleTaskPredictions = list[PredictionValue] | PredictionValue

_FIELDS = frozenset(PredictionValue.model_fields)
_DEFAULT_VERSION = PredictionValue.model_fields["model_version"].default
_DEFAULT_SCORE = PredictionValue.model_fields["score"].default
_new_prediction_value = PredictionValue.__new__
_set = object.__setattr__  # past BaseModel.__setattr__, which validates and tracks fields set


class ModelResponse(BaseModel):
    """Predictions for the tasks of one ``/predict``, in task order, and the version that made them."""

    model_config = ConfigDict(protected_namespaces=())  # a field may be called model_version

    model_version: str | None = None
    predictions: list[SingleTaskPredictions]

    @field_validator("predictions", mode="wrap")
    @classmethod
    def _well_formed_first(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        built = _built_predictions(value)
        return handler(value) if built is None else built

    def has_model_version(self) -> bool:
        return bool(self.model_version)

    def update_predictions_version(self) -> None:
        """Give every prediction without a version of its own this response's version."""
        for item in self.predictions:
            for prediction in item if isinstance(item, list) else [item]:
                if not prediction.model_version:
                    prediction.model_version = self.model_version

    def set_version(self, version: str) -> None:
        self.model_version = version
        self.update_predictions_version()


def _built_predictions(value: Any) -> list[Any] | None:
    """``predictions`` as pydantic would validate them, or None unless every one is plainly well formed."""
    if type(value) is not list:
        return None
    built: list[Any] = []
    for item in value:
        if type(item) is list:  # several predictions for one task
            several = [_prediction_value(prediction) for prediction in item]
            if any(prediction is None for prediction in several):  # not ``in``: that calls __eq__
                return None
            built.append(several)
        elif (prediction := _prediction_value(item)) is not None:
            built.append(prediction)
        else:
            return None
    return built


def _prediction_value(raw: Any) -> Any:
    """A ``PredictionValue`` (kept as it is, as pydantic keeps it) or one made of a dict whose result is a
    list of dicts with str keys and whose score is a float or None, exactly as pydantic makes it: the
    result list and its dicts copied one level deep, fields in declared order, unknown keys dropped,
    the fields given counted as set. None for anything else."""
    if type(raw) is PredictionValue:
        return raw
    if type(raw) is not dict or type(result := raw.get("result")) is not list:
        return None
    score = raw.get("score", _DEFAULT_SCORE)
    if score is not None and type(score) is not float:
        return None
    items = []
    for item in result:
        if type(item) is not dict:
            return None
        for key in item:
            if type(key) is not str:
                return None
        items.append(item.copy())
    value = _new_prediction_value(PredictionValue)
    # what pydantic's model_construct sets, without its per-field loop over defaults and aliases
    version = raw.get("model_version", _DEFAULT_VERSION)
    _set(value, "__dict__", {"model_version": version, "score": score, "result": items})
    _set(value, "__pydantic_fields_set__", _FIELDS & raw.keys())
    _set(value, "__pydantic_extra__", None)
    _set(value, "__pydantic_private__", None)
    return value
