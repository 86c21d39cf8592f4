"""``label_studio_ml.utils`` as the upstream SDK has it: label-config helpers, media paths, label matching.

Media goes through this server's fetcher (LS uploads, local files, cloud URIs presigned by LS, http),
with its size limits and timeouts; Pillow (``get_image_size``) and pytest (``compare_nested_structures``)
are imported only by the function that needs them.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections import OrderedDict
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .clients.ls_client import origin
from .config import Settings
from .media.fetch import CLOUD_SCHEMES, MediaFetcher, fetcher_from_settings

DATA_UNDEFINED_NAME = "$undefined$"
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "not", "off", "0")

logger = logging.getLogger(__name__)


def get_env(name: str, default: Any = None, is_bool: bool = False) -> Any:
    """``LABEL_STUDIO_<name>``, ``HEARTEX_<name>`` or ``<name>`` from the environment, first found."""
    for key in ("LABEL_STUDIO_" + name, "HEARTEX_" + name, name):
        value = os.environ.get(key)
        if value is None:
            continue
        if not is_bool:
            return value
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ValueError(f'Incorrect bool value "{value}". It should be one of [1, 0, true, false, yes, no]')
    return default


@lru_cache(maxsize=8)
def _fetcher(settings: Settings, cache_dir: str | None) -> MediaFetcher:
    # one per settings and folder: its LS client keeps the short-lived access token a PAT gives
    return fetcher_from_settings(settings, Path(cache_dir) if cache_dir else None)


def get_local_path(
    url: str,
    cache_dir: str | None = None,
    project_dir: str | None = None,
    hostname: str | None = None,
    image_dir: str | None = None,
    access_token: str | None = None,
    download_resources: bool = True,
    task_id: int | None = None,
) -> str:
    """A local file holding what ``url`` names (downloaded and cached when it is not local).

    ``hostname``/``access_token`` default to LABEL_STUDIO_URL/LABEL_STUDIO_API_KEY; ``cache_dir``
    defaults to ``MODEL_DIR/.file-cache``. ``project_dir``, ``image_dir`` and ``download_resources``
    are accepted for compatibility: LS 1.23 serves uploads over HTTP, so they change nothing.
    """
    return str(fetcher_for(Settings.from_env(), hostname, access_token, cache_dir).fetch(url, task_id=task_id))


def fetcher_for(
    settings: Settings, hostname: str | None = None, access_token: str | None = None, cache_dir: str | None = None
) -> MediaFetcher:
    """A fetcher for an LS host and token the caller gives, which win over the configured ones. The
    operator's API key goes with a caller's host only when it is the operator's LABEL_STUDIO_URL."""
    if hostname:
        same = bool(settings.label_studio_url) and origin(hostname) == origin(settings.label_studio_url)
        token = access_token or (settings.label_studio_api_key if same else "")
        settings = replace(settings, label_studio_url=hostname.rstrip("/"), label_studio_api_key=token)
    elif access_token:
        settings = replace(settings, label_studio_api_key=access_token)
    return _fetcher(settings, str(cache_dir) if cache_dir else None)


def get_image_local_path(
    url: str,
    image_cache_dir: str | None = None,
    project_dir: str | None = None,
    image_dir: str | None = None,
    label_studio_host: str | None = None,
    label_studio_access_token: str | None = None,
    task_id: int | None = None,
) -> str:
    host = label_studio_host or get_env("HOSTNAME")
    path = get_local_path(
        url,
        cache_dir=image_cache_dir,
        project_dir=project_dir,
        # HOSTNAME is also the container's own name: only a URL is a Label Studio host
        hostname=host if isinstance(host, str) and host.startswith(("http://", "https://")) else None,
        image_dir=image_dir,
        access_token=label_studio_access_token,
        task_id=task_id,
    )
    logger.debug("image stored in the local path %s", path)
    return path


def get_image_size(filepath: str) -> tuple[int, int]:
    """(width, height) as LS shows the image: EXIF orientation applied. Needs Pillow (the image extra)."""
    from PIL import Image, ImageOps

    with Image.open(filepath) as image:
        return ImageOps.exif_transpose(image).size


