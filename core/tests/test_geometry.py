"""geometry.py: pixel <-> percent conversions."""

from __future__ import annotations

import pytest

from label_studio_ml.results.geometry import (
    point_to_percent,
    point_to_pixels,
    polygon_to_percent,
    to_percent,
    to_pixels,
)


def test_box_round_trip() -> None:
    box = to_percent(64, 48, 320, 240, 640, 480)
    assert box == {"x": 10.0, "y": 10.0, "width": 50.0, "height": 50.0}
    assert to_pixels(box, 640, 480) == pytest.approx((64, 48, 384, 288))


def test_boxes_are_clamped_to_the_image() -> None:
    box = to_percent(-10, 400, 700, 200, 640, 480)
    assert box["x"] == 0 and box["width"] == 100
    assert box["y"] + box["height"] == 100
    assert all(0 <= v <= 100 for v in box.values())


def test_points() -> None:
    assert point_to_percent(320, 120, 640, 480) == [50.0, 25.0]
    assert point_to_pixels(50.0, 25.0, 640, 480) == (320, 120)
    assert polygon_to_percent([(0, 0), (640, 480), (700, -5)], 640, 480) == [[0, 0], [100, 100], [100, 0]]
