"""Faults and hostile input under load, in one run: what keeps answering, and whether anything is lost.

A server and a worker (REDIS_URL, a real redis-server) serve core's test model ``trainable`` while four
threads send /predict all along. Meanwhile: a worker is SIGKILLed mid-training, 16 predictions fetch
media from a server that drips a byte every 0.1 s, Redis is stopped for 10 s, and a list of hostile
requests is sent. Every webhook carries its own annotation id; the model records the ids it trained on,
so a lost webhook shows as a missing id.

python benchmarks/robustness.py      (needs redis-server on PATH and core installed with [redis])
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import redis
import requests

from label_studio_ml.testing.plugin import ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "core" / "tests" / "models" / "trainable.py"
CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
    '<Choice value="Positive"/><Choice value="Negative"/></Choices></View>'
)
OUTAGE_S = 10.0
HUGE = "9" * 4301


class Media(ThreadingHTTPServer):
    """/drip: one byte every 0.1 s for 10 s; anything else: 200 with the request's Authorization recorded."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []
        media = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                try:
                    if self.path == "/drip":
                        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
                        for _ in range(100):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            time.sleep(0.1)
                        return
                    media.authorizations.append(self.headers.get("Authorization", ""))
                    self.send_response(200)
                    self.send_header("Content-Length", "5")
                    self.end_headers()
                    self.wfile.write(b"hello")
                except OSError:  # the backend gave up on it: as it should
                    pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


class Redis:
    """redis-server on one port, stopped (its data saved) and started again on the same one."""

    def __init__(self, folder: Path) -> None:
        self.port, self.folder = free_port(), folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis(port=self.port)
        self.start()

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        self.proc = subprocess.Popen([*args, "--save", ""], stdout=subprocess.DEVNULL)
        for _ in range(200):
            try:
                if self.client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.client.shutdown(save=True)
        self.proc.wait(10)


