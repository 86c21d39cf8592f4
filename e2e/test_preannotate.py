"""Bulk pre-annotation against a real Label Studio 1.23.2: a 2,000-task project, the command killed
with SIGKILL halfway and run again (every task ends with exactly one prediction of the version, a
third run writes nothing); then the same on Redis with two workers, one killed in the middle of a
chunk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from label_studio_ml.testing.plugin import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "services" / "substring_matching"
VERSION = "substring_matching-0"
SPANS = (
    '<View><Labels name="label" toName="text"><Label value="Fruit"/><Label value="Org"/></Labels>'
    '<Text name="text" value="$text"/></View>'
)
TASKS = 2000


def make_project(ls: Any, title: str) -> int:
    project = ls.create_project(SPANS, title=title)
    ls.import_tasks(project, [{"text": f"task {i}: an apple a day, {i % 7} pears"} for i in range(TASKS)])
    return project


def predictions_per_task(ls: Any, project: int) -> Counter[int]:
    """How many tasks hold 0, 1, 2... predictions of VERSION (all tasks, read in full)."""
    tasks = ls.tasks(project)
    assert len(tasks) == TASKS
    return Counter(sum(1 for p in t["predictions"] if p["model_version"] == VERSION) for t in tasks)


def command_env(ls: Any, tmp_path: Path, token: str | None = None, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "LABEL_STUDIO_URL": ls.url,
        "LABEL_STUDIO_API_KEY": token or ls.token,
        "MODEL_DIR": str(tmp_path / "models"),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def preannotate(env: dict[str, str], project: int, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "label_studio_ml", "preannotate", str(SERVICE), "--project", str(project), "--json"]
        + ["--progress-interval", "0.2", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_when(proc: subprocess.Popen[str], done_at_least: int) -> list[dict[str, Any]]:
    """Read the job's JSON lines; SIGKILL it once a progress line says ``done_at_least`` tasks are written."""
    lines = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = json.loads(raw)
        lines.append(line)
        if line["event"] == "progress" and line["done"] >= done_at_least:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(30)
    return lines


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> dict[str, Any]:
    """The job's summary line, once it exited 0 (its stderr goes into the summary as ``stderr``)."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["event"] == "summary" and summary["state"] == "done", summary
    return {**summary, "stderr": err}


def test_killed_halfway_then_resumed_in_process(label_studio, tmp_path):
    ls = label_studio
    project = make_project(ls, "preannotate in process")
    started = time.monotonic()
    lines = kill_when(preannotate(command_env(ls, tmp_path), project, "--page-size", "100"), TASKS // 3)
    killed_at = [line["done"] for line in lines if line["event"] == "progress"][-1]
    written = predictions_per_task(ls, project)
    assert set(written) <= {0, 1} and TASKS // 3 <= written[1] < TASKS, written
    # resume with a personal access token: the same job, the other token kind
    summary = finish(preannotate(command_env(ls, tmp_path, token=ls.personal_access_token()), project))
    elapsed = time.monotonic() - started
    assert summary["done"] + summary["skipped"] == TASKS and summary["failed"] == 0
    assert summary["skipped"] == written[1] >= killed_at
    assert predictions_per_task(ls, project) == Counter({1: TASKS})
    again = finish(preannotate(command_env(ls, tmp_path), project))
    assert (again["done"], again["skipped"]) == (0, TASKS)
    assert predictions_per_task(ls, project) == Counter({1: TASKS})
    print(
        f"\nin process: {TASKS} tasks in {elapsed:.1f} s over two runs; the resumed run "
        f"{summary['tasks_per_s']} tasks/s; a full rerun with nothing to do {again['elapsed_s']} s"
    )


def test_redis_two_workers_one_killed_mid_chunk(label_studio, redis_server, tmp_path):
    import redis

    ls = label_studio
    project = make_project(ls, "preannotate on workers")
    env = command_env(ls, tmp_path, REDIS_URL=redis_server, LSML_PREANNOTATE_LEASE_S="4")
    one = ServerProcess(SERVICE, env=env, command="worker", wait_healthy=False, log_path=tmp_path / "worker-1.log")
    two = ServerProcess(SERVICE, env=env, command="worker", wait_healthy=False, log_path=tmp_path / "worker-2.log")
    with one, two:
        started = time.monotonic()
        proc = preannotate(env, project, "--chunk-size", "100")
        client = redis.Redis.from_url(redis_server)
        deadline = time.monotonic() + 120
        victim = False
        while not victim:
            assert time.monotonic() < deadline and proc.poll() is None, one.log_tail()
            victim = any(
                (client.get(key) or b"").decode().startswith(f"{one.proc.pid}-")
                for key in client.scan_iter("lsml:pa:*:lease:*")
            )
            time.sleep(0.02)
        os.kill(one.proc.pid, signal.SIGKILL)  # it holds a chunk's lease: in the middle of that chunk
        summary = finish(proc)
        elapsed = time.monotonic() - started
        assert (summary["done"], summary["failed"], summary["total"]) == (TASKS, 0, TASKS), summary
        assert predictions_per_task(ls, project) == Counter({1: TASKS})
        assert "lost its worker; queued again" in summary["stderr"] + two.log_tail(400)
        again = finish(preannotate(env, project, "--chunk-size", "100"))
        assert (again["done"], again["skipped"]) == (0, TASKS)
        assert predictions_per_task(ls, project) == Counter({1: TASKS})
    print(f"\nRedis, 2 workers (one killed): {TASKS} tasks in {elapsed:.1f} s ({TASKS / elapsed:.0f} tasks/s)")


def test_versions_that_ls_filter_cannot_tell_apart_are_read_per_page(label_studio, tmp_path):
    """LS's "versions do not contain" filter matches substrings, case-blind on SQLite: where another
    version contains ours the job reads each page's versions column instead, and still skips only the
    task holding exactly ours."""
    from label_studio_ml.clients.ls_client import LabelStudioClient

    ls = label_studio
    project = ls.create_project(SPANS, title="preannotate look-alike versions")
    ls.import_tasks(project, [{"text": f"an apple, task {i}"} for i in range(30)])
    ids = sorted(t["id"] for t in ls.tasks(project))
    held = {ids[0]: VERSION, ids[1]: VERSION.upper(), ids[2]: f"{VERSION}-old"}
    ls.api(
        "POST",
        f"/api/projects/{project}/import/predictions",
        json=[{"task": task, "result": [], "model_version": version} for task, version in held.items()],
    )
    listed, lacking = LabelStudioClient(ls.url, ls.token).task_page(project, size=100, lacking=VERSION)
    assert lacking == len(listed) == 27 and ids[1] not in {t["id"] for t in listed}, "LS's filter is no exact test"
    summary = finish(preannotate(command_env(ls, tmp_path), project))
    assert (summary["done"], summary["skipped"], summary["total"]) == (29, 1, 30), summary
    tasks = ls.tasks(project)
    assert Counter(sum(1 for p in t["predictions"] if p["model_version"] == VERSION) for t in tasks) == {1: 30}
