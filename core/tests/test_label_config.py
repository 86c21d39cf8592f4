"""label_config.py against label-studio-sdk as the oracle (parse_config and first-occurrence lookups)."""

from __future__ import annotations

import itertools

import pytest
from configs import ALL, BRUSH_SAM, DYNAMIC_LABELS, IMAGE_BBOX, NER, NESTED_VIEWS, OCR, REPEATER, TEXT_CLASSIFICATION
from label_studio_sdk._extensions.label_studio_tools.core.label_config import parse_config as sdk_parse_config
from label_studio_sdk.label_interface import LabelInterface

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.errors import LabelConfigError
from label_studio_ml.results.label_config import LabelConfig, map_label, parse_config


@pytest.mark.parametrize("name", sorted(ALL))
def test_parse_config_equals_the_sdk(name: str) -> None:
    ours = parse_config(ALL[name])
    assert ours == sdk_parse_config(ALL[name])
    assert ours, "every sample config has controls"


def test_parse_config_details_the_sdk_also_has() -> None:
    parsed = parse_config(REPEATER)
    assert parsed["labels_{{idx}}"]["regex"] == {"{{idx}}": ".*"}
    dynamic = parse_config(DYNAMIC_LABELS)
    assert dynamic["dyn"]["dynamic_labels"] is True and dynamic["dyn"]["labels"] == []
    assert "dynamic_labels" not in dynamic["static"]
    text = parse_config(TEXT_CLASSIFICATION)["sentiment"]
    assert text["labels"] == ["Positive", "Negative", "neu"]  # alias wins over value
    assert text["labels_attrs"]["Negative"]["predicted_values"] == "neg, bad"
    nested = parse_config(NESTED_VIEWS)
    assert nested["topic"]["labels"] == ["Sports", "Politics", "Tech"]  # choices nested in Views
    assert "filter" not in nested  # Filter has toName but is not a control


def test_parse_config_returns_a_copy() -> None:
    first = parse_config(NER)
    first["label"]["labels"].append("MUTATED")
    assert parse_config(NER)["label"]["labels"] == ["PER", "ORG", "LOC", "MISC"]


def test_empty_and_invalid_configs() -> None:
    assert parse_config("") == {} and parse_config(None) == {}
    with pytest.raises(LabelConfigError, match="not valid XML"):
        LabelConfig("<View><Text name='t'")
    with pytest.raises(LabelConfigError, match="DOCTYPE"):
        LabelConfig('<!DOCTYPE x [<!ENTITY a "b">]><View/>')


CONTROL_QUERIES = [
    "Choices",
    "Labels",
    "RectangleLabels",
    "KeyPointLabels",
    "BrushLabels",
    "TextArea",
    "Rectangle",
    "Polygon",
    "PolygonLabels",
    ("BrushLabels", "KeyPointLabels"),
    ("KeyPointLabels", "RectangleLabels"),
    "Rating",
]
OBJECT_QUERIES = ["Text", "Image", "HyperText", ("Text", "HyperText"), ("HyperText", "Text")]


def _sdk_first(config: str, control: str | tuple[str, ...], obj: str | tuple[str, ...]) -> tuple[str, str, str] | None:
    try:
        return LabelInterface(config).get_first_tag_occurence(control, obj)
    except ValueError:
        return None


@pytest.mark.parametrize("name", sorted(ALL))
def test_find_first_occurrence_matches_the_sdk(name: str) -> None:
    config = LabelConfig(ALL[name])
    checked = 0
    for control, obj in itertools.product(CONTROL_QUERIES, OBJECT_QUERIES):
        expected = _sdk_first(ALL[name], control, obj)
        pair = config.find(control, obj, required=False)
        got = None if pair is None else (pair.from_name, pair.to_name, pair.data_key)
        assert got == expected, (control, obj)
        checked += expected is not None
    if name not in ("audio_paragraphs",):
        assert checked, "at least one query matches each config"


