"""Label config parsing (same structure as label-studio-sdk's ``parse_config``) and tag lookup."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ..errors import LabelConfigError

LABEL_TAGS = {"Label", "Choice", "Relation"}
NOT_CONTROL_TAGS = {"Filter"}
_VARIABLE = re.compile(r"^\$[A-Za-z_]+$")


def _is_control(el: ET.Element) -> bool:
    return bool(el.get("name") and el.get("toName") and el.tag not in NOT_CONTROL_TAGS)


def _is_object(el: ET.Element) -> bool:
    return bool(el.get("name") and (el.get("value") or el.get("valueList")))


def _parse_xml(config: str) -> ET.Element:
    if "<!DOCTYPE" in config or "<!ENTITY" in config:
        raise LabelConfigError("label config must not declare a DOCTYPE or entities")
    try:
        return ET.fromstring(config)
    except ET.ParseError as exc:
        raise LabelConfigError(f"label config is not valid XML: {exc}") from None


@lru_cache(maxsize=256)
def _parse_cached(config: str) -> dict[str, dict[str, Any]]:
    root = _parse_xml(config)
    objects: dict[str, dict[str, Any]] = {}
    controls: dict[str, dict[str, Any]] = {}
    labels: dict[str, dict[str, dict[str, str]]] = {}
    variables: list[str] = []

    def walk(el: ET.Element, parent_control: str | None) -> None:
        if "indexFlag" in el.attrib:
            variables.append(el.attrib["indexFlag"])
        current = parent_control
        if _is_control(el):
            info: dict[str, Any] = {"type": el.tag, "to_name": el.attrib["toName"].split(",")}
            for var in variables:
                if any(var in name for name in info["to_name"]):
                    info.setdefault("regex", {})[var] = ".*"
            if el.get("perRegion") == "true":
                for attr, kind in (("whenTagName", "tag"), ("whenLabelValue", "label"), ("whenChoiceValue", "choice")):
                    if el.get(attr):
                        info["conditionals"] = {"type": kind, "name": el.attrib[attr]}
                        break
            if _VARIABLE.fullmatch(el.get("value", "")) or el.get("apiUrl"):
                info["dynamic_labels"] = True
            controls[el.attrib["name"]] = info
            labels.setdefault(el.attrib["name"], {})
            current = el.attrib["name"]
        elif _is_object(el):
            obj: dict[str, Any] = {"type": el.tag, "valueType": el.get("valueType")}
            if el.get("value"):
                obj["value"] = el.attrib["value"].lstrip("$")
            else:
                obj["valueList"] = el.attrib["valueList"].lstrip("$")
            objects[el.attrib["name"]] = obj
        if el.tag in LABEL_TAGS and parent_control is not None:
            value = el.get("alias") or el.get("value") or el.get("valueList")
            if value:
                labels[parent_control][value] = dict(el.attrib)
        for child in el:
            walk(child, current)

    walk(root, None)
    for name, info in controls.items():
        info["inputs"] = [objects[obj] for obj in info["to_name"] if obj in objects]
        info["labels"] = list(labels[name])
        info["labels_attrs"] = labels[name]
    return controls


def parse_config(config: str | None) -> dict[str, dict[str, Any]]:
    """Parse a label config into ``{control_name: {type, to_name, inputs, labels, labels_attrs}}``."""
    if not config:
        return {}
    import copy

    return copy.deepcopy(_parse_cached(config))


@dataclass(frozen=True)
class ControlPair:
    """A control tag and the object tag it annotates: where a model reads and writes."""

    from_name: str
    to_name: str
    type: str
    object_type: str
    data_key: str
    labels: tuple[str, ...] = ()
    labels_attrs: dict[str, dict[str, str]] = field(default_factory=dict, compare=False)

    @property
    def result_type(self) -> str:
        return self.type.lower()

    def map_label(self, model_label: str) -> str | None:
        return map_label(model_label, self.labels, self.labels_attrs)


class LabelConfig:
    """A parsed label config with lookups services need."""

    def __init__(self, xml: str) -> None:
        self.xml = xml
        self.controls = _parse_cached(xml) if xml else {}
        self._objects = _object_types(xml) if xml else {}

    def find(
        self,
        control_types: str | Iterable[str],
        object_types: str | Iterable[str] | None = None,
        name_filter: str | None = None,
        required: bool = True,
    ) -> ControlPair | None:
        """The first control (document order) of a wanted type on an object of a wanted type."""
        wanted = {control_types.lower()} if isinstance(control_types, str) else {t.lower() for t in control_types}
        objects = None
        if object_types is not None:
            objects = {object_types.lower()} if isinstance(object_types, str) else {t.lower() for t in object_types}
        for name, info in self.controls.items():
            if info["type"].lower() not in wanted:
                continue
            if name_filter and not name.startswith(name_filter):
                continue
            for to_name in info["to_name"]:
                obj = self._objects.get(to_name)
                if obj is None or (objects is not None and obj[0].lower() not in objects):
                    continue
                return ControlPair(
                    from_name=name,
                    to_name=to_name,
                    type=info["type"],
                    object_type=obj[0],
                    data_key=obj[1],
                    labels=tuple(info["labels"]),
                    labels_attrs=info["labels_attrs"],
                )
        if required:
            want = "/".join(sorted(wanted))
            on = f" on {'/'.join(sorted(objects))}" if objects else ""
            raise LabelConfigError(f"label config has no {want} control{on}")
        return None

    def attrs(self, name: str) -> dict[str, str]:
        """The XML attributes of the tag named ``name`` (e.g. a control's ``model_path``); {} when absent."""
        return dict(_tag_attrs(self.xml).get(name, {})) if self.xml else {}

    def find_all(self, control_types: str | Iterable[str]) -> list[ControlPair]:
        wanted = {control_types.lower()} if isinstance(control_types, str) else {t.lower() for t in control_types}
        pairs = []
        for name, info in self.controls.items():
            if info["type"].lower() in wanted:
                pair = self.find(info["type"], name_filter=name, required=False)
                if pair is not None and pair.from_name == name:
                    pairs.append(pair)
        return pairs


@lru_cache(maxsize=256)
def _object_types(xml: str) -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    for el in _parse_xml(xml).iter():
        if _is_object(el) and not _is_control(el):
            found[el.attrib["name"]] = (el.tag, (el.get("value") or el.get("valueList") or "").lstrip("$"))
    return found


@lru_cache(maxsize=256)
def _tag_attrs(xml: str) -> dict[str, dict[str, str]]:
    return {el.attrib["name"]: dict(el.attrib) for el in _parse_xml(xml).iter() if el.get("name")}


def map_label(
    model_label: str, labels: Iterable[str], labels_attrs: dict[str, dict[str, str]] | None = None
) -> str | None:
    """Map a model's class name onto a config label: predicted_values, exact, then case-insensitive."""
    labels = list(labels)
    attrs = labels_attrs or {}
    for label in labels:
        predicted = attrs.get(label, {}).get("predicted_values", "")
        if model_label in [v.strip() for v in predicted.split(",") if v.strip()]:
            return label
    if model_label in labels:
        return model_label
    lowered = model_label.lower()
    for label in labels:
        if label.lower() == lowered:
            return label
    return None
