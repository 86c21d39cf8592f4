"""A small chat-completions client for OpenAI-compatible endpoints and Azure OpenAI.

Timeouts, retries with exponential backoff on 429/5xx and connection errors (``Retry-After``
honoured), a deadline for the whole call, and typed errors. The API key goes into one request
header and nowhere else: not into messages, exceptions or ``repr``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from label_studio_ml.clients.outbound import Deadline, guarded_session

logger = logging.getLogger(__name__)

RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504}
DEFAULT_OPENAI_URL = "https://api.openai.com/v1"
DEFAULT_AZURE_API_VERSION = "2024-10-21"
#: after an auth failure, or a call that ran out of retries, calls with the same settings fail at once
#: for this long without a request (core retries a failed batch task by task: no request storm)
AUTH_FAIL_FAST_S = 30.0
UNAVAILABLE_FAIL_FAST_S = 10.0
_TRUE = {"1", "true", "yes", "on"}


class ProviderError(RuntimeError):
    """The provider answered with an error, or could not be reached in time."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class ProviderAuthError(ProviderError):
    """401/403: the key is missing, wrong or lacks access. Retrying does not help."""


@dataclass(frozen=True)
class ProviderSettings:
    provider: str = "openai"  # "openai" (any OpenAI-compatible server) or "azure"
    base_url: str = DEFAULT_OPENAI_URL
    api_key: str = field(default="", repr=False)
    model: str = "gpt-4o-mini"
    azure_endpoint: str = ""
    azure_deployment: str = ""
    azure_api_version: str = DEFAULT_AZURE_API_VERSION
    temperature: float = 0.0
    max_tokens: int = 512
    timeout: float = 60.0  # seconds per HTTP request
    max_retries: int = 3
    backoff: float = 1.0  # first retry waits about this long, then doubles
    deadline: float = 90.0  # seconds for one call, retries included (LS waits 100 s)
    extra_headers: dict[str, str] = field(default_factory=dict, repr=False, hash=False, compare=False)

    #: keys of ``extra_params`` (per project, set on the LS connection) and the env names they override
    OVERRIDES = {
        "provider": "LLM_PROVIDER",
        "base_url": "OPENAI_BASE_URL",
        "api_key": "OPENAI_API_KEY",
        "model": "OPENAI_MODEL",
        "azure_endpoint": "AZURE_OPENAI_ENDPOINT",
        "azure_api_key": "AZURE_OPENAI_API_KEY",
        "azure_deployment": "AZURE_OPENAI_DEPLOYMENT",
        "azure_api_version": "AZURE_OPENAI_API_VERSION",
        "temperature": "LLM_TEMPERATURE",
        "max_tokens": "LLM_MAX_TOKENS",
        "timeout": "LLM_TIMEOUT",
        "max_retries": "LLM_MAX_RETRIES",
        "backoff": "LLM_BACKOFF",
        "deadline": "LLM_DEADLINE",
    }

    @classmethod
    def resolve(cls, env: Mapping[str, str], extra: Mapping[str, Any] | None = None) -> ProviderSettings:
        """Settings from the environment, overridden by a project's ``extra_params``.

        ``extra_params`` may use the short keys of ``OVERRIDES`` or the env names. A key from the
        environment is only ever sent to the endpoint from the environment: a project that points
        at another endpoint must bring its own key (so a project admin cannot collect the
        server's key by setting ``base_url``).
        """
        extra = dict(extra or {})

        def pick(key: str, default: str = "") -> tuple[str, bool]:
            """(value, overridden): overridden when extra_params sets a value the env does not have."""
            value = env.get(cls.OVERRIDES[key])
            for name in (key, cls.OVERRIDES[key]):
                if extra.get(name) not in (None, ""):
                    return str(extra[name]), str(extra[name]).rstrip("/") != str(value or "").rstrip("/")
            return (str(value), False) if value not in (None, "") else (default, False)

        azure_endpoint, azure_endpoint_override = pick("azure_endpoint")
        provider = pick("provider", "azure" if azure_endpoint else "openai")[0].strip().lower()
        if provider not in ("openai", "azure"):
            raise ValueError(f"LLM_PROVIDER must be 'openai' or 'azure', not {provider!r}")
        if provider == "azure":
            key, key_override = pick("azure_api_key")
            endpoint_override = azure_endpoint_override
        else:
            key, key_override = pick("api_key")
            endpoint_override = pick("base_url")[1]
        if endpoint_override and not key_override:
            key = ""
        base_url = pick("base_url", DEFAULT_OPENAI_URL)[0].rstrip("/")
        if provider == "azure" and not azure_endpoint:
            raise ValueError("LLM_PROVIDER=azure needs AZURE_OPENAI_ENDPOINT")
        headers = extra.get("headers") if isinstance(extra.get("headers"), dict) else {}
        return cls(
            provider=provider,
            base_url=base_url,
            api_key=key,
            model=pick("model", cls.model)[0],
            azure_endpoint=azure_endpoint.rstrip("/"),
            azure_deployment=pick("azure_deployment")[0] or pick("model", cls.model)[0],
            azure_api_version=pick("azure_api_version", DEFAULT_AZURE_API_VERSION)[0],
            temperature=float(pick("temperature", str(cls.temperature))[0]),
            max_tokens=int(pick("max_tokens", str(cls.max_tokens))[0]),
            timeout=float(pick("timeout", str(cls.timeout))[0]),
            max_retries=max(0, int(pick("max_retries", str(cls.max_retries))[0])),
            backoff=max(0.0, float(pick("backoff", str(cls.backoff))[0])),
            deadline=float(pick("deadline", str(cls.deadline))[0]),
            extra_headers={str(k): str(v) for k, v in headers.items()},
        )

    @property
    def url(self) -> str:
        if self.provider == "azure":
            return (
                f"{self.azure_endpoint}/openai/deployments/{self.azure_deployment}/chat/completions"
                f"?api-version={self.azure_api_version}"
            )
        return f"{self.base_url}/chat/completions"

    @property
    def endpoint(self) -> str:
        """What logs may say about where calls go (no query string, no credentials in the URL)."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.extra_headers}
        if self.api_key:
            if self.provider == "azure":
                headers["api-key"] = self.api_key
            else:
                headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def fingerprint(self) -> tuple[Any, ...]:
        """Identifies a client configuration (the key enters only as a hash)."""
        return (
            self.url,
            hash(self.api_key),
            self.model,
            self.temperature,
            self.max_tokens,
            self.timeout,
            self.max_retries,
            self.backoff,
            self.deadline,
            tuple(sorted(self.extra_headers.items())),
        )


@dataclass
class Completion:
    text: str
    model: str
    finish_reason: str | None
    usage: dict[str, Any]
    attempts: int
    seconds: float


class ChatClient:
    """Chat completions against one provider configuration; thread-safe."""

    def __init__(
        self, settings: ProviderSettings, session: requests.Session | None = None, sleep: Any = time.sleep
    ) -> None:
        self.settings = settings
        # no proxy/netrc surprises (endpoints are configured explicitly); sockets obey Deadline below
        self.session = session or guarded_session()
        self.session.trust_env = False
        self._sleep = sleep
        self._lock = threading.Lock()
        self._failure: tuple[float, float, ProviderError] | None = None  # (since, for how long, error)

    def _fail(self, error: ProviderError, hold: float) -> ProviderError:
        with self._lock:
            self._failure = (time.monotonic(), hold, error)
        return error

    def complete(self, messages: list[dict[str, Any]], deadline: float | None = None, **params: Any) -> Completion:
        """One chat completion. Raises ProviderAuthError at once on 401/403, ProviderError when
        retries or the deadline (a ``time.monotonic()`` value; default now + settings.deadline) run out."""
        with self._lock:
            failure = self._failure
        if failure and time.monotonic() - failure[0] < failure[1]:
            raise failure[2]
        s = self.settings
        body: dict[str, Any] = {"messages": messages, "temperature": s.temperature, "max_tokens": s.max_tokens}
        if s.provider != "azure":
            body["model"] = s.model
        body.update(params)
        started = time.monotonic()
        deadline = min(deadline or started + s.deadline, started + s.deadline)
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._fail(
                    ProviderError(
                        f"{s.endpoint}: no answer within the deadline "
                        f"(LLM_DEADLINE={s.deadline:g} s, {attempt - 1} attempt(s))"
                    ),
                    UNAVAILABLE_FAIL_FAST_S,
                )
            retry_after: float | None = None
            try:
                with Deadline(remaining):  # the whole answer, however slowly it arrives
                    reply = self.session.post(
                        s.url, json=body, headers=s.headers(), timeout=(min(10.0, remaining), min(s.timeout, remaining))
                    )
            except requests.RequestException as exc:
                problem, status = f"{type(exc).__name__}", None
            else:
                status = reply.status_code
                if status == 200:
                    return self._parse(reply, attempt, time.monotonic() - started)
                problem = f"HTTP {status}: {_error_message(reply)}"
                if status in (401, 403):
                    reason = (
                        f"{s.endpoint} refused the request with HTTP {status} "
                        f"({_error_message(reply)}): check "
                        f"{'AZURE_OPENAI_API_KEY' if s.provider == 'azure' else 'OPENAI_API_KEY'} "
                        f"(or 'api_key' in the connection's extra params)"
                    )
                    raise self._fail(ProviderAuthError(reason, status), AUTH_FAIL_FAST_S)
                if status not in RETRY_STATUSES:
                    raise ProviderError(f"{s.endpoint}: {problem}", status)
                retry_after = _retry_after(reply)
            if attempt > s.max_retries:
                raise self._fail(
                    ProviderError(f"{s.endpoint}: {problem} after {attempt} attempt(s)", status),
                    UNAVAILABLE_FAIL_FAST_S,
                )
            wait = retry_after if retry_after is not None else s.backoff * (2 ** (attempt - 1))
            wait = wait * (1 + 0.1 * random.random()) if retry_after is None else wait
            wait = min(wait, max(0.0, deadline - time.monotonic()))
            logger.warning("%s: %s; retry %d/%d in %.2f s", s.endpoint, problem, attempt, s.max_retries, wait)
            self._sleep(wait)

    def _parse(self, reply: requests.Response, attempts: int, seconds: float) -> Completion:
        try:
            data = reply.json()
            choice = data["choices"][0]
            content = choice["message"].get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise ProviderError(f"{self.settings.endpoint}: the answer is not a chat completion", 200) from None
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return Completion(
            text=content or "",
            model=str(data.get("model") or self.settings.model),
            finish_reason=choice.get("finish_reason"),
            usage=data.get("usage") or {},
            attempts=attempts,
            seconds=seconds,
        )


def _error_message(reply: requests.Response) -> str:
    """The provider's own short error message (bodies never echo our key)."""
    try:
        data = reply.json()
        error = data.get("error", data) if isinstance(data, dict) else data
        message = error.get("message") if isinstance(error, dict) else error
        text = str(message if message is not None else data)
    except ValueError:
        text = reply.text
    text = " ".join(text.split())
    return text[:200] or reply.reason or "no message"


def _retry_after(reply: requests.Response) -> float | None:
    value = reply.headers.get("Retry-After", "").strip()
    try:
        return min(max(float(value), 0.0), 30.0) if value else None
    except ValueError:
        return None


def env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    return default if value in (None, "") else str(value).strip().lower() in _TRUE
