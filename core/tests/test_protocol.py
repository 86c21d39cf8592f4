"""protocol.py: parsing of LS bodies, directly and through the app (400 malformed, 422 wrong shape)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fakes import CONFIG

from label_studio_ml.engine.protocol import (
    MAX_JSON_DEPTH,
    PredictRequest,
    SetupRequest,
    WebhookEvent,
    loads,
    parse_extra_params,
    parse_project,
)
from label_studio_ml.errors import InvalidInput, InvalidShape


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2.1795797692", "2"),
        ("42", "42"),
        (42, "42"),
        ({"id": 7, "title": "x"}, "7"),
        ("007.1", "7"),
        (" 3 ", "3"),
        (None, None),
        ("", None),
    ],
)
def test_project_uid_forms(value: Any, expected: str | None) -> None:
    assert parse_project(value) == expected


@pytest.mark.parametrize(
    "value, error",
    [
        ("abc.1795797692", InvalidInput),
        ("2x", InvalidInput),
        ("³", InvalidInput),
        ("٣.1", InvalidInput),
        (".5", InvalidInput),
        ("-1.5", InvalidInput),
        (True, InvalidShape),
        (4.5, InvalidShape),
        ([1], InvalidShape),
        ({"title": "no id"}, InvalidShape),
    ],
)
def test_malformed_project(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_project(value)


def test_extra_params_forms() -> None:
    assert parse_extra_params({"a": 1}) == {"a": 1}
    assert parse_extra_params('{"a": [1, 2]}') == {"a": [1, 2]}
    assert parse_extra_params(None) is None and parse_extra_params("") is None
    for garbage in ("{not json", "[1, 2]", '"str"', 5, ["a"]):
        with pytest.raises(InvalidShape):
            parse_extra_params(garbage)


def test_setup_request_minimal_and_full() -> None:
    minimal = SetupRequest.parse({"schema": CONFIG, "project": "42"})
    assert (minimal.project, minimal.schema, minimal.hostname, minimal.access_token) == ("42", CONFIG, None, None)
    full = SetupRequest.parse(
        {
            "project": "2.1795797692",
            "schema": CONFIG,
            "hostname": "http://ls:8080",
            "access_token": "tok-123456",
            "extra_params": '{"k": "v"}',
        }
    )
    assert full.extra_params == {"k": "v"} and full.hostname == "http://ls:8080"
    assert "tok-123456" not in repr(full), "tokens stay out of reprs (and so out of logs)"
    assert SetupRequest.parse({"hostname": "localhost:8080"}).hostname is None  # no scheme: unusable
    assert SetupRequest.parse({"label_config": CONFIG}).schema == CONFIG
    with pytest.raises(InvalidShape):
        SetupRequest.parse({"schema": 5})


def test_predict_request_parsing() -> None:
    parsed = PredictRequest.parse(
        {
            "tasks": [{"id": 1, "data": {"text": "x"}, "project": 9}],
            "params": {"login": None, "context": {"result": []}, "hostname": "h"},
        }
    )
    assert parsed.project == "9", "falls back to tasks[0].project"
    assert parsed.context == {"result": []} and parsed.params == {"login": None, "hostname": "h"}
    assert PredictRequest.parse({"tasks": [{"data": {}}], "params": None}).params == {}
    assert PredictRequest.parse({"tasks": [{"data": {}}], "label_config": ""}).label_config is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"tasks": None},
        {"tasks": "x"},
        {"tasks": []},
        {"tasks": [1]},
        {"tasks": [{"id": 1}]},
        {"tasks": [{"data": "text"}]},
        {"tasks": [{"data": {}}], "params": []},
        {"tasks": [{"data": {}}], "params": {"context": "x"}},
        {"tasks": [{"data": {}}], "label_config": 3},
        [],
        "tasks",
    ],
)
def test_predict_wrong_shapes(body: Any) -> None:
    with pytest.raises(InvalidShape):
        PredictRequest.parse(body)


def test_webhook_event_parsing() -> None:
    event = WebhookEvent.parse({"action": "ANNOTATION_CREATED", "project": {"id": 2, "label_config": CONFIG}})
    assert (event.action, event.project, event.label_config) == ("ANNOTATION_CREATED", "2", CONFIG)
    assert WebhookEvent.parse({"action": "X"}).project is None
    for body in ({}, {"action": ""}, {"action": 5}, []):
        with pytest.raises(InvalidShape):
            WebhookEvent.parse(body)


def _nested(depth: int) -> bytes:
    return b'{"a": ' * depth + b"1" + b"}" * depth


def test_depth_at_the_limit_is_exact() -> None:
    """The level count (gc.get_referents) is the depth or one more: at the limit's edge the exact walk decides."""
    for leaf in (b"1", b"{}", b"[]", b'"s"'):
        for inner in (b'{"a": ', b"["):
            close = b"}" if inner.startswith(b"{") else b"]"
            at_limit = inner * (MAX_JSON_DEPTH - 1) + leaf + close * (MAX_JSON_DEPTH - 1)
            assert loads(at_limit) is not None, (leaf, inner)
            deeper = inner * MAX_JSON_DEPTH + leaf + close * MAX_JSON_DEPTH
            if leaf in (b"{}", b"[]"):  # the empty container is one level more
                with pytest.raises(InvalidInput):
                    loads(deeper)
            else:
                assert loads(deeper) is not None
                with pytest.raises(InvalidInput):
                    loads(inner + deeper + close)


