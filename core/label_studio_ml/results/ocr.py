"""OCR region layout shared by OCR services (PROTOCOL.md §5.5): one text region is a shape item,
an optional ``labels`` item and a per-region ``textarea`` item, all with the same id and geometry."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import geometry, regions
from .label_config import ControlPair, LabelConfig

SHAPES = ("RectangleLabels", "Rectangle", "PolygonLabels", "Polygon")
RECTANGLES = ("rectanglelabels", "rectangle")


@dataclass(frozen=True)
class OcrLayout:
    """Where OCR output goes in a label config: a shape control, its per-region TextArea, and an
    optional ``Labels`` control, all on the same ``Image``; ``label`` is the label shape/labels
    items carry (None for label-less shapes)."""

    shape: ControlPair
    text: ControlPair
    labels: ControlPair | None = None
    label: str | None = None
    labels_label: str | None = None

    @property
    def data_key(self) -> str:
        return self.shape.data_key

    @property
    def polygons(self) -> bool:
        return self.shape.result_type.startswith("polygon")

    @classmethod
    def from_config(cls, config: LabelConfig, shapes: Sequence[str] = SHAPES, label_hint: str = "Text") -> OcrLayout:
        """The first shape control (in the order of ``shapes``) on an Image that also has a
        TextArea. ``label_hint`` picks the label (mapped like a model class name: predicted_values,
        exact, case-insensitive), else the control's first label. Raises LabelConfigError."""
        shape: ControlPair | None = None
        text: ControlPair | None = None
        for kind in shapes:
            for candidate in config.find_all(kind):
                if candidate.object_type.lower() != "image":
                    continue
                text = _on(config.find_all("TextArea"), candidate.to_name)
                if text is not None:
                    shape = candidate
                    break
            if shape is not None:
                break
        if shape is None or text is None:
            # raises the config error with a reason naming what is missing
            config.find(list(shapes), "Image")
            config.find("TextArea", "Image")
            raise _no_pair(shapes)
        labels = _on(config.find_all("Labels"), shape.to_name)
        return cls(
            shape=shape,
            text=text,
            labels=labels,
            label=_pick(shape, label_hint) if shape.result_type.endswith("labels") else None,
            labels_label=_pick(labels, label_hint) if labels is not None else None,
        )

    # --- building regions ------------------------------------------------------------------------
    def region(
        self, shape_item: dict[str, Any], text: str | Iterable[str], score: float | None = None
    ) -> list[dict[str, Any]]:
        """The items of one OCR region around ``shape_item`` (a rectangle or polygon item)."""
        geometry_value = {k: v for k, v in shape_item["value"].items() if not k.endswith("labels")}
        extras = {k: shape_item[k] for k in ("original_width", "original_height", "image_rotation") if k in shape_item}
        items = [shape_item]
        if self.labels is not None and self.labels_label is not None:
            labels_item = {
                "id": shape_item["id"],
                "from_name": self.labels.from_name,
                "to_name": self.labels.to_name,
                "type": "labels",
                **extras,
                "value": {**geometry_value, "labels": [self.labels_label]},
            }
            if score is not None:
                labels_item["score"] = float(score)
            items.append(labels_item)
        items.append(
            regions.textarea(
                self.text, text, id=shape_item["id"], geometry={"value": geometry_value, **extras}, score=score
            )
        )
        return items

    def box(
        self,
        left: float,
        top: float,
        right: float,
        bottom: float,
        width: int,
        height: int,
        text: str | Iterable[str],
        score: float | None = None,
    ) -> list[dict[str, Any]]:
        """An axis-aligned pixel box (of an image ``width`` x ``height``) as an OCR region."""
        if self.polygons:
            points = geometry.polygon_to_percent(
                [(left, top), (right, top), (right, bottom), (left, bottom)], width, height
            )
            shape = regions.polygon(self.shape, points, width, height, label=self.label, score=score)
        else:
            box = geometry.to_percent(left, top, right - left, bottom - top, width, height)
            shape = regions.rectangle(self.shape, box, width, height, label=self.label, score=score)
        return self.region(shape, text, score)

    def quad(
        self,
        points: Sequence[Sequence[float]],
        width: int,
        height: int,
        text: str | Iterable[str],
        score: float | None = None,
    ) -> list[dict[str, Any]]:
        """A pixel quadrilateral (clockwise from the top-left corner, as text detectors give) as an
        OCR region: a polygon, or a rectangle rotated to the quad's top edge."""
        if self.polygons:
            shape = regions.polygon(
                self.shape,
                geometry.polygon_to_percent(list(points), width, height),
                width,
                height,
                label=self.label,
                score=score,
            )
            return self.region(shape, text, score)
        (x0, y0), (x1, y1), _, (x3, y3) = [(float(x), float(y)) for x, y in points[:4]]
        angle = math.degrees(math.atan2(y1 - y0, x1 - x0))
        if abs(angle) < 1.0:
            xs = [float(p[0]) for p in points]
            ys = [float(p[1]) for p in points]
            return self.box(min(xs), min(ys), max(xs), max(ys), width, height, text, score)
        x, y = geometry.point_to_percent(x0, y0, width, height)
        # the region validator checks x + width and y + height <= 100 even when rotated: stay inside
        box = {
            "x": x,
            "y": y,
            "width": min(100.0 * math.hypot(x1 - x0, y1 - y0) / width, 100.0 - x),
            "height": min(100.0 * math.hypot(x3 - x0, y3 - y0) / height, 100.0 - y),
        }
        shape = regions.rectangle(self.shape, box, width, height, label=self.label, score=score, rotation=angle % 360.0)
        return self.region(shape, text, score)


