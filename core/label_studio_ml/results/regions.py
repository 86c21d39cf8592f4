"""Builders for result items and validation of outgoing regions against the label config."""

from __future__ import annotations

import logging
import math
import re
import secrets
import string
from collections.abc import Iterable
from typing import Any

from ..media.fetch import is_media_reference
from .label_config import ControlPair, LabelConfig

logger = logging.getLogger(__name__)

_ID_ALPHABET = string.ascii_letters + string.digits
_LABEL_KEYS = {"choices", "taxonomy"}
_IMAGE_TYPES = {
    "rectanglelabels",
    "rectangle",
    "polygonlabels",
    "polygon",
    "keypointlabels",
    "keypoint",
    "brushlabels",
    "brush",
    "ellipselabels",
    "ellipse",
}


def region_id() -> str:
    """10 random characters of ``[A-Za-z0-9]`` (as LS makes them), from one draw of the OS's generator."""
    number = secrets.randbelow(len(_ID_ALPHABET) ** 10)
    chars = []
    for _ in range(10):
        number, digit = divmod(number, len(_ID_ALPHABET))
        chars.append(_ID_ALPHABET[digit])
    return "".join(chars)


def _image_extras(width: int, height: int, rotation: float = 0) -> dict[str, Any]:
    return {"original_width": int(width), "original_height": int(height), "image_rotation": rotation}


def choices(pair: ControlPair, labels: Iterable[str], score: float | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "from_name": pair.from_name,
        "to_name": pair.to_name,
        "type": "choices",
        "value": {"choices": list(labels)},
    }
    if score is not None:
        item["score"] = float(score)
    return item


def span(
    pair: ControlPair, text: str, start: int, end: int, label: str, score: float | None = None, id: str | None = None
) -> dict[str, Any]:
    """A text span; ``text[start:end]`` is the value's text by construction."""
    item: dict[str, Any] = {
        "id": id or region_id(),
        "from_name": pair.from_name,
        "to_name": pair.to_name,
        "type": pair.result_type,
        "value": {"start": int(start), "end": int(end), "text": text[start:end], pair.result_type: [label]},
    }
    if score is not None:
        item["score"] = float(score)
    return item


def textarea(
    pair: ControlPair,
    texts: str | Iterable[str],
    id: str | None = None,
    geometry: dict[str, Any] | None = None,
    score: float | None = None,
) -> dict[str, Any]:
    """A TextArea value: global, or per region when ``geometry`` (value keys + image extras) is given."""
    value: dict[str, Any] = {"text": [texts] if isinstance(texts, str) else list(texts)}
    item: dict[str, Any] = {"from_name": pair.from_name, "to_name": pair.to_name, "type": "textarea"}
    if id:
        item["id"] = id
    if geometry:
        value.update(geometry.get("value", {}))
        item.update({k: v for k, v in geometry.items() if k != "value"})
    item["value"] = value
    if score is not None:
        item["score"] = float(score)
    return item


def rectangle(
    pair: ControlPair,
    box: dict[str, float],
    width: int,
    height: int,
    label: str | None = None,
    score: float | None = None,
    id: str | None = None,
    rotation: float = 0,
) -> dict[str, Any]:
    """A rectangle from percent geometry ``box`` (x, y, width, height)."""
    value = {"x": box["x"], "y": box["y"], "width": box["width"], "height": box["height"], "rotation": rotation}
    return _image_shape(pair, value, width, height, label, score, id)


def polygon(
    pair: ControlPair,
    points: list[list[float]],
    width: int,
    height: int,
    label: str | None = None,
    score: float | None = None,
    id: str | None = None,
) -> dict[str, Any]:
    return _image_shape(pair, {"points": points}, width, height, label, score, id)


def keypoint(
    pair: ControlPair,
    point: list[float],
    size: float,
    width: int,
    height: int,
    label: str | None = None,
    score: float | None = None,
    id: str | None = None,
) -> dict[str, Any]:
    """A keypoint at percent ``point`` (x, y); ``size`` is its drawn width in percent of the image width."""
    return _image_shape(pair, {"x": point[0], "y": point[1], "width": size}, width, height, label, score, id)


