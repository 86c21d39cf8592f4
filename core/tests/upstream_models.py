"""Backends written the way the upstream SDK documents them (its ``create`` template and examples):
``label_studio_ml.model`` / ``.response`` imports, ``self.label_interface``, ``PredictionValue``s,
versions stored with ``self.set("model_version", ...)``. The conformance tests serve them unchanged."""

from __future__ import annotations

from typing import Any

from label_studio_sdk.label_interface.objects import PredictionValue

from label_studio_ml.model import LabelStudioMLBase
from label_studio_ml.response import ModelResponse

CONFIG = """<View><Text name="text" value="$text"/><Choices name="label" toName="text">
<Choice value="Positive"/><Choice value="Negative"/></Choices></View>"""


class Template(LabelStudioMLBase):
    """The shape of upstream's ``label-studio-ml create`` model: a version in setup(), no predictions yet."""

    def setup(self) -> None:
        self.set("model_version", "0.0.1")

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> ModelResponse:
        return ModelResponse(predictions=[])

    def fit(self, event: str, data: dict, **kwargs: Any) -> None:
        self.set("my_data", "my_new_data_value")


class Interactive(LabelStudioMLBase):
    """Reads the config through label_interface and answers Regions made by the sdk's control tags."""

    def setup(self) -> None:
        self.set("model_version", f"{type(self).__name__}-v0.0.1")

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> ModelResponse:
        from_name, _, value = self.label_interface.get_first_tag_occurence("Choices", "Text")
        control = self.label_interface.get_control(from_name)
        predictions = []
        for task in tasks:
            text = str(task["data"][value]).lower()
            choice = "Negative" if "bad" in text else "Positive"
            predictions.append(PredictionValue(result=[control.label([choice])], score=0.5))
        return ModelResponse(predictions=predictions)


class OwnVersions(LabelStudioMLBase):
    """Stamps versions itself: on a dict, on a PredictionValue, or only on the ModelResponse."""

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> Any:
        item = {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}
        mode = tasks[0]["data"].get("mode")
        if mode == "dicts":
            return [{"result": [item], "score": 0.7, "model_version": "dict-v7"} for _ in tasks]
        if mode == "values":  # a bare list of PredictionValues, no ModelResponse around it
            return [PredictionValue(result=[item], model_version="value-v3") for _ in tasks]
        predictions: list[Any] = [PredictionValue(result=[item]) for _ in tasks]
        predictions[0].model_version = "own-v1"
        return ModelResponse(model_version="response-v2", predictions=predictions)


class StartTrainingOnly(LabelStudioMLBase):
    """Narrows TRAIN_EVENTS: annotation events must not start a job."""

    TRAIN_EVENTS = ("START_TRAINING",)

    def fit(self, event: str, data: dict, **kwargs: Any) -> None:
        self.set("trained_on", event)
