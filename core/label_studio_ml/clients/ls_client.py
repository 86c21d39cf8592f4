"""Talking to Label Studio: token kinds (legacy and personal access token), the export API, and the
task list and prediction import that bulk pre-annotation uses (see preannotate/bulk.py)."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .outbound import Deadline, RefusedAddress, guarded_session

if TYPE_CHECKING:
    import requests  # imported where used: it costs a third of the server's start-up time

logger = logging.getLogger(__name__)


def origin(url: str) -> tuple[str, str, int | None]:
    """scheme, host and port of a URL (default ports made explicit) for same-host checks."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _jwt_payload(token: str) -> dict[str, Any] | None:
    pieces = token.split(".")
    if len(pieces) != 3:
        return None
    try:
        header = json.loads(base64.urlsafe_b64decode(pieces[0] + "=" * (-len(pieces[0]) % 4)))
        payload = json.loads(base64.urlsafe_b64decode(pieces[1] + "=" * (-len(pieces[1]) % 4)))
    except ValueError:
        return None
    return payload if isinstance(header, dict) and isinstance(payload, dict) else None


def is_personal_access_token(token: str) -> bool:
    return _jwt_payload(token) is not None


class LabelStudioError(RuntimeError):
    """An LS API call that did not do what was asked; ``status`` is its HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LabelStudioAuthError(LabelStudioError):
    """401/403: the token is wrong, expired, or may not see the project."""


class LabelStudioNotFound(LabelStudioError):
    pass


class LabelStudioUnavailable(LabelStudioError):
    """No answer, a timeout, 429 or 5xx: worth trying again later."""


#: the versions column LS's data manager shows is cut at this many characters (CHAR_LIMITS in LS 1.23.2)
VERSIONS_COLUMN_LIMIT = 500
#: task fields a model may read (what LS itself sends to /predict, less annotations and drafts)
TASK_FIELDS = ("id", "data", "meta", "project", "inner_id", "created_at", "updated_at", "file_upload", "overlap")
#: what a task list page asks LS for (its ``include``): the task fields and the versions column
PAGE_FIELDS = ",".join((*TASK_FIELDS, "predictions_model_versions"))
#: what a page of tasks LS filtered by version asks for: the task fields only
FILTERED_PAGE_FIELDS = ",".join(TASK_FIELDS)


def prediction_versions(task: dict[str, Any]) -> set[str] | None:
    """Model versions of a task's predictions, from a task list page; None when the page does not tell
    them for sure (the versions column was cut at its length limit)."""
    predictions = task.get("predictions")
    if isinstance(predictions, list) and predictions and isinstance(predictions[0], dict):
        return {str(p.get("model_version")) for p in predictions}
    column = task.get("predictions_model_versions")
    if column is None:
        return None if predictions is None else set()
    # SQLite joins the versions with ",", PostgreSQL with ", " (LS strips the quotes)
    text = column if isinstance(column, str) else ",".join(map(str, column))
    if len(text) >= VERSIONS_COLUMN_LIMIT:
        return None
    return {v.strip() for v in text.split(",") if v.strip()}


class LabelStudioClient:
    """Authenticated requests to one LS host; the token never goes anywhere else."""

    def __init__(
        self, url: str, token: str, verify: bool = True, timeout: float = 30.0, operator_url: bool = True
    ) -> None:
        """``operator_url``: the operator configured ``url`` (it may then be a link-local address)."""
        if not url.startswith(("http://", "https://")):
            raise ValueError("LABEL_STUDIO_URL must start with http:// or https://")
        self.url = url.rstrip("/")
        self.token = token
        self.verify = verify
        self.timeout = timeout
        self.session = guarded_session([origin(self.url)[1]] if operator_url else [])
        self._access: str | None = None
        self._access_exp = 0.0
        self._lock = threading.Lock()

    def owns(self, url: str) -> bool:
        return origin(url) == origin(self.url)

    def _refresh_access(self) -> str:
        reply = self.session.post(
            f"{self.url}/api/token/refresh/", json={"refresh": self.token}, timeout=self.timeout, verify=self.verify
        )
        if reply.status_code != 200:
            raise PermissionError(f"personal access token refresh failed with HTTP {reply.status_code}")
        access = reply.json()["access"]
        payload = _jwt_payload(access) or {}
        self._access = access
        self._access_exp = float(payload.get("exp", time.time() + 240))
        return access

    def auth_headers(self, force_refresh: bool = False) -> dict[str, str]:
        if not self.token:
            return {}
        if not is_personal_access_token(self.token):
            return {"Authorization": f"Token {self.token}"}
        with self._lock:
            if force_refresh or self._access is None or self._access_exp - time.time() < 30:
                self._refresh_access()
            return {"Authorization": f"Bearer {self._access}"}

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """A request to the LS host with auth; one refresh-and-retry on 401 for access tokens."""
        if not self.owns(url):
            raise ValueError("refusing to send Label Studio credentials to another host")
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("verify", self.verify)
        kwargs.setdefault("allow_redirects", False)
        reply = self.session.request(method, url, headers=self.auth_headers(), **kwargs)
        if reply.status_code == 401 and is_personal_access_token(self.token):
            reply.close()
            reply = self.session.request(method, url, headers=self.auth_headers(force_refresh=True), **kwargs)
        return reply

    def call(self, method: str, path: str, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        """An API call that answers JSON; other statuses raise a typed LabelStudioError."""
        import requests

        seconds = kwargs.get("timeout", self.timeout)
        try:
            with Deadline(seconds) as deadline:  # the whole call, body included: not per socket read
                reply = self.request(method, self.url + path, **kwargs)
                content = reply.content
        except requests.RequestException as exc:  # refused, reset, timed out
            why = f"no answer within {seconds:.0f} s" if deadline.expired else type(exc).__name__
            raise LabelStudioUnavailable(f"Label Studio at {self.url} did not answer: {why}") from None
        except PermissionError as exc:  # personal access token refresh refused
            raise LabelStudioAuthError(str(exc), 401) from None
        except RefusedAddress as exc:
            raise LabelStudioUnavailable(str(exc)) from None
        if reply.status_code in expect:
            try:
                return reply.json() if content else None
            except ValueError:
                raise LabelStudioUnavailable(
                    f"Label Studio answered {method} {path.split('?')[0]} with non-JSON", reply.status_code
                ) from None
        status = reply.status_code
        detail = _detail(reply)
        where = f"{method} {path.split('?')[0]} -> HTTP {status}{': ' + detail if detail else ''}"
        if status in (401, 403):
            raise LabelStudioAuthError(f"Label Studio refused the API key ({where})", status)
        if status == 404:
            raise LabelStudioNotFound(f"not found in Label Studio ({where})", status)
        if status == 429 or status >= 500:
            raise LabelStudioUnavailable(f"Label Studio failed ({where})", status)
        raise LabelStudioError(f"Label Studio rejected the request ({where})", status)

    def get_project(self, project_id: int | str) -> dict[str, Any]:
        """The project (title, label_config, task_number, ...); LabelStudioNotFound when it does not exist."""
        try:
            return dict(self.call("GET", f"/api/projects/{int(project_id)}/"))
        except LabelStudioNotFound:
            raise LabelStudioNotFound(f"project {project_id} not found in Label Studio at {self.url}", 404) from None

    def task_page(
        self,
        project_id: int | str,
        after: int = 0,
        size: int = 100,
        ids: Iterable[int] | None = None,
        lacking: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Tasks in id order with an id above ``after`` (or the tasks ``ids``), at most ``size``, each with
        its data and its predictions' model versions but not their results; and how many tasks match.

        Pages by id (keyset), not page number, so predictions written meanwhile (or tasks deleted) shift
        nothing. The versions come from the data manager's versions column, which LS computes only for a
        column the query filters on: the filter "versions contain any of []" matches every task. Measured
        on LS 1.23.2: half the time of ``fields=all``, which sends every prediction's result.

        ``include`` keeps LS from serializing the ~25 data manager columns nobody reads here (annotators,
        comments, storage file names, ...), and ``resolve_uri=false`` leaves media URIs as LS sends them
        to /predict (the backend presigns cloud URIs itself): on one LS 1.23.2, 10,000 tasks in pages of
        5,000 read in 3.2 s instead of 10.5-13.1 s (a rerun's pages, versions computed: 5-10 s, not 27 s).

        ``lacking``: only the tasks holding no prediction whose version contains this text, without the
        versions column (LS filters with SQL ``LIKE '%text%'``, case-blind on SQLite: exact only where no
        other version of the project contains it, see ``model_versions``). The page costs LS the same
        per task, but a rerun's pages hold only what is left: 0.03 s of LS time, not 1.6-2.0 s per 5,000.
        """
        versions: dict[str, Any] = {"filter": "filter:tasks:predictions_model_versions", "type": "List"}
        if lacking is None:
            items = [{**versions, "operator": "contains", "value": []}]
        else:
            items = [{**versions, "operator": "not_contains", "value": [lacking]}]
        query: dict[str, Any] = {"filters": {"conjunction": "and", "items": items}, "ordering": ["tasks:id"]}
        if ids is not None:
            query["selectedItems"] = {"all": False, "included": [int(i) for i in ids]}
        else:
            items.append({"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": int(after)})
        params = {
            "project": int(project_id),
            "page_size": int(size),
            "page": 1,
            "query": json.dumps(query),
            "include": PAGE_FIELDS if lacking is None else FILTERED_PAGE_FIELDS,
            "resolve_uri": "false",
        }
        return self.task_list(params)

    def task_list(self, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        """One page of LS's task list and how many tasks match; ([], 0) past the last page."""
        try:
            body = self.call("GET", "/api/tasks/", params=params, timeout=max(self.timeout, 120))
        except LabelStudioNotFound as exc:
            if exc.status == 404 and "page" in str(exc).lower():
                return [], 0  # LS answers 404 "Invalid page" for a page past the end
            raise
        if not isinstance(body, dict) or not isinstance(body.get("tasks"), list):
            raise LabelStudioError("Label Studio's task list is not {tasks: [...]}")
        return body["tasks"], int(body.get("total") or 0)

    def task_count(self, project_id: int | str) -> int:
        """How many tasks the project holds (a one-task page: LS counts them all for its ``total``)."""
        return self.task_list({"project": int(project_id), "page_size": 1, "page": 1, "include": "id"})[1]

    def model_versions(self, project_id: int | str) -> dict[str, int]:
        """The model versions of the project's predictions, each with how many predictions hold it (one
        aggregate query in LS: ~0.03 s at 10,000 predictions)."""
        body = self.call("GET", f"/api/projects/{int(project_id)}/model-versions/")
        return {str(k): int(v or 0) for k, v in body.items()} if isinstance(body, dict) else {}

    def tasks_with_predictions(self, project_id: int | str, ids: Iterable[int]) -> list[dict[str, Any]]:
        """The tasks ``ids`` with every prediction in full (``fields=all``): the exact versions, when a
        versions column was cut."""
        wanted = [int(i) for i in ids]
        query = {"selectedItems": {"all": False, "included": wanted}}
        params = {"project": int(project_id), "page_size": max(1, len(wanted)), "fields": "all"}
        body = self.call("GET", "/api/tasks/", params={**params, "query": json.dumps(query)}, timeout=120)
        return list(body.get("tasks") or []) if isinstance(body, dict) else []

    def import_predictions(self, project_id: int | str, predictions: list[dict[str, Any]]) -> int:
        """``POST /api/projects/{id}/import/predictions``: one call for many tasks; returns how many LS
        created (it drops predictions its label config check rejects, and says so only in its log).

        LS 1.23.2 recounts every task of the project on each call (~0.7 s at 2,000 tasks), so callers
        send few, large calls; one ``POST /api/predictions/`` per task costs ~80 ms each."""
        body = self.call(
            "POST",
            f"/api/projects/{int(project_id)}/import/predictions",
            expect=(200, 201),
            json=predictions,
            timeout=max(self.timeout, 300),
        )
        return int(body.get("created", len(predictions))) if isinstance(body, dict) else len(predictions)

    def create_prediction(self, prediction: dict[str, Any]) -> None:
        """``POST /api/predictions/`` for one task (the fallback when a bulk import is refused)."""
        self.call("POST", "/api/predictions/", expect=(200, 201), json=prediction)

    def export_tasks(self, project_id: int | str) -> list[dict[str, Any]]:
        """All annotated tasks of a project (LS export API, JSON)."""
        url = f"{self.url}/api/projects/{int(project_id)}/export?exportType=JSON&download_all_tasks=false"
        seconds = max(self.timeout, 120)
        with Deadline(seconds):
            reply = self.request("GET", url, timeout=seconds)
            if reply.status_code != 200:
                raise RuntimeError(f"Label Studio export for project {project_id} failed: HTTP {reply.status_code}")
            tasks = reply.json()
        if not isinstance(tasks, list):
            raise RuntimeError("Label Studio export did not return a list of tasks")
        return tasks


def _detail(reply: requests.Response) -> str:
    """LS's short error text from a JSON error body (never the whole body: it may echo the request)."""
    try:
        body = reply.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    text = body.get("detail") or body.get("error") or ""
    errors = body.get("validation_errors")
    if errors:
        text = f"{text}: {json.dumps(errors)[:300]}" if text else json.dumps(errors)[:300]
    return str(text)[:400]


def labeled_tasks(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tasks with their usable annotations only: not cancelled, with a non-empty result.

    Each returned task keeps its ``data`` and gets ``annotations`` filtered; tasks left with no
    annotation are dropped.
    """
    clean = []
    for task in tasks:
        good = [a for a in task.get("annotations") or [] if not a.get("was_cancelled") and a.get("result")]
        if good:
            clean.append({**task, "annotations": good})
    return clean
