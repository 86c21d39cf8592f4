"""Time-series segmentation (TimeSeriesLabels on TimeSeries): per-timestep window features and a
randomized-trees classifier (scikit-learn), trained from LS annotations; runs of one predicted label
become regions with start/end in the time column's units."""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d
from series import Series, SeriesSpec, bound_key, read_series
from sklearn.ensemble import ExtraTreesClassifier

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.errors import MediaError
from label_studio_ml.media.fetch import is_media_reference
from label_studio_ml.results import regions
from label_studio_ml.training.examples import collect

logger = logging.getLogger(__name__)

BACKGROUND = 0  # the class of rows no annotated segment covers; labels are classes 1..n


def _env_ints(name: str, default: str) -> tuple[int, ...]:
    return tuple(int(v) for v in (os.environ.get(name) or default).split(",") if v.strip())


def window_features(values: np.ndarray, windows: tuple[int, ...]) -> np.ndarray:
    """Per row and channel: the value, its step, and centered rolling mean/std/min/max/mean |step| per window
    (scipy's running filters, the series' ends repeated). Missing values (empty CSV cells) are interpolated."""
    x = pd.DataFrame(values).interpolate(limit_direction="both").fillna(0.0).to_numpy(float)
    if not len(x):
        return np.zeros((0, x.shape[1] * (2 + 5 * len(windows))))
    step = np.vstack([np.zeros((1, x.shape[1])), np.diff(x, axis=0)])
    offset = x.mean(axis=0)
    centered = x - offset  # the variance as E[x²] - E[x]² loses precision far from zero
    columns = [x, step]
    for size in windows:
        mean = uniform_filter1d(centered, size, axis=0, mode="nearest")
        variance = uniform_filter1d(centered * centered, size, axis=0, mode="nearest") - mean * mean
        columns += [
            mean + offset,
            np.sqrt(np.maximum(variance, 0.0)),
            minimum_filter1d(x, size, axis=0, mode="nearest"),
            maximum_filter1d(x, size, axis=0, mode="nearest"),
            uniform_filter1d(np.abs(step), size, axis=0, mode="nearest"),
        ]
    return np.hstack(columns)


@dataclass
class Segmenter:
    """What fit writes: the classifier and everything needed to compute its input the same way."""

    classifier: ExtraTreesClassifier
    labels: list[str]  # class i + 1 is labels[i]
    channels: tuple[str, ...]
    windows: tuple[int, ...]
    smoothing: int

    def probabilities(self, series: list[Series]) -> list[np.ndarray]:
        """Per series, rows x (background + labels) probabilities, smoothed over ``smoothing`` rows."""
        full = np.zeros((sum(len(s) for s in series), len(self.labels) + 1))
        if len(full):
            features = np.vstack([window_features(s.values, self.windows) for s in series])
            full[:, self.classifier.classes_] = self.classifier.predict_proba(features)
        out, start = [], 0
        for s in series:
            rows = full[start : start + len(s)]
            start += len(s)
            out.append(uniform_filter1d(rows, self.smoothing, axis=0, mode="nearest") if len(rows) else rows)
        return out


def runs(classes: np.ndarray) -> list[tuple[int, int]]:
    """``(first, last)`` rows of each run of equal classes, in order."""
    if not len(classes):
        return []
    edges = np.flatnonzero(np.diff(classes)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges - 1, [len(classes) - 1]])
    return list(zip(starts.tolist(), ends.tolist()))


