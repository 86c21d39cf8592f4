"""A task's time series as Label Studio's ``TimeSeries`` tag reads it: CSV behind a URL or columns held in
the task, the time column and channels the tag names, ``sep`` and ``timeFormat`` as LS interprets them.

Times become one float key per row, the axis LS draws on: the row index without ``timeColumn``, the
column's numbers without ``timeFormat``, milliseconds since the epoch (UTC) with it. Region bounds go back
to LS in the time column's own values (strings in the ``timeFormat`` for dates), which LS parses again.
"""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from label_studio_ml.errors import LabelConfigError, MediaError

# LS's aliases for `sep`; any other value longer than one character counts by its first character
SEPARATOR_ALIASES = {"tab": "\t", "\\t": "\t", "space": " ", "auto": "auto", "comma": ",", "dot": "."}
# d3 time directives without a strptime twin: %L milliseconds, %Q / %s epoch milliseconds / seconds;
# d3's padding modifiers (%-d, %_d, %0d) parse as the plain directive
_D3_PADDING = re.compile(r"%[-_0]([a-zA-Z])")
_EPOCH_UNITS = {"%Q": "ms", "%s": "s"}


@dataclass(frozen=True)
class SeriesSpec:
    """What a ``TimeSeries`` tag says about its data."""

    data_key: str
    time_column: str | None
    time_format: str | None
    separator: str
    channels: tuple[str, ...]

    @classmethod
    def from_config(cls, label_config: str, object_name: str) -> SeriesSpec:
        # LS reads tag attributes case-insensitively (timeColumn, timecolumn)
        for element in ET.fromstring(label_config).iter():
            attrs = {key.lower(): value for key, value in element.attrib.items()}
            if element.tag.lower() == "timeseries" and attrs.get("name") == object_name:
                break
        else:
            raise LabelConfigError(f"label config has no TimeSeries named {object_name!r}")
        channels = tuple(
            child.attrib[key]
            for child in element.iter()
            if child.tag.lower() == "channel"
            for key in child.attrib
            if key.lower() == "column"
        )
        if not channels:
            raise LabelConfigError(f"TimeSeries {object_name!r} has no <Channel column=...>")
        sep = attrs.get("sep") or ","
        if len(sep) > 1:
            sep = SEPARATOR_ALIASES.get(sep, sep[0])
        return cls(
            data_key=attrs.get("value", "").lstrip("$"),
            time_column=attrs.get("timecolumn") or None,
            time_format=attrs.get("timeformat") or None,
            separator=sep,
            channels=channels,
        )

    @property
    def is_date(self) -> bool:
        """LS parses the time column with timeFormat only when both are set."""
        return bool(self.time_column and self.time_format)


@dataclass
class Series:
    """One task's series: channel values (rows x channels), the float time key and the original times."""

    values: np.ndarray
    keys: np.ndarray
    times: list[Any]

    def __len__(self) -> int:
        return len(self.keys)


def parse_table(raw: Any, separator: str) -> pd.DataFrame:
    """Columns from task data (a dict of lists, or its JSON text) or from fetched CSV/JSON text."""
    if isinstance(raw, str) and raw.lstrip().startswith("{"):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise MediaError(f"time series JSON is malformed: {exc}") from None
    if isinstance(raw, dict):
        try:
            frame = pd.DataFrame(raw)
        except ValueError as exc:  # columns of unequal length
            raise MediaError(f"time series columns do not form a table: {exc}") from None
    elif isinstance(raw, str):
        frame = _read_csv(raw, separator)
    else:
        raise MediaError(f"time series data is a {type(raw).__name__}, not a URL, CSV or columns")
    frame.columns = [str(name).strip().lower() for name in frame.columns]
    return frame


def _read_csv(text: str, separator: str) -> pd.DataFrame:
    sep = None if separator == "auto" else separator
    engine = "python" if sep is None else "c"
    try:
        first = pd.read_csv(io.StringIO(text), sep=sep, engine=engine, header=None, nrows=1, dtype=str)
        # a first row of numbers is data: LS names the columns of a headless CSV by index ("0", "1", ...)
        headless = bool(pd.to_numeric(first.iloc[0], errors="coerce").notna().all())
        return pd.read_csv(io.StringIO(text), sep=sep, engine=engine, header=None if headless else 0)
    except (ValueError, pd.errors.ParserError) as exc:
        raise MediaError(f"time series CSV cannot be read: {exc}") from None


def read_series(spec: SeriesSpec, raw: Any) -> Series:
    frame = parse_table(raw, spec.separator)
    missing = [c for c in spec.channels if c.lower() not in frame.columns]
    if spec.time_column and spec.time_column.lower() not in frame.columns:
        missing.insert(0, spec.time_column)
    if missing:
        raise MediaError(f"time series lacks the columns {missing}; it has {list(frame.columns)}")
    try:
        values = frame[[c.lower() for c in spec.channels]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    except (TypeError, ValueError) as exc:
        raise MediaError(f"time series channels are not numeric: {exc}") from None
    if not spec.time_column:
        keys = np.arange(len(frame), dtype=float)
        return Series(values, keys, list(range(len(frame))))
    column = frame[spec.time_column.lower()]
    keys = time_keys(spec, column)
    if len(keys) and np.isnan(keys).any():
        bad = column[np.isnan(keys)].head(3).tolist()
        raise MediaError(f"time column {spec.time_column!r} has values that do not parse: {bad}")
    if len(keys) > 1 and (np.diff(keys) < 0).any():
        raise MediaError(f"time column {spec.time_column!r} is not sorted (LS requires increasing times)")
    return Series(values, keys, [_plain(v) for v in column.tolist()])


def time_keys(spec: SeriesSpec, column: pd.Series) -> np.ndarray:
    """Float keys of time values: the numbers themselves, or epoch milliseconds of dates."""
    if not spec.is_date:
        return pd.to_numeric(column, errors="coerce").to_numpy(float)
    assert spec.time_format is not None
    unit = _EPOCH_UNITS.get(spec.time_format.strip())
    if unit:
        stamps = pd.to_datetime(pd.to_numeric(column, errors="coerce"), unit=unit, utc=True)
    else:
        stamps = pd.to_datetime(column.astype(str), format=strptime_format(spec.time_format), utc=True, errors="coerce")
    return ((stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(milliseconds=1)).to_numpy(float)


def strptime_format(d3_format: str) -> str:
    return _D3_PADDING.sub(r"%\1", d3_format).replace("%L", "%f")


def bound_key(spec: SeriesSpec, value: Any) -> float | None:
    """The float key of a region bound from an annotation: a number LS kept, or a time string."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)  # with a timeFormat, LS's numbers are epoch milliseconds already
    if isinstance(value, str) and spec.is_date:
        key = time_keys(spec, pd.Series([value]))[0]
    else:
        key = pd.to_numeric(pd.Series([value]), errors="coerce").to_numpy(float)[0]
    return None if np.isnan(key) else float(key)


def _plain(value: Any) -> Any:
    """A JSON-ready time value: numpy scalars to Python, integral floats stay floats as LS parsed them."""
    return value.item() if isinstance(value, np.generic) else value