def _image_shape(
    pair: ControlPair,
    value: dict[str, Any],
    width: int,
    height: int,
    label: str | None,
    score: float | None,
    id: str | None,
    kind: str | None = None,
) -> dict[str, Any]:
    """An image region of ``kind`` (default: the pair's type); the label goes into the value when the
    kind has labels."""
    kind = kind or pair.result_type
    if label is not None and kind.endswith("labels"):
        value[kind] = [label]
    item: dict[str, Any] = {
        "id": id or region_id(),
        "from_name": pair.from_name,
        "to_name": pair.to_name,
        "type": kind,
        **_image_extras(width, height),
        "value": value,
    }
    if score is not None:
        item["score"] = float(score)
    return item


def brush(
    pair: ControlPair,
    rle: list[int],
    width: int,
    height: int,
    label: str | None = None,
    score: float | None = None,
    id: str | None = None,
) -> dict[str, Any]:
    kind = "brushlabels" if label is not None else "brush"
    return _image_shape(pair, {"format": "rle", "rle": rle}, width, height, label, score, id, kind)


def find_all_spans(text: str, needle: str, whole_word: bool = False, ignore_case: bool = True) -> list[tuple[int, int]]:
    """Every (start, end) of the literal ``needle`` in ``text`` (no regex semantics)."""
    if not needle:
        return []
    pattern = re.escape(needle)
    if whole_word:
        pattern = rf"(?<!\w){pattern}(?!\w)"
    flags = re.IGNORECASE if ignore_case else 0
    return [(m.start(), m.end()) for m in re.finditer(pattern, text, flags)]


