"""Pixel <-> percent conversions (LS image regions are percent of the displayed image)."""

from __future__ import annotations


def _clamp(value: float) -> float:
    return min(100.0, max(0.0, value))


def to_percent(
    x_px: float, y_px: float, width_px: float, height_px: float, image_width: int, image_height: int
) -> dict[str, float]:
    """A pixel box (top-left, size) as LS percent geometry, clamped to the image."""
    x = _clamp(100.0 * x_px / image_width)
    y = _clamp(100.0 * y_px / image_height)
    right = _clamp(100.0 * (x_px + width_px) / image_width)
    bottom = _clamp(100.0 * (y_px + height_px) / image_height)
    return {"x": x, "y": y, "width": right - x, "height": bottom - y}


def to_pixels(value: dict[str, float], image_width: int, image_height: int) -> tuple[float, float, float, float]:
    """LS percent geometry (x, y, width, height) as a pixel box (left, top, right, bottom)."""
    left = value["x"] * image_width / 100.0
    top = value["y"] * image_height / 100.0
    right = left + value.get("width", 0.0) * image_width / 100.0
    bottom = top + value.get("height", 0.0) * image_height / 100.0
    return left, top, right, bottom


def point_to_percent(x_px: float, y_px: float, image_width: int, image_height: int) -> list[float]:
    return [_clamp(100.0 * x_px / image_width), _clamp(100.0 * y_px / image_height)]


def polygon_to_percent(
    points_px: list[tuple[float, float]] | list[list[float]], image_width: int, image_height: int
) -> list[list[float]]:
    return [point_to_percent(float(x), float(y), image_width, image_height) for x, y in points_px]


def point_to_pixels(x: float, y: float, image_width: int, image_height: int) -> tuple[float, float]:
    return x * image_width / 100.0, y * image_height / 100.0
