import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the service folder: `import model`
sys.path.insert(0, str(Path(__file__).resolve().parent))  # fake_openai

from fake_openai import ScriptedOpenAI  # noqa: E402

PROVIDER_ENV = (
    "LLM_PROVIDER",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_MODEL",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_DEPLOYMENT",
    "AZURE_OPENAI_API_VERSION",
    "LLM_DEFAULT_PROMPT",
    "LLM_SYSTEM_PROMPT",
    "LLM_PROMPT_FIELD",
    "LLM_RESPONSE_FIELD",
    "LLM_BACKOFF",
    "LLM_MAX_RETRIES",
    "LLM_TIMEOUT",
    "LLM_DEADLINE",
    "LLM_MAX_TOKENS",
    "LLM_TEMPERATURE",
    "LLM_CONCURRENCY",
)


@pytest.fixture(autouse=True)
def clean_provider_env(monkeypatch):
    """Tests start from no provider settings and no cached clients."""
    from model import LLMInteractive

    for name in PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
    LLMInteractive._clients.clear()
    yield
    LLMInteractive._clients.clear()


@pytest.fixture
def openai_server():
    with ScriptedOpenAI() as server:
        yield server


@pytest.fixture
def use_server(monkeypatch, openai_server):
    """Point the service at the scripted server with a key and fast backoff; returns the server."""
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url + "/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET-0123456789")
    monkeypatch.setenv("OPENAI_MODEL", "scripted-model")
    monkeypatch.setenv("LLM_BACKOFF", "0.05")
    return openai_server
