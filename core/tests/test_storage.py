"""storage.py: FileStore (atomic, durable, multi-process) and RedisStore against a real redis-server."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
from pathlib import Path
from typing import Any

import fakes
import pytest
from fakes import CONFIG

from label_studio_ml.errors import StateUnavailable
from label_studio_ml.state.storage import FileStore, RedisStore, atomic_write, make_store, safe_name

VALUES = [None, 0, 1.5, "text", [1, "a", {"b": None}], {"nested": {"list": [1, 2]}, "ü": "é"}]


def test_file_store_json_values_survive_a_new_instance(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    for i, value in enumerate(VALUES):
        store.set("2", f"key{i}", value)
    again = FileStore(tmp_path)
    assert [again.get("2", f"key{i}") for i in range(len(VALUES))] == VALUES
    assert again.get("2", "missing") is None and again.get("3", "key1") is None
    again.delete("2", "key1")
    again.delete("2", "never-set")
    assert store.get("2", "key1") is None and store.ping()


def test_file_store_reads_see_every_write_of_another_process_at_once(tmp_path: Path) -> None:
    reader, writer = FileStore(tmp_path), FileStore(tmp_path)
    assert reader.get("1", "model_version") is None
    for n in range(50):  # faster than the clock tick of coarse filesystems: the inode still changes
        writer.set("1", "model_version", f"m-{n}")
        assert reader.get("1", "model_version") == f"m-{n}"
    value = reader.get("1", "model_version")
    writer.set("1", "versions", ["a"])
    first = reader.get("1", "versions")
    first.append("mutated by a caller")
    assert reader.get("1", "versions") == ["a"], "callers get their own copy"
    writer.delete("1", "model_version")
    assert reader.get("1", "model_version") is None and value == "m-49"


def test_file_store_cache_holds_a_bounded_number_of_files(tmp_path: Path) -> None:
    import os

    store = FileStore(tmp_path)
    open_before = len(os.listdir("/proc/self/fd"))
    for n in range(FileStore.MAX_OPEN * 3):
        store.set(str(n), "label_config", "<View/>")
        assert store.get(str(n), "label_config") == "<View/>"
    assert len(os.listdir("/proc/self/fd")) - open_before <= FileStore.MAX_OPEN
    del store
    assert len(os.listdir("/proc/self/fd")) - open_before <= 1


def test_file_store_names_cannot_escape(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "m")
    store.set("../../evil", "../key", 1)
    assert store.get("../../evil", "../key") == 1
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(p.is_relative_to(tmp_path / "m" / "state") for p in written)
    for bad in ("", ".", ".."):
        with pytest.raises(ValueError):
            safe_name(bad)


def test_atomic_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a" / "value.json"
    atomic_write(target, b'{"v": 1}')

    def crash(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("label_studio_ml.state.storage.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, b'{"v": 2, "long": "' + b"x" * 100_000 + b'"}')
    assert json.loads(target.read_bytes()) == {"v": 1}, "the old value is intact"
    assert [p.name for p in target.parent.iterdir()] == ["value.json"], "no temp file left behind"


def _writer(root: str, worker: int, rounds: int) -> None:
    store = FileStore(Path(root))
    for i in range(rounds):
        store.set("1", "shared", {"worker": worker, "i": i, "pad": "x" * 20_000})
        store.set("1", f"own-{worker}", i)


def test_file_store_several_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_writer, args=(str(tmp_path), w, 60)) for w in range(4)]
    for proc in workers:
        proc.start()
    reader = FileStore(tmp_path)
    reads = 0
    while any(p.is_alive() for p in workers):
        value = reader.get("1", "shared")  # never a half-written file
        assert value is None or (value["pad"] == "x" * 20_000 and value["worker"] in range(4))
        reads += 1
    for proc in workers:
        proc.join(30)
        assert proc.exitcode == 0
    assert reads > 0
    assert [reader.get("1", f"own-{w}") for w in range(4)] == [59] * 4
    assert reader.get("1", "shared")["i"] == 59
    leftovers = [p.name for p in (tmp_path / "state" / "1").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_redis_store(redis_process: tuple[subprocess.Popen[bytes], str]) -> None:
    _, url = redis_process
    store = make_store(Path("."), url)
    assert isinstance(store, RedisStore) and store.ping()
    for i, value in enumerate(VALUES):
        store.set("2", f"key{i}", value)
    other = RedisStore(url)  # another replica sees the same state at once
    assert [other.get("2", f"key{i}") for i in range(len(VALUES))] == VALUES
    other.delete("2", "key3")
    assert store.get("2", "key3") is None
    assert RedisStore(url, prefix="svc-b").get("2", "key1") is None, "prefixes separate services"
    other.set("7.1700000000", "label_config", "<View/>")
    assert store.projects() == ["2", "7.1700000000"], "every replica lists the projects any replica stored"
    assert RedisStore(url, prefix="svc-b").projects() == []


def test_file_store_lists_projects_with_state(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    assert store.projects() == []
    store.set("12", "label_config", "<View/>")
    store.set("3", "active_version", "v1")
    assert store.projects() == ["12", "3"]


def test_redis_down_is_state_unavailable(redis_process: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, url = redis_process
    store = RedisStore(url)
    store.set("1", "k", 1)
    proc.terminate()
    proc.wait(5)
    assert not store.ping()
    for call in (lambda: store.get("1", "k"), lambda: store.set("1", "k", 2), lambda: store.delete("1", "k")):
        with pytest.raises(StateUnavailable, match="state store unreachable"):
            call()


def test_redis_down_keeps_predictions_and_fails_writes_loudly(
    tmp_path: Path,
    redis_process: tuple[subprocess.Popen[bytes], str],
) -> None:
    from starlette.testclient import TestClient

    from label_studio_ml.config import Settings
    from label_studio_ml.server.app import create_app

    proc, url = redis_process
    app = create_app(
        fakes.Echo, Settings.from_dict({"model_dir": tmp_path}), store=RedisStore(url), background_load=False
    )
    body = {"tasks": [{"id": 1, "data": {"text": "good"}}], "project": "3.1"}
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/setup", json={"project": "3.1", "schema": CONFIG}).status_code == 200
        assert client.post("/predict", json=body).status_code == 200, "config stored in Redis by /setup"
        assert RedisStore(url).get("3", "label_config") == CONFIG
        proc.terminate()
        proc.wait(5)
        # issue 21 #6: the loaded model keeps answering from the state last read; a change of state is refused
        assert client.post("/predict", json=body).status_code == 200
        assert client.post("/setup", json={"project": "3.1", "schema": CONFIG}).status_code == 200, "nothing changes"
        reply = client.post("/setup", json={"project": "3.1", "schema": CONFIG.replace("label", "label2")})
        assert reply.status_code == 503
        assert reply.json() == {"status": 503, "error": "state store unreachable: ConnectionError"}