def test_seed_lookup_get_first_tag_occurence_matches_the_sdk() -> None:
    model = LabelStudioMLBase(label_config=BRUSH_SAM)
    for control in (("BrushLabels", "KeyPointLabels"), "KeyPointLabels", ("RectangleLabels",)):
        assert model.get_first_tag_occurence(control, "Image") == _sdk_first(BRUSH_SAM, control, "Image")
    with pytest.raises(ValueError):
        model.get_first_tag_occurence("Choices", "Text")


def test_find_rules() -> None:
    config = LabelConfig(BRUSH_SAM)
    # document order decides between several wanted types, not the order of the query
    assert config.find(["KeyPointLabels", "BrushLabels"]).from_name == "tag"
    # case-insensitive type names
    assert config.find("keypointlabels", "image").from_name == "tag2"
    # name filter is a prefix of the control name
    assert config.find(["BrushLabels", "KeyPointLabels", "RectangleLabels"], name_filter="tag3").from_name == "tag3"
    # within a multi-object toName, the first object of the wanted type wins
    nested = LabelConfig(NESTED_VIEWS)
    assert nested.find("Choices").to_name == "text1"
    html = nested.find("Choices", "HyperText")
    assert (html.to_name, html.data_key, html.object_type) == ("html", "html", "HyperText")
    assert html.labels == ("Sports", "Politics", "Tech") and html.result_type == "choices"
    with pytest.raises(LabelConfigError, match="no choices control on image"):
        nested.find("Choices", "Image")
    assert nested.find("Choices", "Image", required=False) is None
    assert [p.from_name for p in LabelConfig(OCR).find_all(["Rectangle", "Polygon", "TextArea"])] == [
        "bbox",
        "poly",
        "transcription",
    ]


def test_control_pair_data_key_and_labels() -> None:
    pair = LabelConfig(IMAGE_BBOX).find("RectangleLabels", "Image")
    assert (pair.from_name, pair.to_name, pair.data_key, pair.type) == ("label", "image", "image", "RectangleLabels")
    assert pair.labels == ("Airplane", "Car")
    repeater = LabelConfig(REPEATER).find("RectangleLabels")
    assert repeater.data_key == "images[{{idx}}].url"


def test_tag_attributes() -> None:
    config = LabelConfig(
        '<View><Image name="img" value="$image"/>'
        '<RectangleLabels name="box" toName="img" model_path="best.pt" model_score_threshold="0.3"/></View>'
    )
    assert config.attrs("box") == {
        "name": "box",
        "toName": "img",
        "model_path": "best.pt",
        "model_score_threshold": "0.3",
    }
    assert config.attrs("img")["value"] == "$image"
    assert config.attrs("missing") == {} and LabelConfig("").attrs("box") == {}


def test_map_label() -> None:
    pair = LabelConfig(IMAGE_BBOX).find("RectangleLabels")
    assert pair.map_label("truck") == "Car"  # predicted_values
    assert pair.map_label("bus") == "Car"
    assert pair.map_label("Airplane") == "Airplane"  # exact
    assert pair.map_label("airplane") == "Airplane"  # case-insensitive
    assert pair.map_label("CAR") == "Car"
    assert pair.map_label("boat") is None  # dropped
    assert pair.map_label("tru") is None  # predicted_values are whole names, not substrings
    ner = LabelConfig(NER).find("Labels")
    assert ner.map_label("PERSON") == "PER" and ner.map_label(" person") is None
    # whitespace around predicted_values entries is trimmed
    text = LabelConfig(TEXT_CLASSIFICATION).find("Choices")
    assert text.map_label("bad") == "Negative" and text.map_label("neg") == "Negative"
    assert text.map_label("NEU") == "neu"  # an alias is the label the config knows


def test_map_label_precedence() -> None:
    # predicted_values beat an exact match of another label (upstream order)
    labels = ["Car", "Truck"]
    attrs = {"Car": {"value": "Car", "predicted_values": "Truck"}, "Truck": {"value": "Truck"}}
    assert map_label("Truck", labels, attrs) == "Car"
    # exact beats case-insensitive
    assert map_label("cat", ["Cat", "cat"]) == "cat"
    assert map_label("x", []) is None
