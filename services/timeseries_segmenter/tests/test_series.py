from __future__ import annotations

import json

import numpy as np
import pytest
from series import SeriesSpec, bound_key, read_series
from synthetic import DATE_FORMAT, config, make_series, to_csv, with_dates

from label_studio_ml.errors import LabelConfigError, MediaError

from model import TimeSeriesSegmenter, runs


def spec_of(time_column: str | None = "time", time_format: str | None = None, sep: str = ",") -> SeriesSpec:
    time = f' timeColumn="{time_column}"' if time_column else ""
    fmt = f' timeFormat="{time_format}"' if time_format else ""
    xml = (
        f'<View><TimeSeries name="ts" value="$csv" sep="{sep}"{time}{fmt}><MultiChannel><Channel column="A"/>'
        '</MultiChannel><Channel column="b"/></TimeSeries><TimeSeriesLabels name="l" toName="ts"><Label value="X"/>'
        "</TimeSeriesLabels></View>"
    )
    return SeriesSpec.from_config(xml, "ts")


def test_the_tag_names_data_key_time_column_channels_and_separator():
    spec = SeriesSpec.from_config(config(sep="tab", time_format=DATE_FORMAT), "ts")
    assert (spec.data_key, spec.time_column, spec.time_format) == ("csv", "time", DATE_FORMAT)
    assert spec.channels == ("accel", "gyro") and spec.separator == "\t" and spec.is_date
    assert spec_of().channels == ("A", "b"), "channels inside MultiChannel count too"
    with pytest.raises(LabelConfigError):
        SeriesSpec.from_config(config(), "missing")


@pytest.mark.parametrize("sep, written", [(",", ","), (";", ";"), ("\\t", "\t"), ("tab", "\t"), ("auto", ";")])
def test_csv_with_any_separator_and_case_insensitive_columns(sep, written):
    text = "Time,A,B\n0,1.5,2\n1,2.5,3\n".replace(",", written)
    series = read_series(spec_of(sep=sep), text)
    assert series.values.tolist() == [[1.5, 2.0], [2.5, 3.0]]
    assert series.keys.tolist() == [0.0, 1.0] and series.times == [0, 1]


def test_headless_csv_names_columns_by_index_and_no_time_column_means_row_index():
    xml = (
        '<View><TimeSeries name="ts" value="$csv"><Channel column="1"/></TimeSeries>'
        '<TimeSeriesLabels name="l" toName="ts"><Label value="X"/></TimeSeriesLabels></View>'
    )
    series = read_series(SeriesSpec.from_config(xml, "ts"), "10,0.5\n11,0.7\n12,0.9\n")
    assert series.values[:, 0].tolist() == [0.5, 0.7, 0.9]
    assert series.times == [0, 1, 2]


def test_inline_columns_as_object_or_json_text_read_alike():
    columns = {"time": [0.5, 1.0], "a": [1, 2], "B": [3, 4]}
    as_object = read_series(spec_of(), columns)
    as_text = read_series(spec_of(), json.dumps(columns))
    assert as_object.values.tolist() == as_text.values.tolist() == [[1, 3], [2, 4]]
    assert as_object.times == [0.5, 1.0]


def test_date_times_parse_with_d3_directives_to_epoch_milliseconds():
    spec = spec_of(time_format="%Y-%m-%d %H:%M:%S.%L")
    times = ["1970-01-01 00:00:01.250", "1970-01-01 00:00:02.000"]
    series = read_series(spec, {"time": times, "a": [1, 2], "b": [1, 2]})
    assert series.keys.tolist() == [1250.0, 2000.0] and series.times == times
    assert bound_key(spec, "1970-01-01 00:00:01.250") == 1250.0
    assert bound_key(spec, 1250.0) == 1250.0, "a number is LS's epoch milliseconds"
    epoch = spec_of(time_format="%s")
    assert read_series(epoch, {"time": [10, 11], "a": [0, 0], "b": [0, 0]}).keys.tolist() == [10000.0, 11000.0]
    padded = spec_of(time_format="%Y/%-m/%-d")
    assert read_series(padded, {"time": ["2020/1/2", "2020/1/3"], "a": [0, 0], "b": [0, 0]}).keys[1] == 1578009600000.0


@pytest.mark.parametrize(
    "raw, reason",
    [
        ({"time": [0, 1], "a": [1, 2]}, "lacks the columns"),
        ({"time": [1, 0], "a": [1, 2], "b": [1, 2]}, "not sorted"),
        ({"time": ["x", "y"], "a": [1, 2], "b": [1, 2]}, "do not parse"),
        ({"time": [0, 1, 2], "a": [1, 2], "b": [1]}, "do not form a table"),
        ("{not json", "malformed"),
        (42, "not a URL"),
    ],
)
def test_unreadable_series_raise_a_media_error_with_the_reason(raw, reason):
    with pytest.raises(MediaError, match=reason):
        read_series(spec_of(), raw)


def test_runs_split_classes_into_first_last_rows():
    assert runs(np.array([0, 0, 1, 1, 1, 0, 2])) == [(0, 1), (2, 4), (5, 5), (6, 6)]
    assert runs(np.array([], dtype=int)) == []


def test_segments_mark_rows_by_time_and_an_instant_between_samples_marks_the_nearest_row():
    model = TimeSeriesSegmenter(label_config=config())
    columns, _ = make_series(0, rows=10)
    series = read_series(model.spec, to_csv(columns))  # times 0.0, 0.5, ..., 4.5
    classes = model._row_classes(series, [[1.0, 2.0, "Run"], [3.7, 3.7, "Walk"]], {"Run": 1, "Walk": 2})
    assert classes.tolist() == [0, 0, 1, 1, 1, 0, 0, 2, 0, 0]


def test_annotation_regions_of_other_controls_are_not_examples():
    model = TimeSeriesSegmenter(label_config=config(time_format=DATE_FORMAT))
    dated = with_dates(make_series(0, rows=5)[0])
    ours = {"from_name": "label", "to_name": "ts", "type": "timeserieslabels"}
    value = {"start": dated["time"][1], "end": dated["time"][3], "instant": False, "timeserieslabels": ["Run"]}
    task = {"id": 1, "data": {"csv": dated}}
    other = {**ours, "from_name": "other", "value": value}
    assert model._example(task, {"result": [other]}) is None
    example = model._example(task, {"result": [other, {**ours, "value": value}]})
    assert example == {"data": {"csv": dated}, "segments": [[dated["time"][1], dated["time"][3], "Run"]]}
