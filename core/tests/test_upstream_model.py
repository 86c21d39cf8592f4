"""label_studio_ml.model conformance: LabelStudioMLBase and the module's names behave as the upstream
SDK documents them (HumanSignal/label-studio-ml-backend, label_studio_ml/model.py), on our core."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pytest
from label_studio_sdk.label_interface import LabelInterface

import label_studio_ml.model as model_module
from label_studio_ml.model import LabelStudioMLBase, get_all_classes_inherited_LabelStudioMLBase
from label_studio_ml.sdk_extra import MissingExtra
from label_studio_ml.testing.plugin import FakeLabelStudio

TEXT_CONFIG = """<View><Text name="text" value="$text"/><Labels name="ner" toName="text">
<Label value="Person"/><Label value="Org"/></Labels></View>"""
IMAGE_CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="boxes" toName="image">{labels}</RectangleLabels></View>"""


@pytest.fixture(autouse=True)
def _model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Standalone instances (made outside a server) keep their state under MODEL_DIR, as upstream's."""
    for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_HOST", "LABEL_STUDIO_API_KEY", "LABEL_STUDIO_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "model_dir"))
    monkeypatch.chdir(tmp_path)


def make(config: str = TEXT_CONFIG, project: str | None = "42", cls: type = LabelStudioMLBase) -> Any:
    return cls(project_id=project, label_config=config)


# --- label_interface ------------------------------------------------------------------------------
def test_label_interface_is_the_sdks_built_once_and_follows_use_label_config() -> None:
    model = make()
    interface = model.label_interface
    assert isinstance(interface, LabelInterface)
    assert model.label_interface is interface, "built once per instance"
    assert interface.get_control("ner").labels == ["Person", "Org"]
    model.use_label_config(TEXT_CONFIG.replace("Org", "Place"))
    assert model.label_interface is not interface
    assert model.label_interface.get_control("ner").labels == ["Person", "Place"]
    assert model.parsed_label_config["ner"]["labels"] == ["Person", "Place"]
    assert model.get("label_config") == TEXT_CONFIG.replace("Org", "Place"), "use_label_config stores a new config"


def test_without_a_config_an_instance_uses_the_projects_stored_one() -> None:
    make().use_label_config(TEXT_CONFIG)
    later = LabelStudioMLBase(project_id="42")
    assert later.label_config == TEXT_CONFIG and later.parsed_label_config["ner"]["type"] == "Labels"
    assert LabelStudioMLBase(project_id="43").label_config == "" and LabelStudioMLBase().parsed_label_config == {}


def test_label_interface_can_be_assigned_as_upstream_code_does() -> None:
    model = make()
    replacement = LabelInterface(config=IMAGE_CONFIG.format(labels='<Label value="Car"/>'))
    model.label_interface = replacement
    assert model.label_interface is replacement


def test_a_service_that_never_reads_label_interface_never_imports_the_sdk_or_pydantic(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from label_studio_ml import LabelStudioMLBase
        from label_studio_ml.server.app import create_app
        from label_studio_ml.config import Settings
        from starlette.testclient import TestClient

        class Plain(LabelStudioMLBase):
            def predict(self, tasks, context=None, **kwargs):
                return [{"result": [], "score": None} for _ in tasks]

        CONFIG = '<View><Text name="t" value="$t"/><Choices name="c" toName="t"><Choice value="A"/></Choices></View>'
        app = create_app(Plain, Settings.from_dict({"model_dir": sys.argv[1]}), background_load=False)
        with TestClient(app) as client:
            assert client.post("/setup", json={"project": "1", "schema": CONFIG}).status_code == 200
            assert client.post("/predict", json={"tasks": [{"data": {"t": "x"}}], "project": "1"}).status_code == 200
            assert client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}}).status_code == 201
        print(sorted(m for m in ("label_studio_sdk", "pydantic") if m in sys.modules))
        Plain(project_id="1", label_config=CONFIG).label_interface
        print(sorted(m for m in ("label_studio_sdk", "pydantic") if m in sys.modules))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "md")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == ["[]", "['label_studio_sdk', 'pydantic']"]