class Load:
    """Threads sending 10-task /predict requests until stopped; every answer other than 200 is a failure."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url, self.stopping = url, threading.Event()
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def run(self) -> None:
        body = {"tasks": [{"data": {"text": f"text {i}"}} for i in range(10)], "project": "3", "label_config": CONFIG}
        with requests.Session() as http:
            while not self.stopping.is_set():
                started = time.perf_counter()
                try:
                    reply = http.post(self.url + "/predict", json=body, timeout=10)
                    ok = reply.status_code == 200 and len(reply.json()["results"]) == 10
                    (self.latencies if ok else self.failures).append(
                        time.perf_counter() - started if ok else f"{reply.status_code} {reply.text[:120]}"
                    )
                except requests.RequestException as exc:
                    self.failures.append(repr(exc))

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(15)


class Webhooks:
    """Annotation webhooks, each with its own annotation id."""

    def __init__(self, url: str) -> None:
        self.url, self.sent = url, []

    def send(self, label: str = "Positive") -> requests.Response:
        annotation = len(self.sent) + 1
        self.sent.append(annotation)
        body = {
            "action": "ANNOTATION_CREATED",
            "project": {"id": 3, "label_config": CONFIG},
            "label": label,
            "annotation": {"id": annotation},
            "task": {"id": annotation, "data": {"text": "x"}},
        }
        return requests.post(self.url + "/webhook", json=body, timeout=5)


def jobs(url: str) -> list[dict[str, Any]]:
    return requests.get(url + "/jobs?project=3", timeout=5).json()["jobs"]


def kill_worker_mid_training(url: str, env: dict[str, str], hooks: Webhooks) -> tuple[float, ServerProcess]:
    """Seconds from the SIGKILL until training has gone on (a later event trained); the new worker."""
    doomed = ServerProcess(TARGET, env={**env, "TRAINABLE_FIT_SECONDS": "30"}, command="worker", wait_healthy=False)
    doomed.start()
    hooks.send()
    deadline = time.monotonic() + 30
    while not (jobs(url)[0]["state"] == "running" and jobs(url)[0]["progress"] > 0):
        if time.monotonic() > deadline:
            raise RuntimeError("the training job never ran: " + doomed.log_tail())
        time.sleep(0.05)
    os.kill(doomed.proc.pid, signal.SIGKILL)
    doomed.proc.wait(10)
    doomed.stop(kill=True)
    killed = time.monotonic()
    later = hooks.send().json()["job"]
    worker = ServerProcess(TARGET, env=env, command="worker", wait_healthy=False).start()
    while next(j for j in jobs(url) if j["id"] == later)["state"] != "done":
        if time.monotonic() - killed > 120:
            raise RuntimeError("training did not go on: " + worker.log_tail())
        time.sleep(0.1)
    return time.monotonic() - killed, worker


def drip_media(url: str, media: Media) -> tuple[float, float, int]:
    """(seconds of an ordinary /predict while 16 drip-fed ones run, the longest drip-fed one, 5xx among them)."""
    body = {"tasks": [{"id": 1, "data": {"text": f"{media.url}/drip"}}], "project": "3", "label_config": CONFIG}
    replies: list[tuple[float, int]] = []

    def slow() -> None:
        started = time.monotonic()
        status = requests.post(url + "/predict", json=body, timeout=30).status_code
        replies.append((time.monotonic() - started, status))

    threads = [threading.Thread(target=slow) for _ in range(16)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    ordinary = {"tasks": [{"id": 2, "data": {"text": "plain"}}], "project": "3", "label_config": CONFIG}
    requests.post(url + "/predict", json=ordinary, timeout=30).raise_for_status()
    ordinary_s = time.monotonic() - started
    for thread in threads:
        thread.join(30)
    return ordinary_s, max(s for s, _ in replies), sum(status >= 500 for _, status in replies)


def redis_outage(store: Redis, hooks: Webhooks) -> int:
    """Redis stopped for OUTAGE_S while 5 webhooks arrive; how many of those the server did not accept."""
    store.stop()
    began, refused = time.monotonic(), 0
    for n in range(5):
        time.sleep(OUTAGE_S / 6)
        refused += hooks.send("Negative" if n == 4 else "Positive").status_code not in (200, 201)
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - began)))
    store.start()
    return refused


def hostile_requests(url: str, media: Media) -> tuple[int, list[str]]:
    """Bad input of every kind seen in issue 21 and before; (how many, those answered 5xx or wrongly)."""
    ls_path = {"project": "3", "label_config": CONFIG}
    tries: list[tuple[str, str, Any, range]] = [
        ("GET", f"/versions?project={HUGE}", None, range(400, 401)),
        ("GET", f"/jobs?project={HUGE}", None, range(400, 401)),
        ("POST", "/jobs", {"project": HUGE}, range(400, 401)),
        ("POST", "/setup", {"project": HUGE, "schema": CONFIG}, range(400, 401)),
        ("POST", "/predict", {"project": HUGE, "tasks": [{"data": {"text": "x"}}]}, range(400, 401)),
        ("POST", "/webhook", {"action": "ANNOTATION_CREATED", "project": {"id": HUGE}}, range(400, 401)),
        ("POST", "/webhook", {"action": "START_TRAINING", "project": {"id": 2**64}}, range(400, 401)),
        ("OPTIONS", "/jobs", None, range(405, 406)),
        ("POST", "/predict", "{not json", range(400, 401)),
        ("POST", "/predict", {"tasks": "nope"}, range(422, 423)),
        ("POST", "/setup", {"project": "3", "schema": "<View><Text"}, range(422, 423)),
        (
            "POST",
            "/predict",
            {**ls_path, "tasks": [{"id": 1, "data": {"text": "http://169.254.169.254/x"}}]},
            range(422, 423),
        ),
        (
            "POST",
            "/predict",
            {**ls_path, "tasks": [{"id": 1, "data": {"text": "/data/upload/../../api/x"}}]},
            range(422, 423),
        ),
        (
            "POST",
            "/predict",
            {**ls_path, "tasks": [{"id": 1, "data": {"text": "file:///etc/passwd"}}]},
            range(200, 201),
        ),
        # an unauthenticated /setup naming another host: the token that came with LS's /setup never goes there
        ("POST", "/setup", {"project": "3", "schema": CONFIG, "hostname": media.url}, range(200, 201)),
        (
            "POST",
            "/predict",
            {**ls_path, "tasks": [{"id": 1, "data": {"text": "/data/upload/1/a.txt"}}]},
            range(200, 600),
        ),
    ]
    wrong = []
    for method, path, body, expected in tries:
        kwargs = {"data": body} if isinstance(body, str) else {"json": body}
        reply = requests.request(method, url + path, timeout=10, **kwargs)
        if reply.status_code not in expected:
            wrong.append(f"{method} {path[:40]} -> {reply.status_code} {reply.text[:100]}")
    return len(tries), wrong


def main() -> None:
    if shutil.which("redis-server") is None:
        sys.exit("needs redis-server on PATH (Debian: apt-get install redis-server)")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "redis").mkdir()
        store, media = Redis(tmp / "redis"), Media()
        env = {
            "MODEL_DIR": str(tmp / "models"),
            "REDIS_URL": store.url,
            "TRAINABLE_FIT_SECONDS": "0",
            "WORKER_LEASE_SECONDS": "2",
            "MEDIA_TIMEOUT": "2",
            "THREADS": "4",
            "LOG_LEVEL": "ERROR",
        }
        worker = None
        try:
            with ServerProcess(TARGET, env=env) as server:
                url = server.url
                requests.post(
                    url + "/setup",
                    json={
                        "project": "3",
                        "schema": CONFIG,
                        "hostname": "http://ls.invalid",
                        "access_token": "ls-token-secret",
                    },
                    timeout=5,
                ).raise_for_status()
                hooks = Webhooks(url)
                load = Load(url)
                time.sleep(1)
                recovery_s, worker = kill_worker_mid_training(url, env, hooks)
                ordinary_s, drip_s, drip_5xx = drip_media(url, media)
                refused = redis_outage(store, hooks)
                bad_tried, bad_wrong = hostile_requests(url, media)
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    trained = set(json.loads(store.client.get("lsml:3:annotation_ids") or b"[]"))
                    if trained >= set(hooks.sent):
                        break
                    time.sleep(0.2)
                load.stop()
        finally:
            if worker is not None:
                worker.stop()
            store.proc.terminate()
            media.shutdown()
    lost = sorted(set(hooks.sent) - trained)
    leaks = sum("ls-token-secret" in a for a in media.authorizations)
    p50 = statistics.median(load.latencies) * 1000
    p99 = statistics.quantiles(load.latencies, n=100)[98] * 1000
    print(
        f"requests under load       {len(load.latencies) + len(load.failures):,} /predict (10 tasks each), "
        f"{len(load.failures)} failed, p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )
    print("faults injected           3 plus hostile input:")
    print(f"  worker SIGKILLed mid-training   training went on after {recovery_s:.1f} s (lease 2 s)")
    print(
        f"  16 drip-fed media fetches       each ended within {drip_s:.1f} s (MEDIA_TIMEOUT 2 s), {drip_5xx} 5xx; "
        f"an ordinary /predict meanwhile {ordinary_s * 1000:.0f} ms (p50 under load {p50:.0f} ms)"
    )
    print(f"  Redis stopped {OUTAGE_S:.0f} s             {refused} of 5 webhooks refused during it")
    print(f"bad inputs tried          {bad_tried}, answered wrongly or 5xx: {len(bad_wrong)}")
    for line in bad_wrong:
        print("   ", line)
    print(
        f"lost                      webhooks {len(lost)} of {len(hooks.sent)} (ids {lost}), failed /predict under "
        f"load {len(load.failures)}, LS token sent to another host {leaks}"
    )
    print(f"anything lost: {len(lost) + len(load.failures) + leaks}")
    for failure in load.failures[:5]:
        print("   ", failure)


if __name__ == "__main__":
    main()
