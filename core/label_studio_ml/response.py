"""``ModelResponse``, the upstream SDK's return type for ``predict`` (needs the ``sdk`` extra).

A pydantic model as upstream has it: ``predictions`` holds label-studio-sdk ``PredictionValue``s (dicts
are validated into them), per task one or a list of several. Core never imports this module itself
(see predictions.py), so services that don't use it don't pay for the sdk at start-up.
"""

from .sdk_extra import require

# first: without the extra, this is the error to see (pydantic comes with the sdk)
PredictionValue = require("label_studio_sdk.label_interface.objects", "ModelResponse").PredictionValue

from pydantic import BaseModel, ConfigDict  # noqa: E402

#: what ``predictions`` holds for one task: a prediction, or several
SingleTaskPredictions = list[PredictionValue] | PredictionValue


class ModelResponse(BaseModel):
    """Predictions for the tasks of one ``/predict``, in task order, and the version that made them."""

    model_config = ConfigDict(protected_namespaces=())  # a field may be called model_version

    model_version: str | None = None
    predictions: list[SingleTaskPredictions]

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