def test_without_the_extra_the_error_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules is how Python says "not installed" for a module
    for name in ("label_studio_sdk", "label_studio_sdk.label_interface", "label_studio_sdk.label_interface.objects"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "label_studio_ml.response", raising=False)
    model = make()
    with pytest.raises(ImportError) as caught:
        model.label_interface  # noqa: B018
    assert isinstance(caught.value, MissingExtra)
    assert str(caught.value) == "label_interface needs label-studio-sdk: pip install 'label-studio-ml[sdk]'"
    with pytest.raises(
        ImportError, match=r"ModelResponse needs label-studio-sdk: pip install 'label-studio-ml\[sdk\]'"
    ):
        import label_studio_ml.response  # noqa: F401
    assert make().build_label_map("ner", ["person"]) == {"person": "Person"}, "our own helpers need no sdk"


# --- label config helpers -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "labels, names, expected",
    [
        ("", ["car"], {}),  # a control without labels maps nothing
        ('<Label value="Car" predicted_values="car, van"/><Label value="Bus"/>', ["car", "van", "bus"],
         {"car": "Car", "van": "Car", "bus": "Bus"}),
        ('<Label value="Car"/><Label value="Bus"/>', ["Car", "BUS"], {"Car": "Car", "bus": "Bus"}),  # key lower-cased
        ('<Label value="Car" predicted_values="auto"/>', ["car"], {"car": "Car"}),  # falls back to the name
        ('<Label value="Car" predicted_values="auto"/><Label value="Tram"/>', ["bike"], {}),
        ('<Label value="Two words"/>', ["Two words", "x"], {"Two words": "Two words"}),
    ],
)  # fmt: skip
def test_build_label_map(labels: str, names: list[str], expected: dict[str, str]) -> None:
    model = make(IMAGE_CONFIG.format(labels=labels))
    assert model.build_label_map("boxes", names) == expected
    # our parser reads the labels and their attributes as the sdk does
    sdk_attrs = LabelInterface(config=IMAGE_CONFIG.format(labels=labels)).get_control("boxes").labels_attrs or {}
    assert {k: v.attr for k, v in sdk_attrs.items()} == model.config.controls["boxes"]["labels_attrs"]


def test_build_label_map_of_an_unknown_control_fails() -> None:
    with pytest.raises(Exception, match="nope"):
        make().build_label_map("nope", ["x"])


@pytest.mark.parametrize(
    "control, obj, name_filter, to_name_filter",
    [
        ("Labels", "Text", None, None),
        ("labels", ("HyperText", "TEXT"), None, None),  # types match case-insensitively
        ("TextArea", "Text", lambda n: n.startswith("prompt"), None),  # filters get lower-cased names
        ("TextArea", "Text", lambda n: n == "answer", None),
        ("TextArea", "Text", None, lambda n: n == "doc"),
        ("Choices", "Image", None, None),  # none: ValueError
    ],
)
def test_get_first_tag_occurence_agrees_with_the_sdk(
    control: Any, obj: Any, name_filter: Any, to_name_filter: Any
) -> None:
    config = """<View><Text name="Doc" value="$text"/><Labels name="ner" toName="Doc"><Label value="A"/></Labels>
    <TextArea name="Prompt" toName="Doc"/><TextArea name="answer" toName="Doc"/></View>"""
    model, sdk = make(config), LabelInterface(config=config)

    def outcome(fn: Any) -> Any:
        try:
            return fn(control, obj, name_filter=name_filter, to_name_filter=to_name_filter)
        except ValueError:
            return ValueError

    assert outcome(model.get_first_tag_occurence) == outcome(sdk.get_first_tag_occurence)


# --- state and versions ---------------------------------------------------------------------------
def test_get_set_has_and_extra_params() -> None:
    model = make()
    assert model.get("k") is None and not model.has("k")
    model.set("k", "v")
    assert model.get("k") == "v" and model.has("k")
    assert make().get("k") == "v", "state outlives the instance (MODEL_DIR)"
    assert model.extra_params == {}
    model.set_extra_params('{"temperature": 0.2}')  # upstream stores a JSON string
    assert model.extra_params == {"temperature": 0.2}
    model.set_extra_params({"temperature": 0.3})
    assert model.extra_params == {"temperature": 0.3}


def test_module_cache_is_the_state_instances_use() -> None:
    model = make()
    model.set("seen", "yes")
    assert model_module.CACHE["42", "seen"] == "yes" and ("42", "seen") in model_module.CACHE
    model_module.CACHE["42", "other"] = "x"
    assert model.get("other") == "x"


