"""Synthetic sensor series with known segments, for the tests and benchmarks/timeseries_segmenter.py.

Two channels; background is low noise, "Run" a fast large oscillation, "Walk" a slow one with the second
channel raised. Segments and the gaps between them last 30-80 rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

CONFIG = """<View>
  <TimeSeriesLabels name="label" toName="ts">
    <Label value="Run"/>
    <Label value="Walk"/>
  </TimeSeriesLabels>
  <TimeSeries name="ts" value="$csv" valueType="{value_type}" timeColumn="time" sep="{sep}"{extra}>
    <Channel column="accel"/>
    <Channel column="gyro"/>
  </TimeSeries>
</View>"""
DATE_FORMAT = "%Y-%m-%d %H:%M:%S.%L"
_START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def config(sep: str = ",", time_format: str | None = None, value_type: str = "url") -> str:
    """The label config; ``value_type="json"`` for series held in the task (LS's default is "url")."""
    return CONFIG.format(sep=sep, value_type=value_type, extra=f' timeFormat="{time_format}"' if time_format else "")


def make_series(seed: int, rows: int = 600) -> tuple[dict[str, list], list[tuple[str, int, int]]]:
    """Columns ``time`` (seconds, step 0.5), ``accel``, ``gyro`` and the segments ``(label, first, last)`` rows."""
    rng = np.random.default_rng(seed)
    accel = rng.normal(0, 0.1, rows)
    gyro = rng.normal(0, 0.1, rows)
    segments = []
    row = int(rng.integers(20, 60))
    while row + 30 < rows:
        label = "Run" if rng.random() < 0.5 else "Walk"
        length = int(min(rng.integers(30, 80), rows - row))
        index = np.arange(length)
        if label == "Run":
            accel[row : row + length] += 2.0 * np.sin(2 * np.pi * index / 4 + rng.random() * 6)
        else:
            accel[row : row + length] += 1.0 * np.sin(2 * np.pi * index / 20 + rng.random() * 6)
            gyro[row : row + length] += 1.0
        segments.append((label, row, row + length - 1))
        row += length + int(rng.integers(30, 80))
    columns = {"time": [round(0.5 * i, 1) for i in range(rows)], "accel": accel.round(4).tolist()}
    columns["gyro"] = gyro.round(4).tolist()
    return columns, segments


def with_dates(columns: dict[str, list]) -> dict[str, list]:
    """The same series with ``time`` as date strings in DATE_FORMAT (d3's %L: milliseconds)."""
    stamps = [_START + timedelta(seconds=t) for t in columns["time"]]
    return {**columns, "time": [s.strftime("%Y-%m-%d %H:%M:%S.") + f"{s.microsecond // 1000:03d}" for s in stamps]}


def to_csv(columns: dict[str, list], sep: str = ",") -> str:
    names = list(columns)
    lines = [sep.join(names)] + [sep.join(str(columns[n][i]) for n in names) for i in range(len(columns["time"]))]
    return "\n".join(lines) + "\n"


def row_labels(rows: int, segments: list[tuple[str, int, int]]) -> list[str | None]:
    labels: list[str | None] = [None] * rows
    for label, first, last in segments:
        labels[first : last + 1] = [label] * (last - first + 1)
    return labels


def iou(truth: list[str | None], predicted: list[str | None], label: str) -> float:
    """Intersection over union of the rows carrying ``label``."""
    true_rows = {i for i, v in enumerate(truth) if v == label}
    predicted_rows = {i for i, v in enumerate(predicted) if v == label}
    union = true_rows | predicted_rows
    return len(true_rows & predicted_rows) / len(union) if union else 1.0