class TimeSeriesSegmenter(LabelStudioMLBase):
    service_name = "timeseries_segmenter"

    def setup(self) -> None:
        self.pair = self.find_control("TimeSeriesLabels", "TimeSeries")
        self.spec = SeriesSpec.from_config(self.label_config, self.pair.to_name)
        self.segmenter: Segmenter | None = None
        if self.version_dir is not None and (self.version_dir / "segmenter.pkl").exists():
            with (self.version_dir / "segmenter.pkl").open("rb") as fh:
                self.segmenter = Segmenter(**pickle.load(fh))  # our own artifact, written by fit below

    def read(self, task: dict[str, Any]) -> Series:
        """The task's series: fetched through core's media access when the data names a file."""
        raw = (task.get("data") or {}).get(self.spec.data_key)
        if raw is None:
            raise MediaError(f"task {task.get('id')} has no data key {self.spec.data_key!r}")
        if is_media_reference(raw):
            raw = self.read_text(task, self.spec.data_key)
        return read_series(self.spec, raw)

    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        segmenter = self.segmenter
        if segmenter is None:
            return [{"result": [], "score": None} for _ in tasks]
        if segmenter.channels != self.spec.channels:
            logger.warning(
                "project %s: model trained on channels %s, config has %s; retrain",
                self.project_id,
                segmenter.channels,
                self.spec.channels,
            )
            return [{"result": [], "score": None} for _ in tasks]
        series = [self.read(task) for task in tasks]
        return [self._regions(s, p, segmenter) for s, p in zip(series, segmenter.probabilities(series))]

    def _regions(self, series: Series, probabilities: np.ndarray, segmenter: Segmenter) -> dict[str, Any]:
        classes = probabilities.argmax(axis=1)
        result = []
        for first, last in runs(classes):
            code = int(classes[first])
            label = self.pair.map_label(segmenter.labels[code - 1]) if code != BACKGROUND else None
            if label is None:
                continue
            score = float(probabilities[first : last + 1, code].mean())
            start, end = series.times[first], series.times[last]
            value = {"start": start, "end": end, "instant": first == last, "timeserieslabels": [label]}
            result.append(
                {
                    "id": regions.region_id(),
                    "from_name": self.pair.from_name,
                    "to_name": self.pair.to_name,
                    "type": "timeserieslabels",
                    "value": value,
                    "score": score,
                }
            )
        score = float(np.mean([r["score"] for r in result])) if result else None
        return {"result": result, "score": score}

    # --- training ------------------------------------------------------------------------------
    def fit(self, event: str, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        examples = collect(self, event, data, self._example, kwargs.get("events"))
        labels = sorted({segment[2] for e in examples.values() for segment in e["segments"]})
        self.report_progress(0.1, f"{len(examples)} annotated series, labels {labels}")
        windows = _env_ints("SEGMENTER_WINDOWS", "5,15,45")
        smoothing = _env_ints("SEGMENTER_SMOOTHING", "5")[0]
        codes = {label: i + 1 for i, label in enumerate(labels)}
        features, targets = [], []
        for task_id, example in sorted(examples.items()):
            try:
                series = self.read({"id": int(task_id) if task_id.isdigit() else None, "data": example["data"]})
            except MediaError as exc:
                logger.warning("project %s: task %s skipped: %s", self.project_id, task_id, exc)
                continue
            features.append(window_features(series.values, windows))
            targets.append(self._row_classes(series, example["segments"], codes))
        y = np.concatenate(targets) if targets else np.zeros(0, dtype=int)
        if len(np.unique(y)) < 2:
            logger.info("project %s: %d labelled rows in <2 classes; nothing to train", self.project_id, len(y))
            return {"trained": False, "examples": len(examples)}
        self.report_progress(0.3, f"{len(y)} rows, {features[0].shape[1]} features")
        trees = _env_ints("SEGMENTER_TREES", "50")[0]
        classifier = ExtraTreesClassifier(
            n_estimators=trees, min_samples_leaf=5, class_weight="balanced", n_jobs=1, random_state=0
        )
        classifier.fit(np.vstack(features), y)
        segmenter = Segmenter(classifier, labels, self.spec.channels, windows, max(1, smoothing))
        with (self.output_dir / "segmenter.pkl").open("wb") as fh:
            pickle.dump(vars(segmenter), fh)  # plain fields: the module's import name differs between processes
        return {"trained": True, "examples": len(examples), "rows": len(y)}

    def _row_classes(self, series: Series, segments: list[list[Any]], codes: dict[str, int]) -> np.ndarray:
        """Each row's class: the label of the segment covering its time, else background. A segment between
        two rows (an instant drawn off a sample) marks the nearest row."""
        classes = np.full(len(series), BACKGROUND, dtype=int)
        for start, end, label in segments:
            low, high = bound_key(self.spec, start), bound_key(self.spec, end)
            if low is None or high is None or not len(series):
                continue
            low, high = min(low, high), max(low, high)
            inside = (series.keys >= low) & (series.keys <= high)
            if not inside.any():
                inside[int(np.abs(series.keys - (low + high) / 2).argmin())] = True
            classes[inside] = codes[label]
        return classes

    def _example(self, task: dict[str, Any], annotation: dict[str, Any]) -> dict[str, Any] | None:
        segments = []
        for item in annotation.get("result") or []:
            if item.get("from_name") != self.pair.from_name or item.get("to_name") != self.pair.to_name:
                continue
            value = item.get("value") or {}
            chosen = value.get("timeserieslabels") or []
            if chosen and "start" in value and "end" in value:
                segments.append([value["start"], value["end"], str(chosen[0])])
        raw = (task.get("data") or {}).get(self.spec.data_key)
        if not segments or raw is None:
            return None
        return {"data": {self.spec.data_key: raw}, "segments": segments}