def test_setup_runs_per_instance_and_stores_the_version() -> None:
    class Versioned(LabelStudioMLBase):
        def setup(self) -> None:
            self.set("model_version", "Versioned-v0.0.1")

    model = make(cls=Versioned)
    assert model.model_version == "Versioned-v0.0.1" == model.get("model_version")
    assert model.bump_model_version() == "Versioned-v0.0.1-1"
    model.set("model_version", "0.0.1")
    assert model.bump_model_version() == "0.1.0" == model.get("model_version"), "a minor bump, as upstream means it"


# --- events ---------------------------------------------------------------------------------------
def test_train_events_and_process_event() -> None:
    assert {"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATION_DELETED", "START_TRAINING"} <= set(
        LabelStudioMLBase.TRAIN_EVENTS
    )
    assert LabelStudioMLBase.TRAIN_EVENTS[:4] == (
        "ANNOTATION_CREATED",
        "ANNOTATION_UPDATED",
        "ANNOTATION_DELETED",
        "START_TRAINING",
    ), "upstream's four, in upstream's order, first"
    calls: list[tuple[str, Any, dict[str, Any]]] = []

    class Recorder(LabelStudioMLBase):
        def fit(self, event: str, data: Any, **kwargs: Any) -> str:
            calls.append((event, data, kwargs))
            return "trained"

    model = make(cls=Recorder)
    assert model.process_event("ANNOTATION_CREATED", {"a": 1}, "job-1", {"extra": True}) == "trained"
    assert calls == [("ANNOTATION_CREATED", {"a": 1}, {"job_id": "job-1", "extra": True})]
    assert model.process_event("PROJECT_UPDATED", {}, "job-2", {}) is None
    assert len(calls) == 1, "no fit for an event outside TRAIN_EVENTS"


def test_predict_fn_and_update_fn_serve_a_bare_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_module, "_predict_fn", None)
    monkeypatch.setattr(model_module, "_update_fn", None)
    seen: dict[str, Any] = {}

    @model_module.predict_fn
    def my_predict(tasks: list[dict], context: Any, helper: LabelStudioMLBase, **kwargs: Any) -> list[dict]:
        seen["predict"] = (tasks, context, helper, kwargs)
        return [{"result": [], "score": 1.0}]

    @model_module.update_fn
    def my_update(event: str, data: Any, helper: LabelStudioMLBase, **kwargs: Any) -> str:
        seen["update"] = (event, helper)
        return "updated"

    model = make()
    assert model.predict([{"data": {}}], context={"c": 1}, login="x") == [{"result": [], "score": 1.0}]
    assert seen["predict"] == ([{"data": {}}], {"c": 1}, model, {"login": "x"})
    assert model.fit("START_TRAINING", {}) == "updated" and seen["update"] == ("START_TRAINING", model)
    assert my_predict.__name__ == "my_predict", "the decorators return the function"


def test_get_all_classes_inherited(tmp_path: Path) -> None:
    script = tmp_path / "my_backend.py"
    script.write_text(
        "from label_studio_ml.model import LabelStudioMLBase\n"
        "class First(LabelStudioMLBase): pass\n"
        "class Second(First): pass\n"
        "class NotAModel: pass\n"
    )
    assert sorted(get_all_classes_inherited_LabelStudioMLBase(str(script))) == ["First", "Second"]


# --- media ----------------------------------------------------------------------------------------
def test_get_local_path_has_upstreams_signature_and_fetches_from_label_studio(monkeypatch: pytest.MonkeyPatch) -> None:
    params = list(inspect.signature(LabelStudioMLBase.get_local_path).parameters)
    assert params == ["self", "url", "project_dir", "ls_host", "ls_access_token", "task_id", "args", "kwargs"]
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")  # configured, but the caller's host wins
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "configured-token")
    with FakeLabelStudio(files={"/data/upload/1/a.txt": b"uploaded text"}) as fake:
        model = make()
        path = model.get_local_path(
            "/data/upload/1/a.txt", ls_host=fake.url, ls_access_token=fake.legacy_token, task_id=3, cache_dir="ignored"
        )
        assert Path(path).read_bytes() == b"uploaded text"
        assert fake.auth_headers_seen("/data/upload/") == [f"Token {fake.legacy_token}"]