def rectangle_corners(value: dict[str, Any], width: int, height: int) -> list[tuple[float, float]]:
    """The pixel corners (clockwise from the anchor) of an LS rectangle value, which is rotated by
    ``rotation`` degrees clockwise around its top-left corner."""
    x0, y0 = value["x"] * width / 100.0, value["y"] * height / 100.0
    w, h = value.get("width", 0.0) * width / 100.0, value.get("height", 0.0) * height / 100.0
    theta = math.radians(float(value.get("rotation") or 0.0))
    ux, uy = math.cos(theta), math.sin(theta)
    vx, vy = -uy, ux
    return [
        (x0, y0),
        (x0 + w * ux, y0 + w * uy),
        (x0 + w * ux + h * vx, y0 + w * uy + h * vy),
        (x0 + h * vx, y0 + h * vy),
    ]


def crop_rectangle(image: Any, value: dict[str, Any]) -> Any:
    """The part of a Pillow image inside an LS rectangle value (percent geometry), turned upright
    when the rectangle is rotated. Parts outside the image come out white."""
    from PIL import Image

    width, height = image.size
    rotation = float(value.get("rotation") or 0.0) % 360.0
    w = max(1, round(value.get("width", 0.0) * width / 100.0))
    h = max(1, round(value.get("height", 0.0) * height / 100.0))
    fill = (255,) * len(image.getbands()) if len(image.getbands()) > 1 else 255
    if rotation == 0.0:
        left, top = round(value["x"] * width / 100.0), round(value["y"] * height / 100.0)
        if 0 <= left and 0 <= top and left + w <= width and top + h <= height:
            return image.crop((left, top, left + w, top + h))
    (x0, y0), _, _, _ = rectangle_corners(value, width, height)
    theta = math.radians(rotation)
    cos, sin = math.cos(theta), math.sin(theta)
    # output pixel (i, j) samples the input at anchor + i*u + j*v (u along the top edge)
    return image.transform(
        (w, h), Image.Transform.AFFINE, (cos, -sin, x0, sin, cos, y0), resample=Image.Resampling.BICUBIC, fillcolor=fill
    )


def _on(pairs: list[ControlPair], to_name: str) -> ControlPair | None:
    for pair in pairs:
        if pair.to_name == to_name:
            return pair
    return None


def _pick(pair: ControlPair, hint: str) -> str | None:
    if not pair.labels:
        return None
    return pair.map_label(hint) or pair.labels[0]


def _no_pair(shapes: Sequence[str]) -> Exception:
    from ..errors import LabelConfigError

    return LabelConfigError(f"label config has no {'/'.join(shapes)} control on an Image that also has a TextArea")