def test_loads_limits() -> None:
    assert loads(_nested(MAX_JSON_DEPTH - 1)) is not None
    for body in (_nested(MAX_JSON_DEPTH + 1), b"[" * 200_000 + b"]" * 200_000, b"", b"{oops", b'{"text": "\xff\xfe"}'):
        with pytest.raises(InvalidInput):
            loads(body)


# --- through the app -------------------------------------------------------------------------------


def _post(client: Any, path: str, body: bytes) -> Any:
    return client.post(path, content=body, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("path", ["/setup", "/predict", "/webhook"])
@pytest.mark.parametrize(
    "body, status",
    [
        (b"", 400),
        (b"{not json", 400),
        (b'{"text": "\xff"}', 400),
        (_nested(200), 400),
        (b"[" * 100_000 + b"]" * 100_000, 400),
        (b"[1, 2]", 422),
        (b'"a string"', 422),
    ],
)
def test_bad_bodies_through_the_app(client: Any, path: str, body: bytes, status: int) -> None:
    reply = _post(client, path, body)
    assert reply.status_code == status
    payload = reply.json()
    assert payload["status"] == status and isinstance(payload["error"], str) and payload["error"]
    assert "Traceback" not in reply.text


@pytest.mark.parametrize(
    "body",
    [
        {"project": "abc.123", "schema": CONFIG},
        {"project": "2.1", "schema": CONFIG, "extra_params": "{garbage"},
        {"project": "2.1", "schema": "<View><Text"},
    ],
)
def test_setup_rejections(client: Any, body: dict[str, Any]) -> None:
    reply = client.post("/setup", json=body)
    assert reply.status_code in (400, 422) and reply.json()["error"]


def test_setup_accepts_extra_params_object_string_and_null(client: Any) -> None:
    for extra in ({"threshold": 0.5}, json.dumps({"threshold": 0.7}), None):
        reply = client.post("/setup", json={"project": "5.1", "schema": CONFIG, "extra_params": extra})
        assert reply.status_code == 200, reply.text
    assert client.runtime.store.get("5", "extra_params") == {"threshold": 0.7}, "null keeps the stored params"


@pytest.mark.parametrize(
    "body, status",
    [
        ({"project": "1.1", "label_config": CONFIG}, 422),
        ({"tasks": "x", "label_config": CONFIG}, 422),
        ({"tasks": [], "label_config": CONFIG}, 422),
        ({"tasks": [{"id": 1}], "label_config": CONFIG}, 422),
        ({"tasks": [{"id": 1, "data": {"text": "x"}}], "project": "bad.1", "label_config": CONFIG}, 400),
        ({"tasks": [{"id": 1, "data": {"text": "x"}}], "label_config": CONFIG, "params": {"context": 3}}, 422),
    ],
)
def test_predict_rejections(client: Any, body: dict[str, Any], status: int) -> None:
    reply = client.post("/predict", json=body)
    assert reply.status_code == status and reply.json()["status"] == status
