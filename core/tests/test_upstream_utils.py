"""label_studio_ml.utils, .cache and .exceptions conformance: upstream's public functions, classes and
constants, with upstream's documented behaviour."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from label_studio_ml import cache, exceptions, utils
from label_studio_ml.model import LabelStudioMLBase
from label_studio_ml.results.label_config import parse_config
from label_studio_ml.testing.plugin import FakeLabelStudio

CHOICES = '<View><Text name="text" value="$text"/><Choices name="c" toName="text"><Choice value="A"/></Choices></View>'


def test_constants_and_get_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert utils.DATA_UNDEFINED_NAME == "$undefined$"
    for name in ("LABEL_STUDIO_THING", "HEARTEX_THING", "THING"):
        monkeypatch.delenv(name, raising=False)
    assert utils.get_env("THING", "default") == "default"
    monkeypatch.setenv("THING", "plain")
    assert utils.get_env("THING") == "plain"
    monkeypatch.setenv("HEARTEX_THING", "heartex")
    assert utils.get_env("THING") == "heartex"
    monkeypatch.setenv("LABEL_STUDIO_THING", "yes")
    assert utils.get_env("THING") == "yes" and utils.get_env("THING", is_bool=True) is True
    monkeypatch.setenv("LABEL_STUDIO_THING", "0")
    assert utils.get_env("THING", is_bool=True) is False
    monkeypatch.setenv("LABEL_STUDIO_THING", "maybe")
    with pytest.raises(ValueError):
        utils.get_env("THING", is_bool=True)


def test_single_and_first_tag_keys() -> None:
    parsed = parse_config(CHOICES)
    assert utils.get_single_tag_keys(parsed, "Choices", "Text") == ("c", "text", "text", ["A"])
    with pytest.raises(AssertionError):
        utils.get_single_tag_keys(parsed, "Labels", "Text")
    two = parse_config(CHOICES.replace("</View>", '<TextArea name="t2" toName="text"/></View>'))
    with pytest.raises(AssertionError):
        utils.get_single_tag_keys(two, "Choices", "Text")
    assert utils.get_first_tag_keys(two, "TextArea", "Text") == ("t2", two["t2"])
    assert utils.get_first_tag_keys(two, "TextArea", "Image") == (None, None)


def test_is_skipped_and_get_choice() -> None:
    task = {"annotations": [{"result": [{"value": {"choices": ["B", "C"]}}]}]}
    assert not utils.is_skipped(task) and utils.get_choice(task) == "B"
    assert utils.is_skipped({"annotations": [{"was_cancelled": True}]})
    assert utils.is_skipped({"annotations": [{"skipped": True}]})
    assert not utils.is_skipped({"annotations": [{"was_cancelled": True}, {}]}), "only a single annotation counts"


def test_in_memory_lru_dict_cache() -> None:
    lru = utils.InMemoryLRUDictCache(capacity=2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # now the most recent
    lru.put("c", 3)
    assert "b" not in lru and "a" in lru and "c" in lru and lru.get("b") is None
    assert str(lru) == "OrderedDict([('a', 1), ('c', 3)])"
    assert "x" not in utils.InMemoryLRUDictCache() and utils.InMemoryLRUDictCache().capacity == 1


def test_match_labels_picks_the_closest_label_per_line() -> None:
    assert utils.match_labels("tech\nsprots\nPolitics", ["technology", "sports", "politics"]) == [
        "technology",
        "sports",
        "politics",
    ]
    assert utils.match_labels("", ["a"]) == []


@pytest.mark.parametrize(
    "value, needed",
    [
        ("upload/1/a.png", True),
        ("/upload/1/a.png", True),
        ("/data/upload/1/a.png", True),
        ("/data/local-files/?d=dir/a.png", True),
        ("s3://bucket/a.png", True),
        ("gs://bucket/a.png", True),
        ("azure-blob://container/a.png", True),
        ("https://example.com/a.png", True),
        ("just some text", False),
        ("/data/other", False),
        ("http:/broken", False),
    ],
)
def test_is_preload_needed_and_is_valid_url(value: str, needed: bool) -> None:
    assert utils.is_preload_needed(value) is needed
    assert utils.is_valid_url(value) is value.startswith(("https://", "s3://", "gs://", "azure-blob://"))


def test_is_preload_needed_for_an_existing_path(tmp_path: Path) -> None:
    assert utils.is_preload_needed(str(tmp_path))


def test_get_local_path_and_image_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "img.png"
    Image.new("RGB", (30, 20)).save(image)
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "md"))
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")  # configured, but the caller's host wins
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "configured-token")
    with FakeLabelStudio(files={"/data/upload/3/img.png": image.read_bytes()}) as fake:
        path = utils.get_local_path(
            "/data/upload/3/img.png", cache_dir=str(tmp_path / "cache"), hostname=fake.url, access_token=fake.pat
        )
        assert Path(path).parent == tmp_path / "cache" and Path(path).read_bytes() == image.read_bytes()
        assert fake.auth_headers_seen("/data/upload/") == [f"Bearer {fake.access}"]
        monkeypatch.setenv("HOSTNAME", "container-name")  # not a URL: LABEL_STUDIO_URL is used instead
        monkeypatch.setenv("LABEL_STUDIO_URL", fake.url)
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", fake.legacy_token)
        other = utils.get_image_local_path("upload/3/img.png", image_cache_dir=str(tmp_path / "c2"), task_id=1)
        assert utils.get_image_size(other) == (30, 20)
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°: LS shows it 20 wide, 30 high
    Image.new("RGB", (30, 20)).save(rotated, exif=exif)
    assert utils.get_image_size(str(rotated)) == (20, 30)


def test_compare_nested_structures() -> None:
    utils.compare_nested_structures({"a": [1.0, {"b": "x"}]}, {"a": [1.00001, {"b": "x"}]})
    for left, right in (({"a": 1}, {"b": 1}), ([1], [1, 2]), ({"a": 1.0}, {"a": 1.1}), ("x", "y")):
        with pytest.raises(AssertionError):
            utils.compare_nested_structures(left, right)


# --- cache ----------------------------------------------------------------------------------------
def test_sqlite_cache(tmp_path: Path) -> None:
    made = cache.create_cache("sqlite", path=str(tmp_path / "state"))
    assert isinstance(made, cache.SqliteCache) and isinstance(made, cache.BaseCache)
    assert Path(made.db_name) == tmp_path / "state" / "cache.db"
    assert made["1", "k"] is None and ("1", "k") not in made
    made["1", "k"] = "v"
    assert made["1", "k"] == "v" and ("1", "k") in made and made["2", "k"] is None
    with pytest.raises(ValueError, match="string"):
        made["1", "k"] = {"not": "a string"}
    assert cache.SqliteCache(str(tmp_path / "state"))["1", "k"] == "v", "kept in the file"
    del made["1", "k"]
    assert ("1", "k") not in made
    with pytest.raises(ValueError, match="Unsupported cache type"):
        cache.create_cache("redis", path=str(tmp_path))


def test_store_cache_is_what_instances_read(tmp_path: Path) -> None:
    from label_studio_ml.state.storage import FileStore

    store = FileStore(tmp_path)
    view = cache.StoreCache(store)
    view["5", "k"] = {"json": True}
    assert store.get("5", "k") == {"json": True} and ("5", "k") in view
    view["", "k"] = "no project"
    assert store.get("_", "k") == "no project", "an empty project id is the project-less state"
    del view["5", "k"]
    assert view["5", "k"] is None


# --- exceptions -----------------------------------------------------------------------------------
def test_answer_bodies() -> None:
    ok = exceptions.answer(200, result={"x": 1})
    assert ok.status_code == 200 and json.loads(ok.body) == {"status": 200, "detail": "ok", "result": {"x": 1}}
    nothing = exceptions.answer()
    assert json.loads(nothing.body) == {"status": -1000, "detail": "nothing happened"} and nothing.status_code == 500


def test_exception_handler_sync_and_async(caplog: pytest.LogCaptureFixture) -> None:
    @exceptions.exception_handler
    def refuses() -> Any:
        raise exceptions.AnswerException(409, "busy", {"retry": True})

    @exceptions.exception_handler
    def breaks() -> Any:
        raise KeyError("secret-ish detail")

    @exceptions.exception_handler
    async def works() -> str:
        return "fine"

    refused = refuses()
    assert refused.status_code == 409
    assert json.loads(refused.body) == {"status": 409, "detail": "busy", "result": {"retry": True}}
    broken = breaks()
    assert broken.status_code == 500 and json.loads(broken.body)["detail"] == "KeyError (see the backend log)"
    assert "secret-ish detail" in caplog.text, "the detail goes to the log, not the reply"
    assert asyncio.run(works()) == "fine" and works.__name__ == "works"


def test_answer_exception_raised_in_predict_is_answered_with_its_status(make_client: Any) -> None:
    class Refuses(LabelStudioMLBase):
        def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> Any:
            raise exceptions.AnswerException(429, "slow down")

    client = make_client(Refuses)
    reply = client.post("/predict", json={"tasks": [{"data": {"text": "x"}}], "label_config": CHOICES})
    assert reply.status_code == 429 and reply.json() == {"status": 429, "error": "slow down"}
