"""A scripted OpenAI-compatible server: a real HTTP server on loopback that records every request
and answers from a script (status, body, headers), then with ``answer(request_body) -> str``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from label_studio_ml.testing.plugin import LocalHTTPServer


def completion(text: str, model: str = "scripted") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    }


class ScriptedOpenAI(LocalHTTPServer):
    def __init__(self, answer: Callable[[dict[str, Any]], str] | str = "Positive") -> None:
        self.answer = answer if callable(answer) else (lambda body, text=answer: text)
        self.script: list[tuple[int, Any, dict[str, str], float]] = []
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            wbufsize = -1  # headers and body leave in one write (no delayed-ACK stalls on keep-alive)

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                fake.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "json": body, "time": time.monotonic()}
                )
                delay = 0.0
                if fake.script:
                    status, payload, headers, delay = fake.script.pop(0)
                elif not self.path.split("?")[0].endswith("/chat/completions"):
                    status, payload, headers = 404, {"error": {"message": "not found"}}, {}
                else:
                    status, payload, headers = 200, completion(fake.answer(body or {})), {}
                time.sleep(delay)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                    self.wfile.flush()
                except OSError:  # the client gave up (a timeout test)
                    self.close_connection = True

        super().__init__(Handler)

    def then(
        self, status: int, payload: Any = None, headers: dict[str, str] | None = None, delay: float = 0.0
    ) -> ScriptedOpenAI:
        """Queue one scripted reply (used before the default answers), sent after ``delay`` seconds."""
        if payload is None:
            payload = {"error": {"message": f"scripted {status}", "type": "scripted"}}
        self.script.append((status, payload, headers or {}, delay))
        return self

    def user_text(self, index: int = -1) -> str:
        """The user message's text of a recorded request."""
        content = self.requests[index]["json"]["messages"][-1]["content"]
        if isinstance(content, list):
            return "".join(p.get("text", "") for p in content if p.get("type") == "text")
        return content
