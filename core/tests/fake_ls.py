"""A fake Label Studio for bulk pre-annotation tests: the project, task list (keyset query with the
versions column), prediction import and single prediction endpoints of LS 1.23.2, on a real HTTP
server on loopback. Records every call; failures can be injected per endpoint."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "fake-ls-token-0123456789"
CONFIG = """<View><Text name="text" value="$text"/><Choices name="label" toName="text">
<Choice value="Positive"/><Choice value="Negative"/></Choices></View>"""


class FakeLS:
    def __init__(self, project: int = 7, texts: list[str] | None = None, label_config: str = CONFIG) -> None:
        self.project = project
        self.label_config = label_config
        self.tasks: dict[int, dict[str, Any]] = {}
        self.predictions: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.calls: list[dict[str, Any]] = []  # method, path, kind, query/body
        self.lock = threading.Lock()
        # endpoint kind ("project", "tasks", "import", "prediction") -> statuses answered to its next calls
        self.fail_next: dict[str, list[int]] = defaultdict(list)
        self.store_then_fail: list[int] = []  # import: store the predictions, then answer this status
        self.down = False  # every call answers 503
        self.down_after: dict[str, int] = {}  # endpoint kind -> calls answered before it answers 503 only
        self.reject_label: str | None = None  # import silently drops predictions with this label (LS's check)
        for i, text in enumerate(texts or []):
            self.add_task(100 + i, text)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                kind = fake.kind(method, parts.path)
                with fake.lock:
                    fake.calls.append(
                        {"method": method, "path": parts.path, "kind": kind, "query": query, "body": body}
                    )
                    injected = fake.fail_next[kind].pop(0) if fake.fail_next[kind] else None
                    if kind in fake.down_after and fake.count(kind) > fake.down_after[kind]:
                        injected = 503
                if self.headers.get("Authorization") != f"Token {TOKEN}":
                    return self._reply(401, {"detail": "Invalid token."})
                if fake.down or injected:
                    return self._reply(injected or 503, {"detail": "injected failure"})
                status, reply = fake.answer(kind, parts.path, query, body)
                self._reply(status, reply)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeLS:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- state ---------------------------------------------------------------------------------
    def add_task(self, task_id: int, text: str, versions: tuple[str, ...] = ()) -> None:
        self.tasks[task_id] = {"id": task_id, "data": {"text": text}, "project": self.project}
        for version in versions:
            self.predictions[task_id].append({"result": [], "score": None, "model_version": version})

    def versions_of(self, task_id: int) -> list[str]:
        with self.lock:
            return [p["model_version"] for p in self.predictions.get(task_id, [])]

    def count(self, kind: str) -> int:
        return sum(1 for c in self.calls if c["kind"] == kind)

    @staticmethod
    def kind(method: str, path: str) -> str:
        if path.startswith("/api/projects/") and path.endswith("/import/predictions"):
            return "import"
        if path.startswith("/api/projects/"):
            return "project"
        if path == "/api/tasks/":
            return "tasks"
        if path == "/api/predictions/" and method == "POST":
            return "prediction"
        return "other"

    # --- answers -------------------------------------------------------------------------------
    def answer(self, kind: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if kind == "project":
            if int(path.strip("/").split("/")[2]) != self.project:
                return 404, {"detail": "Not found."}
            return 200, {"id": self.project, "title": "fake", "label_config": self.label_config}
        if kind == "tasks":
            return self.task_list(query)
        if kind == "import":
            return self.import_predictions(int(path.split("/")[3]), body)
        if kind == "prediction":
            if body.get("task") not in self.tasks:
                return 400, {"detail": "Validation error", "validation_errors": {"task": ["Invalid pk"]}}
            with self.lock:
                self.predictions[body["task"]].append(body)
            return 201, {"id": 1, **body}
        return 404, {"detail": "not found"}

    def task_list(self, query: dict[str, str]) -> tuple[int, Any]:
        if int(query.get("project", 0)) != self.project:
            return 404, {"detail": "Not found."}
        spec = json.loads(query.get("query") or "{}")
        after = 0
        for item in spec.get("filters", {}).get("items", []):
            if item["filter"] == "filter:tasks:id" and item["operator"] == "greater":
                after = int(item["value"])
        included = (spec.get("selectedItems") or {}).get("included")
        with self.lock:
            ids = sorted(i for i in self.tasks if i > after and (included is None or i in included))
            size = int(query.get("page_size", 100))
            page = []
            for task_id in ids[:size]:
                versions = sorted({p["model_version"] for p in self.predictions.get(task_id, [])})
                task = {**self.tasks[task_id], "predictions_model_versions": ",".join(versions)}
                if query.get("fields") == "all":
                    task["predictions"] = [dict(p) for p in self.predictions.get(task_id, [])]
                page.append(task)
        return 200, {"total": len(ids), "tasks": page}

    def import_predictions(self, project: int, items: list[dict[str, Any]]) -> tuple[int, Any]:
        if project != self.project:
            return 404, {"detail": "Not found."}
        with self.lock:
            missing = [p["task"] for p in items if p["task"] not in self.tasks]
            if missing:
                return 400, {"detail": "Validation error", "validation_errors": {"non_field_errors": [str(missing)]}}
            created = 0
            for item in items:
                labels = [c for r in item.get("result") or [] for c in r.get("value", {}).get("choices", [])]
                if self.reject_label is not None and self.reject_label in labels:
                    continue
                self.predictions[item["task"]].append(item)
                created += 1
            if self.store_then_fail:
                return self.store_then_fail.pop(0), {"detail": "stored, then failed"}
        return 201, {"created": created}
