"""Bulk pre-annotation (``label-studio-ml preannotate``, ``POST /jobs``) against a fake LS that records
calls: paging, skip by version, bulk write, batch size, failing tasks, LS failures, progress lines,
the HTTP backend, the server's job, and the Redis path with real redis-server and worker processes."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakes
import pytest

from label_studio_ml.cli import main as cli
from label_studio_ml.clients.ls_client import FILTERED_PAGE_FIELDS, PAGE_FIELDS, prediction_versions
from label_studio_ml.config import Settings
from label_studio_ml.engine import loader
from label_studio_ml.preannotate.progress import JsonLines, TerminalBar, make_reporter
from label_studio_ml.testing.plugin import FAKE_LS_TOKEN, FakeLabelStudio, ServerProcess

MODELS = Path(__file__).parent / "models"
KEYWORD = MODELS / "keyword.py"


class Sevens(fakes.Echo):
    predict_batch_size = 7


TARGETS = {"echo": fakes.Echo, "boom": fakes.BoomOnSome, "sevens": Sevens}


@pytest.fixture
def env(clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """The command's environment; the logging it configures (a process entry point's) undone after."""
    root, runtime = logging.getLogger(), logging.getLogger("label_studio_ml.engine.runtime.failures")
    saved = (root.handlers[:], root.level, runtime.level)
    yield _env(monkeypatch, tmp_path)
    root.handlers[:], root.level = saved[0], saved[1]
    runtime.setLevel(saved[2])


def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.setenv("LABEL_STUDIO_URL", "")  # run() sets it: registered here, so it is gone after the test
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", FAKE_LS_TOKEN)
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "model_dir"))
    monkeypatch.setattr(loader, "load_model_class", lambda target: TARGETS[str(target)])
    return monkeypatch


def run(
    fake: FakeLabelStudio, capsys: pytest.CaptureFixture[str], *args: str, target: str | None = "echo", project: int = 0
) -> tuple[int, list[dict[str, Any]], list[str]]:
    """The command in this process: exit status, its JSON lines (stdout is no terminal here), stderr lines."""
    os.environ["LABEL_STUDIO_URL"] = fake.url
    argv = ["preannotate", *([target] if target else []), "--project", str(project or fake.project)]
    argv += ["--retry-delay", "0.01"]
    rc = cli.main([*argv, *args])
    out, err = capsys.readouterr()
    return rc, [json.loads(line) for line in out.splitlines() if line.strip()], err.strip().splitlines()


def texts(n: int, boom: tuple[int, ...] = ()) -> list[str]:
    return [("boom" if i in boom else f"text {i} {'good' if i % 2 else 'bad'}") for i in range(n)]


def only(lines: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [line for line in lines if line["event"] == event]


def assert_one_prediction_each(fake: FakeLabelStudio, version: str, except_ids: set[int] = frozenset()) -> None:  # type: ignore[assignment]
    for task_id in fake.project_tasks:
        expected = 0 if task_id in except_ids else 1
        assert fake.versions_of(task_id).count(version) == expected, (task_id, fake.versions_of(task_id))


def test_pages_by_id_and_writes_in_bulk_stamped_with_the_version(env: Any, capsys: Any) -> None:
    with FakeLabelStudio(texts=texts(1050)) as fake:
        rc, lines, err = run(fake, capsys, "--page-size", "100")
        assert rc == 0, err
        assert_one_prediction_each(fake, "Echo-0")
        reads = [c for c in fake.requests if c["kind"] == "tasks" and "query" in c["query"]]
        assert {c["query"]["page_size"] for c in reads} == {"100"}, "never more than a page at once"
        # only the task fields (LS leaves out tasks holding the version: no versions column), media URIs
        # as LS sends them to /predict (a third of the read time)
        assert {c["query"]["include"] for c in reads} == {FILTERED_PAGE_FIELDS}
        assert "predictions_model_versions" not in FILTERED_PAGE_FIELDS
        assert {c["query"]["resolve_uri"] for c in reads} == {"false"}
        filters = [json.loads(c["query"]["query"])["filters"]["items"] for c in reads]
        assert all({"operator": "not_contains", "value": ["Echo-0"]}.items() <= items[0].items() for items in filters)
        cursors = [next(i["value"] for i in items if i["filter"].endswith(":id")) for items in filters]
        assert cursors == sorted(cursors) and cursors[0] == 0 and len(cursors) == 11  # the short 11th page ends it
        assert fake.count("tasks") == len(reads), "no version held at the start: no task count needed"
        writes = [c for c in fake.requests if c["kind"] == "import"]
        assert len(writes) == 11 and fake.count("prediction") == 0, "one bulk call per page, none per task"
        for call in writes:
            assert call["path"] == f"/api/projects/{fake.project}/import/predictions"
            for item in call["body"]:
                assert set(item) == {"task", "result", "score", "model_version"} and item["model_version"] == "Echo-0"
        first = writes[0]["body"][0]
        assert first["result"][0]["value"]["choices"] == ["Negative"] and first["score"] == 0.9
        summary = lines[-1]
        assert summary["event"] == "summary" and summary["state"] == "done"
        assert (summary["done"], summary["skipped"], summary["failed"], summary["total"]) == (1050, 0, 0, 1050)


def test_tasks_holding_the_version_are_skipped_and_a_rerun_writes_nothing(env: Any, capsys: Any) -> None:
    with FakeLabelStudio() as fake:
        fake.add_task(1, "done already", ("Echo-0", "Other-3"))
        fake.add_task(2, "a longer version only", ("Echo-01",))  # "Echo-0" is a substring: not the version
        fake.add_task(3, "no predictions")
        fake.add_task(4, "other versions", ("xEcho-0", "Other"))
        fake.add_task(5, "many versions", tuple(f"old-model-version-{n:04d}" for n in range(40)) + ("Echo-0",))
        rc, lines, _ = run(fake, capsys)
        assert rc == 0
        assert sum(s["tasks"] for s in fakes.seen) == 3, "tasks 2, 3 and 4 only"
        assert [fake.versions_of(i).count("Echo-0") for i in (1, 2, 3, 4, 5)] == [1, 1, 1, 1, 1]
        assert (lines[-1]["done"], lines[-1]["skipped"]) == (3, 2)
        assert any(c["query"].get("fields") == "all" for c in fake.requests), "task 5's cut versions column re-read"
        # "Echo-01" and "xEcho-0" contain "Echo-0": LS's filter would leave tasks 2 and 4 out, so each page
        # brings its versions column instead
        pages = [c["query"] for c in fake.requests if c["kind"] == "tasks" and "filters" in c["query"].get("query", "")]
        assert pages and {p["include"] for p in pages} == {PAGE_FIELDS}
        writes = fake.count("import")
        rc, lines, _ = run(fake, capsys)
        assert rc == 0 and fake.count("import") == writes, "nothing left to write"
        assert (lines[-1]["done"], lines[-1]["skipped"], lines[-1]["failed"]) == (0, 5, 0)


def test_ls_leaves_out_tasks_holding_the_version_and_a_rerun_lists_none(env: Any, capsys: Any) -> None:
    with FakeLabelStudio(texts=texts(45)) as fake:
        for task_id in (101, 120):  # done before the job, with another version beside
            fake.predictions[task_id] += [{"model_version": "Echo-0"}, {"model_version": "Other-3"}]
        rc, lines, _ = run(fake, capsys, "--page-size", "20")
        assert rc == 0
        assert sum(s["tasks"] for s in fakes.seen) == 43 and fake.versions_of(101) == ["Echo-0", "Other-3"]
        assert (lines[-1]["done"], lines[-1]["skipped"], lines[-1]["total"]) == (43, 2, 45), "counted, not listed"
        assert_one_prediction_each(fake, "Echo-0")
        reads, writes = len(fake.requests), fake.count("import")
        rc, lines, _ = run(fake, capsys, "--page-size", "20")
        assert rc == 0 and fake.count("import") == writes, "nothing left to write"
        assert (lines[-1]["done"], lines[-1]["skipped"], lines[-1]["total"]) == (0, 45, 45)
        rerun = [c["path"].split("?")[0] for c in fake.requests[reads:]]
        # the project, its versions, one page LS found empty, the task count: no task read at all
        assert rerun == ["/api/projects/7/", "/api/projects/7/model-versions/", "/api/tasks/", "/api/tasks/"]


class Watcher(fakes.Echo):
    """Echo that notes, at each predict call, how many LS calls the fake is serving at that moment."""

    pause = 0.05
    fake: FakeLabelStudio | None = None
    ls_busy: list[int] = []

    def predict(self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        assert self.fake is not None
        Watcher.ls_busy.append(sum(self.fake.in_flight.values()))
        return super().predict(tasks, context, **kwargs)


def test_ls_reads_the_next_page_and_writes_while_the_model_predicts_one_call_at_a_time(
    env: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(TARGETS, "watcher", Watcher)
    with FakeLabelStudio(texts=texts(64)) as fake:
        monkeypatch.setattr(Watcher, "fake", fake)
        monkeypatch.setattr(Watcher, "ls_busy", [])
        fake.delay_s.update({"tasks": 0.3, "import": 0.3})
        rc, lines, _ = run(fake, capsys, "--page-size", "16", "--batch-size", "4", target="watcher")
        assert rc == 0 and (lines[-1]["done"], lines[-1]["total"]) == (64, 64)
        assert_one_prediction_each(fake, "Watcher-0")
        assert len(Watcher.ls_busy) == 16 and any(Watcher.ls_busy), "LS worked while the model predicted"
        assert not fake.together, "LS was asked one thing at a time"


def test_prediction_versions_from_a_page() -> None:
    assert prediction_versions({"predictions_model_versions": "a-1,b-2"}) == {"a-1", "b-2"}
    assert prediction_versions({"predictions_model_versions": "a-1, b-2"}) == {"a-1", "b-2"}  # PostgreSQL
    assert prediction_versions({"predictions_model_versions": ""}) == set()
    assert prediction_versions({"predictions_model_versions": "v," * 250}) is None, "cut at 500 characters"
    assert prediction_versions({"predictions": [{"model_version": "x"}], "predictions_model_versions": ""}) == {"x"}
    assert prediction_versions({"id": 1}) is None


def test_the_models_batch_size_is_used_unless_overridden(env: Any, capsys: Any) -> None:
    with FakeLabelStudio(texts=texts(20)) as fake:
        assert run(fake, capsys, target="sevens")[0] == 0
        assert [s["tasks"] for s in fakes.seen] == [7, 7, 6]
    fakes.seen.clear()
    with FakeLabelStudio(texts=texts(20)) as fake:
        assert run(fake, capsys, "--batch-size", "5", target="sevens")[0] == 0
        assert [s["tasks"] for s in fakes.seen] == [5, 5, 5, 5]


def test_a_failing_task_is_counted_with_its_id_and_the_rest_are_written(env: Any, capsys: Any) -> None:
    with FakeLabelStudio(texts=texts(40, boom=(3, 17))) as fake:
        rc, lines, err = run(fake, capsys, target="boom")
        assert rc == 0, err
        failed = {100 + 3, 100 + 17}
        assert_one_prediction_each(fake, "BoomOnSome-0", except_ids=failed)
        events = only(lines, "failed")
        assert {e["task"] for e in events} == failed
        assert {e["reason"] for e in events} == {"ValueError: cannot handle 'boom'"}
        summary = lines[-1]
        assert (summary["done"], summary["failed"]) == (38, 2)
        assert {f["task"] for f in summary["failures"]} == failed
        # the failed tasks hold nothing, so a rerun tries them again (and only them)
        fakes.seen.clear()
        rc, lines, _ = run(fake, capsys, target="boom")
        assert (lines[-1]["skipped"], lines[-1]["failed"]) == (38, 2)


def test_ls_5xx_is_retried_and_a_write_stored_before_failing_is_not_repeated(env: Any, capsys: Any) -> None:
    with FakeLabelStudio(texts=texts(30)) as fake:
        fake.fail_next["tasks"] = [502]
        fake.fail_next["import"] = [503, 503]
        rc, lines, err = run(fake, capsys)
        assert rc == 0 and err == []
        assert fake.count("import") == 3
        assert_one_prediction_each(fake, "Echo-0")
    with FakeLabelStudio(texts=texts(30)) as fake:
        fake.store_then_fail = [500]  # LS stored the predictions, then answered 500
        rc, lines, _ = run(fake, capsys)
        assert rc == 0 and lines[-1]["done"] == 30
        assert_one_prediction_each(fake, "Echo-0")  # the retry re-read them first: nothing twice


def test_ls_down_stops_with_one_line_then_a_rerun_resumes(env: Any, capsys: Any) -> None:
    with FakeLabelStudio(texts=texts(50)) as fake:
        fake.down_after = {"tasks": 2}  # the third page read on fails
        rc, lines, err = run(fake, capsys, "--page-size", "20", "--retries", "3")
        assert rc == 1
        assert len(err) == 1 and err[0].startswith(
            "label-studio-ml: stopped: Label Studio failed (GET /api/tasks/ -> HTTP 503"
        )
        assert "gave up after 3 tries" in err[0] and "40 written so far" in err[0]
        assert fake.count("tasks") == 2 + 3
        assert lines[-1]["state"] == "stopped" and lines[-1]["done"] == 40
        fake.down_after = {}
        rc, lines, _ = run(fake, capsys, "--page-size", "20")
        assert rc == 0 and (lines[-1]["done"], lines[-1]["skipped"]) == (10, 40)
        assert_one_prediction_each(fake, "Echo-0")


def test_bad_token_or_project_fails_before_any_prediction(env: Any, capsys: Any) -> None:
    with FakeLabelStudio(texts=texts(5)) as fake:
        env.setenv("LABEL_STUDIO_API_KEY", "wrong")
        rc, lines, err = run(fake, capsys)
        assert rc == 2 and lines == [] and len(err) == 1 and "refused the API key" in err[0] and "401" in err[0]
        env.setenv("LABEL_STUDIO_API_KEY", FAKE_LS_TOKEN)
        rc, _, err = run(fake, capsys, project=8)
        assert rc == 2 and err == [f"label-studio-ml: error: project 8 not found in Label Studio at {fake.url}"]
        assert fakes.calls["load"] == 0 and fakes.calls["predict"] == 0, "failed before the model loaded"
        assert fake.count("import") == 0 and fake.count("tasks") == 0
    env.delenv("LABEL_STUDIO_API_KEY")
    assert cli.main(["preannotate", "echo", "--project", "1"]) == 2
    assert "LABEL_STUDIO_API_KEY" in capsys.readouterr().err


def test_json_progress_lines_and_the_terminal_bar(env: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeLabelStudio(texts=texts(60)) as fake:
        rc, lines, _ = run(fake, capsys, "--page-size", "10", "--progress-interval", "0")
        progress = only(lines, "progress")
        assert len(progress) >= 6
        for line in progress:
            assert set(line) >= {"done", "skipped", "failed", "total", "tasks_per_s", "eta_s", "model_version"}
            assert line["total"] == 60
        assert [p["done"] for p in progress] == sorted(p["done"] for p in progress)
        assert lines[-1]["event"] == "summary" and set(lines[-1]) >= {"done", "skipped", "failed", "elapsed_s"}
    assert isinstance(make_reporter(json_lines=True), JsonLines)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert isinstance(make_reporter(json_lines=False), TerminalBar)
    assert isinstance(make_reporter(json_lines=True), JsonLines), "--json wins on a terminal"


def test_backend_over_http(env: Any, capsys: Any, tmp_path: Path) -> None:
    from conftest import LiveServer

    from label_studio_ml.server.app import create_app

    settings = Settings.from_dict({"model_dir": tmp_path / "backend", "basic_auth_user": "u", "basic_auth_pass": "p"})
    with FakeLabelStudio(texts=texts(30, boom=(4,))) as fake:
        with LiveServer(create_app(fakes.BoomOnSome, settings, background_load=False)) as server:
            rc, _, err = run(fake, capsys, "--backend", server.url, target=None)
            assert rc == 2 and "HTTP 401" in err[0] and fake.count("import") == 0
            rc, lines, err = run(
                fake, capsys, "--backend", server.url, "--basic-auth-user", "u", "--basic-auth-pass", "p", target=None
            )
            assert rc == 0, err
        assert_one_prediction_each(fake, "BoomOnSome-0", except_ids={104})
        assert only(lines, "failed") == [
            {
                "event": "failed",
                "project": fake.project,
                "model_version": "BoomOnSome-0",
                "task": 104,
                "reason": "ValueError (see the backend log)",
            }
        ]
        rc, _, err = run(fake, capsys, "--backend", "http://127.0.0.1:1", "--retries", "2", target=None)
        assert rc == 1 and len(err) == 1 and "did not answer" in err[0]


def wait_for(fn: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_post_jobs_runs_the_job_on_the_server_and_get_jobs_lists_it(make_client: Any, clean_env: None) -> None:
    with FakeLabelStudio(texts=texts(45)) as fake:
        client = make_client(fakes.Echo, label_studio_url=fake.url, label_studio_api_key=FAKE_LS_TOKEN)
        client.post("/setup", json={"project": "7", "schema": fake.label_config})
        client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7}})
        reply = client.post("/jobs", json={"project": 7, "kind": "preannotate", "batch_size": 10})
        assert reply.status_code == 202, reply.text
        job = reply.json()
        assert job["kind"] == "preannotate" and job["status"] == "started" and job["project"] == "7"

        def finished() -> list[dict[str, Any]] | None:
            jobs = client.get("/jobs?project=7").json()["jobs"]
            return jobs if all(j["state"] in ("done", "failed", "stopped") for j in jobs) and len(jobs) == 2 else None

        jobs = {j["kind"]: j for j in wait_for(finished)}
        assert set(jobs) == {"train", "preannotate"}
        record = jobs["preannotate"]
        assert record["id"] == job["job"] and record["state"] == "done" and record["version"] == "Echo-0"
        assert (record["done"], record["total"], record["progress"]) == (45, 45, 1.0)
        assert [s["tasks"] for s in fakes.seen if s["project"] == "7"] == [10, 10, 10, 10, 5]
        assert_one_prediction_each(fake, "Echo-0")
        page = client.get("/", headers={"Accept": "text/html"}).text
        assert f'data-job="{job["job"]}" data-state="done"' in page and "preannotate" in page
        for body, reason in [
            ([], "JSON object"),
            ({}, "needs 'project'"),
            ({"project": "x.y"}, "malformed"),
            ({"project": 7, "kind": "train"}, "unknown job kind"),
            ({"project": 7, "batch_size": 0}, "batch_size"),
            ({"project": 7, "batch_size": True}, "batch_size"),
        ]:
            reply = client.post("/jobs", json=body)
            assert reply.status_code == 400 and reason in reply.json()["error"], (body, reply.text)
        assert client.post("/jobs", json={"project": 9}).status_code == 404
    wrong = make_client(fakes.Echo, label_studio_url=fake.url, label_studio_api_key="wrong")
    assert wrong.post("/jobs", json={"project": 7}).status_code == 502
    unset = make_client(fakes.Echo)
    reply = unset.post("/jobs", json={"project": 7})
    assert reply.status_code == 400 and "LABEL_STUDIO_URL" in reply.json()["error"]


# --- Redis ---------------------------------------------------------------------------------------
def worker_env(fake: FakeLabelStudio, redis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "LABEL_STUDIO_URL": fake.url,
        "LABEL_STUDIO_API_KEY": FAKE_LS_TOKEN,
        "MODEL_DIR": str(tmp_path / "workers"),
        "LSML_PREANNOTATE_LEASE_S": "2",
        "KEYWORD_LOG": str(tmp_path / "predict.log"),
        "LOG_LEVEL": "INFO",
        **extra,
    }


def command(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "label_studio_ml", "preannotate", *args],
        env={**os.environ, **env, "LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_redis_workers_take_chunks_and_status_shows_the_job(redis_server: str, tmp_path: Path) -> None:
    with FakeLabelStudio(texts=texts(230, boom=(11, 150))) as fake:
        fake.delay_s["import"] = 0.2  # long enough for the two workers' writes to overlap, were they let
        env = worker_env(fake, redis_server, tmp_path)
        with (
            ServerProcess(KEYWORD, env=env, command="worker", wait_healthy=False) as one,
            ServerProcess(KEYWORD, env=env, command="worker", wait_healthy=False) as two,
        ):
            done = command(env, str(KEYWORD), "--project", "7", "--chunk-size", "50", "--json")
            assert done.returncode == 0, done.stderr + one.log_tail() + two.log_tail()
            summary = json_lines(done.stdout)[-1]
            assert (summary["state"], summary["done"], summary["failed"], summary["total"]) == ("done", 228, 2, 230)
            assert_one_prediction_each(fake, "keyword-0", except_ids={111, 250})
            assert {f["task"] for f in summary["failures"]} == {111, 250}
            status = command(env, "--status", summary["job"])
            record = json.loads(status.stdout)
            assert status.returncode == 0 and record["kind"] == "preannotate" and record["state"] == "done"
            assert (record["chunks_total"], record["chunks_done"], record["done"], record["planned"]) == (
                5,
                5,
                228,
                True,
            )
            assert "chunk 1 done" in one.log_tail() + two.log_tail()
            # the planner's one page read is the only one: each chunk's first worker got its tasks from Redis
            assert fake.count("tasks") == 1
            assert ("import", "import") not in fake.together, "one bulk write into the project at a time"
            again = command(env, str(KEYWORD), "--project", "7", "--json")
            last = json_lines(again.stdout)[-1]
            assert again.returncode == 0 and last["job"] != summary["job"]
            assert (last["done"], last["skipped"], last["failed"]) == (0, 228, 2)
            assert_one_prediction_each(fake, "keyword-0", except_ids={111, 250})
    missing = command(env, "--status", "nope")
    assert missing.returncode == 2 and "no pre-annotation job 'nope'" in missing.stderr


def test_an_expired_lease_puts_the_chunk_back_on_the_queue(redis_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import redis
    from rq import Queue
    from rq.job import Job, JobStatus

    from label_studio_ml.preannotate.bulk import Options
    from label_studio_ml.preannotate.redis_queue import RedisJob

    monkeypatch.setenv("LSML_PREANNOTATE_LEASE_S", "0.5")
    monkeypatch.setenv("LSML_PREANNOTATE_ATTEMPTS", "3")
    client = redis.Redis.from_url(redis_server)
    queue = Queue("lsml-test-preannotate", connection=client)
    job = RedisJob.create(client, 7, "v-1", queue.name, "http://ls", "<View/>", Options())
    chunk = job.add_chunk([{"id": i, "data": {"text": "t"}} for i in (1, 2, 3)])
    job.enqueue(queue, chunk)
    assert job.requeue_lost(queue) == 0, "waiting on the queue"
    taken = Job.fetch(job.rq_id(chunk, 0), connection=client)
    queue.remove(taken)  # a worker took it ...
    taken.set_status(JobStatus.STARTED)
    client.set(f"{job.key}:lease:{chunk}", "worker-1", px=400)  # ... holds the lease, and is killed
    time.sleep(0.6)
    assert client.exists(f"{job.key}:lease:{chunk}") == 0
    assert job.requeue_lost(queue) == 1
    assert queue.job_ids == [job.rq_id(chunk, 1)]
    assert job.requeue_lost(queue) == 0, "requeued once"
    queue.empty()
    time.sleep(0.6)
    assert job.requeue_lost(queue) == 1 and queue.job_ids == [job.rq_id(chunk, 2)]
    queue.empty()
    time.sleep(0.6)
    assert job.requeue_lost(queue) == 0
    record = job.public()
    assert record["state"] == "stopped" and "chunk 1 failed 3 times" in record["error"]


def test_redis_worker_killed_mid_chunk_loses_it_to_the_other(redis_server: str, tmp_path: Path) -> None:
    import redis

    with FakeLabelStudio(texts=texts(160)) as fake:
        env = worker_env(fake, redis_server, tmp_path, KEYWORD_DELAY_S="0.02")
        log = Path(env["KEYWORD_LOG"])
        with (
            ServerProcess(KEYWORD, env=env, command="worker", wait_healthy=False) as one,
            ServerProcess(KEYWORD, env=env, command="worker", wait_healthy=False) as two,
        ):
            cmd = subprocess.Popen(
                [sys.executable, "-m", "label_studio_ml", "preannotate", str(KEYWORD), "--project", "7"]
                + ["--chunk-size", "40", "--json"],
                env={**os.environ, **env, "LOG_LEVEL": "WARNING"},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            client = redis.Redis.from_url(redis_server)

            def victim_holds_a_lease() -> bool:
                for key in client.scan_iter("lsml:pa:*:lease:*"):
                    if (client.get(key) or b"").decode().startswith(f"{one.proc.pid}-"):
                        return log.exists() and f'"pid": {one.proc.pid}' in log.read_text()
                return False

            wait_for(victim_holds_a_lease)
            os.kill(one.proc.pid, signal.SIGKILL)  # in the middle of a chunk: it leased it and predicted some
            out, err = cmd.communicate(timeout=120)
            assert cmd.returncode == 0, err + two.log_tail()
        summary = json_lines(out)[-1]
        assert (summary["done"], summary["failed"], summary["total"]) == (160, 0, 160)
        assert_one_prediction_each(fake, "keyword-0")
        assert "lost its worker; queued again" in err + two.log_tail(200)
        rereads = [c for c in fake.requests if c["kind"] == "tasks" and "selectedItems" in c["query"].get("query", "")]
        assert rereads, "the killed worker's chunk was read again before its second attempt predicted it"


def test_progress_lines_rate_from_the_start_count_work_only_and_never_repeat() -> None:
    """Issue 21 #10: the first line said 0.0 tasks/s at 500 done; a run with everything already done said 330
    tasks/s; the last line could print twice."""
    import io

    from label_studio_ml.preannotate.progress import Counts

    out = io.StringIO()
    reporter = JsonLines(out, interval=3600)
    reporter.started -= 2  # two seconds into the job
    reporter.rate.points[0] = (reporter.started, 0)
    counts = Counts(done=500, total=1000)
    reporter.update(counts, force=True)
    reporter.update(counts, force=True)  # the last page's line, then the forced final one: equal
    reporter.finish(counts, "done")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["progress", "summary"]
    assert 200 < lines[0]["tasks_per_s"] < 300 and lines[0]["eta_s"] is not None
    skipped_only = io.StringIO()
    nothing_to_do = JsonLines(skipped_only)
    nothing_to_do.finish(Counts(skipped=1000, total=1000), "done")
    assert json.loads(skipped_only.getvalue())["tasks_per_s"] == 0.0
