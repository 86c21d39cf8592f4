"""label_studio_ml.response conformance: ModelResponse versioning and serialisation as upstream has them."""

from __future__ import annotations

import json

import pytest
from label_studio_sdk.label_interface import LabelInterface
from label_studio_sdk.label_interface.objects import PredictionValue
from pydantic import BaseModel, ValidationError

import label_studio_ml
from label_studio_ml.predictions import normalize_prediction, unpack_response
from label_studio_ml.response import ModelResponse, SingleTaskPredictions

ITEM = {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}


@pytest.fixture
def predictions() -> list[PredictionValue]:
    return [PredictionValue(model_version="mine-0.1", score=0.1, result=[ITEM]), PredictionValue(score=0.2, result=[])]


def test_it_is_a_pydantic_model_over_the_sdks_prediction_value() -> None:
    assert issubclass(ModelResponse, BaseModel)
    assert label_studio_ml.ModelResponse is ModelResponse and label_studio_ml.PredictionValue is PredictionValue
    assert SingleTaskPredictions == list[PredictionValue] | PredictionValue
    with pytest.raises(ValidationError):
        ModelResponse()  # predictions are required
    with pytest.raises(ValidationError):
        ModelResponse(predictions=[{"score": 0.3}])  # a prediction needs a result


def test_dicts_become_prediction_values_and_objects_are_kept(predictions: list[PredictionValue]) -> None:
    response = ModelResponse(predictions=[*predictions, {"result": [ITEM], "score": 0.9}, [{"result": []}]])
    assert response.predictions[0] is predictions[0], "the model's own objects, not copies"
    assert isinstance(response.predictions[2], PredictionValue) and response.predictions[2].score == 0.9
    assert isinstance(response.predictions[3], list) and isinstance(response.predictions[3][0], PredictionValue)


def test_has_model_version(predictions: list[PredictionValue]) -> None:
    response = ModelResponse(predictions=predictions)
    assert not response.has_model_version()
    response.model_version = ""
    assert not response.has_model_version()
    response.model_version = "1.0"
    assert response.has_model_version()


def test_update_predictions_version_fills_only_missing_ones(predictions: list[PredictionValue]) -> None:
    nested = PredictionValue(result=[])
    response = ModelResponse(predictions=[*predictions, [nested]])
    response.model_version = "1.0"
    response.update_predictions_version()
    assert [predictions[0].model_version, predictions[1].model_version, nested.model_version] == [
        "mine-0.1",
        "1.0",
        "1.0",
    ]


def test_set_version(predictions: list[PredictionValue]) -> None:
    response = ModelResponse(predictions=predictions)
    response.set_version("2.0")
    assert response.model_version == "2.0"
    assert [p.model_version for p in predictions] == ["mine-0.1", "2.0"]


def test_model_dump_and_json(predictions: list[PredictionValue]) -> None:
    response = ModelResponse(model_version="1.0", predictions=predictions)
    dumped = response.model_dump()
    assert dumped == {
        "model_version": "1.0",
        "predictions": [
            {"model_version": "mine-0.1", "score": 0.1, "result": [ITEM]},
            {"model_version": None, "score": 0.2, "result": []},
        ],
    }
    assert json.loads(response.model_dump_json()) == dumped
    assert ModelResponse.model_validate(dumped).model_dump() == dumped


def test_sdk_regions_serialise_to_ls_results() -> None:
    config = (
        '<View><Text name="text" value="$t"/><Choices name="label" toName="text"><Choice value="A"/></Choices></View>'
    )
    region = LabelInterface(config=config).get_control("label").label(["A"])
    dumped = ModelResponse(predictions=[PredictionValue(result=[region])]).model_dump()
    item = dumped["predictions"][0]["result"][0]
    assert {k: item[k] for k in ("from_name", "to_name", "type")} == {
        "from_name": "label",
        "to_name": "text",
        "type": "choices",
    }
    assert item["value"]["choices"] == ["A"] and item["id"]
    # what the server does with the same objects (see predictions.py): the same LS shape
    items, version = unpack_response(ModelResponse(model_version="v", predictions=[{"result": [region]}]))
    assert version == "v" and normalize_prediction(items[0])["result"][0]["value"]["choices"] == ["A"]
    assert normalize_prediction({"result": [region], "score": 0.5})["result"][0]["type"] == "choices"
