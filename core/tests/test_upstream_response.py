"""label_studio_ml.response conformance: ModelResponse versioning and serialisation as upstream has them."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import pytest
from label_studio_sdk.label_interface import LabelInterface
from label_studio_sdk.label_interface.objects import PredictionValue
from pydantic import BaseModel, TypeAdapter, ValidationError

import label_studio_ml
from label_studio_ml.predictions import normalize_prediction, normalize_predictions, unpack_response
from label_studio_ml.response import ModelResponse, SingleTaskPredictions, _built_predictions

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


class StrKey(str):
    pass


# The fast path (response.py builds plainly well-formed predictions itself): everything it makes must equal
# what pydantic makes of the same input, and everything else must still go through pydantic.
PYDANTIC = TypeAdapter(list[SingleTaskPredictions])  # the full validation, without ModelResponse's fast path
WELL_FORMED = [
    {"result": [ITEM], "score": 0.9},
    {"result": []},
    {"result": [ITEM, {"id": "r2", "value": {"x": 1}}], "model_version": "mine-2", "score": None},
    {"result": [ITEM], "score": 0.5, "task": 7},  # unknown keys are dropped, as pydantic drops them
    {"model_version": 3, "result": [ITEM]},
    [{"result": [ITEM], "score": 0.1}, {"result": []}],  # several predictions for one task
    [],
]
SLOW_BUT_VALID = [
    {"result": [ITEM], "score": 1},  # pydantic makes it 1.0
    {"result": [ITEM], "score": "0.25"},
    {"result": [ITEM], "score": True},
    {"result": (ITEM,)},
    {"result": None},
    {"result": [OrderedDict(ITEM)]},
    {"result": [{StrKey("from_name"): "label"}]},  # pydantic makes the key a plain str
]
INVALID = [
    {"score": 0.3},  # no result
    {"result": "Positive"},
    {"result": 5},
    {"result": [ITEM], "score": "high"},
    {"result": [ITEM], "score": {}},
    {"result": [5]},
    {"result": [{1: "a"}]},
    "Positive",
    [{"result": [ITEM]}, {"result": "x"}],
]


def _state(value: Any) -> Any:
    if isinstance(value, list):
        return [_state(item) for item in value]
    return type(value), value.__dict__, value.model_fields_set, value.__pydantic_extra__, value.__pydantic_private__


@pytest.mark.parametrize("raw", WELL_FORMED + SLOW_BUT_VALID, ids=repr)
def test_predictions_are_what_pydantic_makes_of_them(raw: Any) -> None:
    built = ModelResponse(predictions=[raw, raw]).predictions
    assert _state(built) == _state(PYDANTIC.validate_python([raw, raw]))


@pytest.mark.parametrize("raw", WELL_FORMED, ids=repr)
def test_well_formed_predictions_take_the_fast_path(raw: Any) -> None:
    assert _built_predictions([raw]) is not None
    dumped = PYDANTIC.dump_python(PYDANTIC.validate_python([raw]))
    assert ModelResponse(predictions=[raw]).model_dump() == {"model_version": None, "predictions": dumped}


@pytest.mark.parametrize("raw", SLOW_BUT_VALID + INVALID, ids=repr)
def test_anything_else_goes_through_pydantic(raw: Any) -> None:
    assert _built_predictions([raw]) is None


@pytest.mark.parametrize("predictions", [[raw] for raw in INVALID] + [{"result": [ITEM]}, "x", None, 5], ids=repr)
def test_invalid_predictions_raise_pydantics_error(predictions: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        ModelResponse(predictions=predictions)
    with pytest.raises(ValidationError) as expected:
        PYDANTIC.validate_python(predictions)
    assert [error["type"] for error in caught.value.errors()] == [error["type"] for error in expected.value.errors()]


def test_results_are_copies_as_pydantic_makes_them() -> None:
    """A model may build every task's result from one template and then change a response's items."""
    template = [dict(ITEM)]
    response = ModelResponse(predictions=[{"result": template}, {"result": template}])
    response.predictions[0].result[0]["id"] = "first"
    response.predictions[0].result.append({"id": "extra"})
    assert template == [ITEM] and "id" not in response.predictions[1].result[0]
    assert response.predictions[1].result[0]["value"] is ITEM["value"], "one level deep, as pydantic copies"


def test_prediction_values_and_regions_are_kept_as_they_are(predictions: list[PredictionValue]) -> None:
    config = (
        '<View><Text name="text" value="$t"/><Choices name="label" toName="text"><Choice value="A"/></Choices></View>'
    )
    region = LabelInterface(config=config).get_control("label").label(["A"])
    response = ModelResponse(predictions=[predictions[0], [predictions[1]], {"result": [region, ITEM]}])
    assert response.predictions[0] is predictions[0] and response.predictions[1][0] is predictions[1]
    assert response.predictions[2].result[0] is region
    response.set_version("v3")
    assert [predictions[0].model_version, predictions[1].model_version, response.predictions[2].model_version] == [
        "mine-0.1",
        "v3",
        "v3",
    ]


def test_validation_from_json_and_dumps_round_trip() -> None:
    text = json.dumps({"model_version": "v", "predictions": [{"result": [ITEM], "score": 0.5}, [{"result": []}]]})
    response = ModelResponse.model_validate_json(text)
    assert isinstance(response.predictions[0], PredictionValue) and response.predictions[0].result == [ITEM]
    assert (
        ModelResponse.model_validate(response.model_dump()).model_dump()
        == response.model_dump()
        == json.loads(response.model_dump_json())
    )


class Other(BaseModel):
    result: list[dict[str, Any]]
    score: float | None = None


class DictSubclass(dict):
    pass


def test_every_accepted_prediction_shape_normalizes_to_a_new_dict_in_one_batch() -> None:
    plain = {"result": [ITEM], "score": 0.5, "extra": 1}
    given = [
        plain,
        {"result": [ITEM]},  # no score
        [{"result": [ITEM], "score": 0.1}, {"result": [], "score": 0.2}],  # several for one task: the first
        PredictionValue(model_version="m-1", score=0.3, result=[ITEM]),
        [PredictionValue(score=0.4, result=[ITEM])],
        Other(result=[ITEM], score=0.6),
        [Other(result=[ITEM])],
        [ITEM],  # a bare result list
        [],
        DictSubclass(result=[ITEM], score=0.7),
        {"result": None, "score": None},
    ]
    out = normalize_predictions(given)
    assert [(p["result"], p["score"]) for p in out] == [
        ([ITEM], 0.5),
        ([ITEM], None),
        ([ITEM], 0.1),
        ([ITEM], 0.3),
        ([ITEM], 0.4),
        ([ITEM], 0.6),
        ([ITEM], None),
        ([ITEM], None),
        ([], None),
        ([ITEM], 0.7),
        ([], None),
    ]
    assert out[0]["extra"] == 1 and out[3]["model_version"] == "m-1"
    assert all(type(p) is dict for p in out) and out[0] is not plain  # the caller may change them
    out[0]["result"] = []
    assert plain["result"] == [ITEM]
    assert normalize_prediction(given[3]) == out[3]


@pytest.mark.parametrize("bad", [{"score": 0.1}, "text", 3, None])
def test_a_prediction_without_a_result_is_refused_with_its_reason(bad: Any) -> None:
    with pytest.raises(TypeError, match="no 'result' key|unsupported prediction type"):
        normalize_predictions([{"result": [ITEM]}, bad])