def get_single_tag_keys(
    parsed_label_config: dict[str, Any], control_type: str, object_type: str
) -> tuple[str, str, str, list[str]]:
    """(from_name, to_name, data key, labels) of a config with exactly one control on one object."""
    assert len(parsed_label_config) == 1, (
        "Please check your Labeling Interface configuration: At least one control tag should be in the labeling config."
    )
    from_name, info = next(iter(parsed_label_config.items()))
    assert info["type"] == control_type, (
        f'Label config has control tag "<{info["type"]}>" but "<{control_type}>" is expected for this model.'
    )
    assert len(info["to_name"]) == 1
    assert len(info["inputs"]) == 1
    assert info["inputs"][0]["type"] == object_type
    return from_name, info["to_name"][0], info["inputs"][0]["value"], info["labels"]


def get_first_tag_keys(
    parsed_label_config: dict[str, Any], control_type: str, object_type: str
) -> tuple[str | None, dict[str, Any] | None]:
    """(from_name, its parsed info) of the first control of ``control_type`` on an ``object_type``."""
    for from_name, info in parsed_label_config.items():
        if info["type"] == control_type and any(i["type"] == object_type for i in info["inputs"]):
            return from_name, info
    return None, None


def is_skipped(completion: dict[str, Any]) -> bool:
    """Whether a task's single annotation was skipped or cancelled."""
    if len(completion["annotations"]) != 1:
        return False
    annotation = completion["annotations"][0]
    return bool(annotation.get("skipped", False) or annotation.get("was_cancelled", False))


def get_choice(completion: dict[str, Any]) -> str:
    """The first choice of a task's first annotation."""
    return completion["annotations"][0]["result"][0]["value"]["choices"][0]


class InMemoryLRUDictCache:
    """A dict that keeps the ``capacity`` most recently used keys."""

    def __init__(self, capacity: int = 1) -> None:
        self.cache: OrderedDict[Any, Any] = OrderedDict()
        self.capacity = capacity

    def __contains__(self, item: Any) -> bool:
        return item in self.cache

    def get(self, key: Any) -> Any:
        if key not in self.cache:
            return None
        self.cache.move_to_end(key)
        return self.cache[key]

    def put(self, key: Any, value: Any) -> None:
        if key in self.cache:
            self.cache.move_to_end(key)
        elif len(self.cache) >= self.capacity:
            self.cache.popitem(last=False)
        self.cache[key] = value

    def __str__(self) -> str:
        return str(self.cache)


def match_labels(input: str, labels: list[str]) -> list[str]:  # noqa: A002  (upstream's parameter name)
    """For each line of ``input``, the label it resembles most (difflib's similarity ratio)."""
    matched = []
    for line in input.splitlines():
        scores = [difflib.SequenceMatcher(None, line, label).ratio() for label in labels]
        matched.append(labels[scores.index(max(scores))])
    return matched


def is_valid_url(path: str) -> bool:
    """Whether ``path`` has a scheme and a host."""
    try:
        parsed = urlparse(path)
    except ValueError:
        return False
    return bool(parsed.scheme and parsed.netloc)


def is_preload_needed(url: str) -> bool:
    """Whether a task data value names a file to load: an LS upload or local file, a cloud URI, a URL,
    or a path that exists here."""
    if url.startswith(("upload", "/upload")):
        url = "/data" + ("" if url.startswith("/") else "/") + url
    return (
        url.startswith("/data/upload")
        or (url.startswith("/data/") and "?d=" in url)
        or url.startswith(tuple(scheme.rstrip("/") for scheme in CLOUD_SCHEMES))
        or is_valid_url(url)
        or os.path.exists(url)
    )


def compare_nested_structures(a: Any, b: Any, path: str = "", rel: float = 1e-4, abs: float | None = None) -> None:  # noqa: A002
    """Assert that two nested dicts/lists are equal, floats within ``rel``/``abs`` (needs pytest)."""
    from pytest import approx

    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"Keys mismatch at {path}"
        for key in a:
            compare_nested_structures(a[key], b[key], f"{path}.{key}", rel, abs)
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"List size mismatch at {path}"
        for i, (left, right) in enumerate(zip(a, b)):
            compare_nested_structures(left, right, f"{path}[{i}]", rel, abs)
    elif isinstance(a, float) and isinstance(b, float):
        assert a == approx(b, rel=rel, abs=abs), f"Mismatch at {path}"
    else:
        assert a == b, f"Mismatch at {path}"