def test_preload_task_data_reads_files_and_keeps_everything_else() -> None:
    files = {"/data/upload/7/doc.txt": b"uploaded body", "/data/upload/7/other.txt": b"other body"}
    with FakeLabelStudio(files=files) as fake:
        model = make()
        model.set("hostname", fake.url)  # what /setup stores
        model.set("access_token", fake.legacy_token)
        task = {
            "id": 7,
            "data": {
                "doc": "/data/upload/7/doc.txt",
                "nested": {"paths": ["upload/7/other.txt", "plain words"], "n": 3, "f": 0.5, "b": False, "none": None},
            },
        }
        before = repr(task)
        preloaded = model.preload_task_data(task, task["data"])
        assert preloaded == {
            "doc": "uploaded body",
            "nested": {"paths": ["other body", "plain words"], "n": 3, "f": 0.5, "b": False, "none": None},
        }
        assert repr(task) == before, "the task itself is not changed"
        assert model.preload_task_data(task) == preloaded, "value defaults to task['data']"
        paths = model.preload_task_data(task, task["data"], read_file=False)
        assert Path(paths["doc"]).read_bytes() == b"uploaded body"
        assert Path(paths["nested"]["paths"][0]).read_bytes() == b"other body"


@pytest.mark.parametrize(
    "value",
    [
        "s3://b/a.txt",
        "gs://b/a.txt",
        "azure-blob://c/a.txt",
        "/data/local-files?d=x.txt",
        "upload/1/a",
        "https://e.com/a",
    ],
)
def test_preload_task_data_asks_get_local_path_with_the_task_id(value: str, tmp_path: Path) -> None:
    body = tmp_path / "body.txt"
    body.write_text("body")
    model = make()
    model.get_local_path = MagicMock(return_value=str(body))
    assert model.preload_task_data({"id": 5, "data": {"u": value}}, {"u": value}) == {"u": "body"}
    model.get_local_path.assert_called_once_with(url=value, task_id=5)
    assert model.preload_task_data({"id": 5, "data": {}}, "no file here") == "no file here"


# --- Label Studio access --------------------------------------------------------------------------
def test_access_token_legacy_pat_stored_and_none(monkeypatch: pytest.MonkeyPatch) -> None:
    assert make().get_label_studio_access_token() is None
    with FakeLabelStudio() as fake:
        monkeypatch.setenv("LABEL_STUDIO_URL", fake.url)
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", fake.legacy_token)
        assert make().get_label_studio_access_token() == fake.legacy_token
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", fake.pat)
        assert make().get_label_studio_access_token() == fake.access, "a PAT gives a fresh access token"
        monkeypatch.delenv("LABEL_STUDIO_API_KEY")
        monkeypatch.setenv("LABEL_STUDIO_ACCESS_TOKEN", fake.legacy_token)
        assert make().get_label_studio_access_token() == fake.legacy_token
        monkeypatch.delenv("LABEL_STUDIO_ACCESS_TOKEN")
        model = make()
        model.set("access_token", fake.pat)  # the token LS sends with /setup
        assert model.get_label_studio_access_token() == fake.access
    model = make()  # LS gone: the configured token is the best there is
    assert model.get_label_studio_access_token() == fake.pat


def test_label_studio_client_is_made_once_and_a_failure_is_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://localhost:8080")
    made = MagicMock()
    monkeypatch.setattr(model_module, "LabelStudio", made, raising=False)
    model = make()
    assert model._get_label_studio_client() is made.return_value
    assert model._get_label_studio_client() is made.return_value
    made.assert_called_once_with(base_url="http://localhost:8080")
    failing = MagicMock(side_effect=RuntimeError("boom"))
    monkeypatch.setattr(model_module, "LabelStudio", failing)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "legacy-token")
    model = make()
    assert model._get_label_studio_client() is None and model._get_label_studio_client() is None
    failing.assert_called_once_with(base_url="http://localhost:8080", api_key="legacy-token")
    monkeypatch.delenv("LABEL_STUDIO_URL")
    assert make().get_label_studio_access_token() == "legacy-token"


def test_names_upstreams_module_imports_are_there_on_first_use() -> None:
    from label_studio_sdk.client import LabelStudio

    from label_studio_ml import cache, response, utils

    assert model_module.LabelStudio is LabelStudio
    assert model_module.LabelInterface is LabelInterface
    assert model_module.ModelResponse is response.ModelResponse
    assert model_module.create_cache is cache.create_cache and model_module.get_local_path is utils.get_local_path
    assert model_module.is_preload_needed is utils.is_preload_needed
    with pytest.raises(AttributeError):
        model_module.nothing_like_this  # noqa: B018