class RegionValidator:
    """Drops result items LS would store but never render correctly (PROTOCOL.md §10.1)."""

    def __init__(self, config: LabelConfig) -> None:
        self.config = config
        # per control, what every item is checked against (one validator checks a whole batch)
        self._controls: dict[str, tuple[str, str | None, frozenset[str], frozenset[str], str | None, bool]] = {}
        for name, info in config.controls.items():
            kind = info["type"].lower()
            self._controls[name] = (
                kind,
                kind[:-6] if kind.endswith("labels") else None,
                frozenset(info["to_name"]),
                frozenset(info["labels"]),
                next((i.get("value") for i in info["inputs"]), None),
                bool(info.get("dynamic_labels")),
            )

    def validate(self, items: list[Any], task: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
        kept: list[dict[str, Any]] = []
        dropped: list[str] = []
        ids: dict[str, dict[str, Any]] = {}
        for item in items:
            try:
                reason = self._problem(item, task)
            except (TypeError, ValueError, KeyError, AttributeError) as exc:  # e.g. a string offset, a None list
                reason = f"malformed region ({type(exc).__name__}: {exc})"
            if reason is None and isinstance(item, dict) and item.get("id") is not None:
                shape = _geometry(item)
                first = ids.setdefault(str(item["id"]), item)
                if (
                    first is not item
                    and first.get("from_name") == item.get("from_name")
                    and first.get("type") == item.get("type")
                ):
                    reason = f"duplicate region id {item['id']!r}"
                elif first is not item and shape and _geometry(first) and shape != _geometry(first):
                    reason = f"region id {item['id']!r} reused with other geometry"
            if reason is None:
                kept.append(item)
            else:
                dropped.append(reason)
        return kept, dropped

    def _problem(self, item: Any, task: dict[str, Any]) -> str | None:
        if not isinstance(item, dict):
            return "result item is not an object"
        kind = item.get("type")
        if kind == "relation":
            return None
        control = self._controls.get(item.get("from_name", ""))
        if control is None:
            return f"unknown from_name {item.get('from_name')!r}"
        control_kind, short_kind, to_names, labels, data_key, dynamic = control
        labels_key = str(kind).lower()
        if labels_key != control_kind and str(kind) != short_kind:
            return f"type {kind!r} does not match control {self.config.controls[item['from_name']]['type']}"
        if item.get("to_name") not in to_names:
            return f"to_name {item.get('to_name')!r} is not an object of {item.get('from_name')!r}"
        value = item.get("value")
        if not isinstance(value, dict):
            return "value is not an object"
        if labels_key in value and labels_key in _LABEL_KEYS or (labels_key in value and labels_key.endswith("labels")):
            allowed = labels | _dynamic_labels(task) if dynamic else labels
            unknown = [v for v in value[labels_key] if not isinstance(v, str) or v not in allowed]
            if labels_key == "taxonomy":
                unknown = []
            if unknown:
                return f"labels {unknown} are not in the config for {item['from_name']!r}"
        if "start" in value and "end" in value and isinstance(value.get("text"), str):
            source = (task.get("data") or {}).get(data_key) if data_key else None
            # a Text given as a URL is checked by the model, which reads the fetched text
            if (
                isinstance(source, str)
                and not is_media_reference(source)
                and source[value["start"] : value["end"]] != value["text"]
            ):
                return "span text does not match data[start:end]"
        if labels_key in _IMAGE_TYPES or "original_width" in item:
            return _image_problem(item, value)
        return None


def _geometry(item: dict[str, Any]) -> tuple[Any, ...] | None:
    value = item.get("value") or {}
    if "points" in value:
        return ("points", str(value["points"]))
    if "x" in value and "y" in value:
        return (value["x"], value["y"], value.get("width"), value.get("height"))
    return None


def _dynamic_labels(task: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for value in (task.get("data") or {}).values():
        if isinstance(value, list):
            for entry in value:
                if isinstance(entry, dict) and isinstance(entry.get("value"), str):
                    found.add(entry["value"])
    return found


def _turned_corners(value: dict[str, Any], width: int, height: int) -> list[float]:
    """The far corners of a rectangle LS turns by ``rotation`` degrees about its top-left corner (x, y), in
    percent: a turned box may reach left of x or above y, and its right edge is no longer x + width."""
    turn = math.radians(value["rotation"])
    cos, sin = math.cos(turn), math.sin(turn)
    w, h = value["width"] * width / 100.0, value["height"] * height / 100.0
    corners = []
    for dx, dy in ((w, 0.0), (w, h), (0.0, h)):
        corners.append(value["x"] + 100.0 * (dx * cos - dy * sin) / width)
        corners.append(value["y"] + 100.0 * (dx * sin + dy * cos) / height)
    return corners


def _image_problem(item: dict[str, Any], value: dict[str, Any]) -> str | None:
    width, height = item.get("original_width"), item.get("original_height")
    if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
        return "image region lacks positive integer original_width/original_height"
    coords: list[float] = []
    for key in ("x", "y", "width", "height"):
        if key in value:
            coords.append(value[key])
    if all(isinstance(value.get(k), (int, float)) for k in ("x", "y", "width", "height", "rotation")):
        coords.extend(_turned_corners(value, width, height))
    else:
        if "x" in value and "width" in value:
            coords.append(value["x"] + value["width"])
        if "y" in value and "height" in value:
            coords.append(value["y"] + value["height"])
    for point in value.get("points", []):
        coords.extend(point)
    if any(not isinstance(c, (int, float)) or c != c or c < -1e-6 or c > 100 + 1e-6 for c in coords):
        return "geometry outside 0-100 percent"
    if value.get("format") == "rle":
        rle = value.get("rle", [])
        if len(rle) < 7 or not all(isinstance(b, int) and 0 <= b <= 255 for b in rle[:7]):
            return "RLE header is malformed"
        size = int.from_bytes(bytes(rle[:4]), "big")  # the header's value count; no full decode
        if size != width * height * 4:
            return f"RLE holds {size} values, expected {width * height * 4}"
    return None
