"""Ultralytics YOLO for every control tag it can fill: boxes (``RectangleLabels``, oriented with an OBB
model), instance masks (``PolygonLabels``, ``BrushLabels``), image classes (``Choices``), pose
(``KeyPointLabels``), object tracking in video (``VideoRectangle``) and per-frame video classes
(``TimelineLabels``). Each control picks its weights (``model_path``) and thresholds in the label
config; model class names map onto the config's labels by name or ``predicted_values``. Detection
fine-tunes from the project's annotated boxes."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.devices import torch_device
from label_studio_ml.errors import LabelConfigError, MediaError
from label_studio_ml.media.images import open_image
from label_studio_ml.results import regions
from label_studio_ml.results.brush import mask_to_rle
from label_studio_ml.results.geometry import point_to_percent, polygon_to_percent, to_percent
from label_studio_ml.results.label_config import ControlPair
from label_studio_ml.training.examples import collect

logger = logging.getLogger(__name__)

#: weights each kind of control uses when its tag names none (ultralytics fetches these names on first use)
DEFAULT_WEIGHTS = {
    "detect": "yolo11n.pt",
    "obb": "yolo11n-obb.pt",
    "segment": "yolo11n-seg.pt",
    "classify": "yolo11n-cls.pt",
    "pose": "yolo11n-pose.pt",
}
#: (control tag, object tag) -> what the control needs from a model
CONTROL_KINDS = {
    ("RectangleLabels", "Image"): "detect",
    ("PolygonLabels", "Image"): "segment",
    ("BrushLabels", "Image"): "segment",
    ("Choices", "Image"): "classify",
    ("KeyPointLabels", "Image"): "pose",
    ("VideoRectangle", "Video"): "detect",
    ("TimelineLabels", "Video"): "classify",
}
TRUE = {"1", "true", "yes"}
#: the class of video frames no TimelineLabels range covers, when training
BACKGROUND = "_background"


def _env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def configure_ultralytics() -> None:
    """Keep ultralytics from phoning home (analytics) and from pip-installing packages at run time; with
    ``YOLO_OFFLINE=1`` it also downloads nothing (no fonts, no weights)."""
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    from ultralytics.utils import SETTINGS

    if SETTINGS.get("sync"):
        SETTINGS.update(sync=False)


@dataclass
class Loaded:
    """One YOLO object with the lock that serialises its use (ultralytics predictors are stateful)."""

    yolo: Any
    source: str
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def names(self) -> dict[int, str]:
        return {int(k): str(v) for k, v in self.yolo.names.items()}

    @property
    def task(self) -> str:
        return str(self.yolo.task)


class Weights:
    """The YOLO models the process has loaded, once per weight file and use, shared by all projects; the
    least recently used goes when more than ``capacity`` are loaded (each training adds a weight file).
    Tracking gets its own object, as ultralytics attaches tracker state to the model it tracks with."""

    def __init__(self, model_dir: Path, device: str, allow_custom: bool, capacity: int = 8) -> None:
        self.model_dir = model_dir.resolve()
        self.device = device
        self.allow_custom = allow_custom
        self.capacity = max(1, capacity)
        self._lock = threading.Lock()
        self._models: OrderedDict[tuple[str, str], Loaded] = OrderedDict()

    def resolve(self, name: str) -> str:
        """A weight file under MODEL_DIR (a path leaving it is refused: label configs name these files). A
        released name that is not there yet (``yolo11n.pt``, ...) is fetched there by ultralytics."""
        local = (self.model_dir / name).resolve()
        if not local.is_relative_to(self.model_dir):
            raise LabelConfigError(f"model_path {name!r} is outside MODEL_DIR")
        return str(local)

    def get(self, source: str, use: str = "predict") -> Loaded:
        key = (source, use)
        with self._lock:
            loaded = self._models.get(key)
            if loaded is None:
                from ultralytics import YOLO

                loaded = Loaded(YOLO(source), source)
                logger.info("loaded %s for %s: task %s, %d classes", source, use, loaded.task, len(loaded.names))
                self._models[key] = loaded
                while len(self._models) > self.capacity:
                    self._models.popitem(last=False)
            self._models.move_to_end(key)
            return loaded


@dataclass(frozen=True)
class Control:
    """A control tag the model fills, with what its tag attributes ask for."""

    pair: ControlPair
    kind: str
    weights: str
    threshold: float
    attrs: dict[str, str]

    def attr(self, name: str, default: str) -> str:
        return self.attrs.get(name) or default

    @property
    def options(self) -> dict[str, Any]:
        """ultralytics predict arguments: the confidence floor, NMS IoU and image size the tag asks for."""
        return {
            "conf": float(self.attr("model_conf", str(min(self.threshold, 0.25)))),
            "iou": float(self.attr("model_iou", "0.7")),
            # classifiers are trained at 224 pixels, detectors at 640
            "imgsz": int(self.attr("model_imgsz", "224" if self.kind == "classify" else _env("YOLO_IMGSZ", "640"))),
        }


class YOLOModel(LabelStudioMLBase):
    service_name = "yolo"
    predict_batch_size = 8

    @classmethod
    def load(cls) -> Weights:
        configure_ultralytics()
        device = torch_device()
        weights = Weights(
            Path(_env("MODEL_DIR", ".")),
            device,
            _env("ALLOW_CUSTOM_MODEL_PATH", "true").lower() in TRUE,
            int(_env("YOLO_MAX_MODELS", "8")),
        )
        for name in filter(None, (n.strip() for n in _env("YOLO_PRELOAD", "").split(","))):
            weights.get(weights.resolve(name))
        logger.info("yolo: device %s", device)
        return weights

    # --- label config --------------------------------------------------------------------------
    def setup(self) -> None:
        self.controls: list[Control] = []
        for name, info in self.config.controls.items():
            pair = self.config.find(info["type"], name_filter=name, required=False)
            kind = CONTROL_KINDS.get((info["type"], pair.object_type)) if pair and pair.from_name == name else None
            if kind is None:
                continue
            attrs = self.config.attrs(name)
            if attrs.get("model_skip", "").lower() in TRUE:
                continue
            if info["type"] == "VideoRectangle":
                pair = self._with_video_labels(pair)
            elif kind == "detect" and attrs.get("model_obb", "").lower() in TRUE:
                kind = "obb"
            self.controls.append(Control(pair, kind, self._weights_for(pair, kind, attrs), _threshold(attrs), attrs))
        if not self.controls:
            raise LabelConfigError(
                "label config has no RectangleLabels, PolygonLabels, BrushLabels, Choices or KeyPointLabels on an "
                "Image, nor VideoRectangle or TimelineLabels on a Video"
            )

    def _with_video_labels(self, pair: ControlPair) -> ControlPair:
        """A VideoRectangle holds no labels: they come from the Labels tag on the same video."""
        for labels in self.config.find_all("Labels"):
            if labels.to_name == pair.to_name:
                return replace(pair, labels=labels.labels, labels_attrs=labels.labels_attrs)
        return pair

    def _weights_for(self, pair: ControlPair, kind: str, attrs: dict[str, str]) -> str:
        """The project's own trained weights for this control, else the tag's ``model_path``, else the default."""
        trained = self.version_dir / f"{pair.from_name}.pt" if self.version_dir is not None else None
        if trained is not None and trained.is_file():
            return str(trained)
        weights: Weights | None = self.resources
        custom = attrs.get("model_path") if weights is None or weights.allow_custom else None
        name = custom or _env(f"YOLO_{kind.upper()}_MODEL", DEFAULT_WEIGHTS[kind])
        return weights.resolve(name) if weights is not None else name

    # --- prediction ----------------------------------------------------------------------------
    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        found: list[list[dict[str, Any]]] = [[] for _ in tasks]
        images = [c for c in self.controls if c.pair.object_type == "Image"]
        batch = int(_env("YOLO_BATCH", "16"))
        for data_key in dict.fromkeys(c.pair.data_key for c in images):
            on_image = [c for c in images if c.pair.data_key == data_key]
            # a bounded number of decoded images at a time: LS may send every task of a project at once
            for start in range(0, len(tasks), batch):
                for index, items in self._predict_images(tasks[start : start + batch], data_key, on_image):
                    found[start + index] += items
        for control in (c for c in self.controls if c.pair.object_type == "Video"):
            for index, task in enumerate(tasks):
                path = self._media_path(task, control.pair.data_key)
                if control.kind == "classify":
                    found[index] += self._timeline(control, path)
                else:
                    found[index] += self._track(control, path)
        return [{"result": items, "score": _mean_score(items)} for items in found]

    def _media_path(self, task: dict[str, Any], key: str) -> str:
        url = (task.get("data") or {}).get(key)
        if not isinstance(url, str) or not url:
            raise MediaError(f"task {task.get('id')} has no media in data[{key!r}]")
        return self.get_local_path(url, task_id=task.get("id"))

    def _predict_images(
        self, tasks: list[dict[str, Any]], data_key: str, controls: list[Control]
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Each control's regions per task: the images are decoded once, and each weight file runs once
        over the whole batch for every control that uses it."""
        weights: Weights = self.resources
        pictures = [open_image(self._media_path(task, data_key)) for task in tasks]
        # ultralytics expects BGR arrays (what cv2 decodes); Pillow applied the EXIF rotation LS shows
        arrays = [np.ascontiguousarray(np.asarray(p)[:, :, ::-1]) for p in pictures]
        by_weights: dict[tuple[str, tuple[tuple[str, Any], ...]], list[Control]] = defaultdict(list)
        for control in controls:
            by_weights[(control.weights, tuple(sorted(control.options.items())))].append(control)
        for (source, options), users in by_weights.items():
            model = weights.get(source)
            with model.lock:
                results = model.yolo.predict(arrays, device=weights.device, verbose=False, **dict(options))
            for index, result in enumerate(results):
                items: list[dict[str, Any]] = []
                for control in users:
                    items += self._regions(control, model, result)
                yield index, items

    def _regions(self, control: Control, model: Loaded, result: Any) -> list[dict[str, Any]]:
        height, width = (int(v) for v in result.orig_shape[:2])
        names = model.names
        pair = control.pair
        out: list[dict[str, Any]] = []
        if control.kind == "classify":
            return _choices(control, names, result.probs.data.detach().cpu().numpy())
        if control.kind == "obb":
            if result.obb is None:
                return out
            found = result.obb
            corners = found.xyxyxyxy.cpu().numpy()
            # LS keeps a turned box only whole inside the image: one reaching past an edge is left out
            inside = ((corners >= -0.5) & (corners <= np.array([width, height]) + 0.5)).all(axis=(1, 2))
            for (cx, cy, w, h, angle), score, cls, whole in zip(
                found.xywhr.tolist(), found.conf.tolist(), found.cls.tolist(), inside
            ):
                label = pair.map_label(names[int(cls)])
                if label is not None and score >= control.threshold and whole:
                    box, rotation = rotated_box(cx, cy, w, h, angle, width, height)
                    out.append(regions.rectangle(pair, box, width, height, label, score, rotation=rotation))
            return out
        boxes = result.boxes
        if boxes is None or not len(boxes):
            return out
        if control.kind == "pose":
            return _keypoints(control, result, names, width, height) if result.keypoints is not None else out
        scores, classes = boxes.conf.tolist(), boxes.cls.tolist()
        keep = [
            (i, label, score)
            for i, (score, cls) in enumerate(zip(scores, classes))
            if score >= control.threshold and (label := pair.map_label(names[int(cls)])) is not None
        ]
        if control.kind == "detect":
            for i, label, score in keep:
                x1, y1, x2, y2 = boxes.xyxy[i].tolist()
                box = to_percent(x1, y1, x2 - x1, y2 - y1, width, height)
                out.append(regions.rectangle(pair, box, width, height, label, score))
        elif control.kind == "segment" and result.masks is not None:
            if pair.type == "PolygonLabels":
                polygons = result.masks.xy
                for i, label, score in keep:
                    if len(polygons[i]) >= 3:
                        points = polygon_to_percent(polygons[i].tolist(), width, height)
                        out.append(regions.polygon(pair, points, width, height, label, score))
            else:
                out += self._brushes(pair, result, keep, width, height)
        return out

    @staticmethod
    def _brushes(
        pair: ControlPair, result: Any, keep: list[tuple[int, str, float]], width: int, height: int
    ) -> list[dict[str, Any]]:
        from ultralytics.utils.ops import scale_masks

        out = []
        for i, label, score in keep:
            # the library's own rescaling of its letterboxed mask onto the original image, one mask at a time
            # (a float mask of a 12-megapixel photo is 48 MB)
            mask = (scale_masks(result.masks.data[i][None, None].float(), (height, width))[0, 0] > 0.5).cpu().numpy()
            if mask.any():
                out.append(regions.brush(pair, mask_to_rle(mask), width, height, label, score))
        return out

    def _track(self, control: Control, path: str) -> list[dict[str, Any]]:
        """Tracks over a video, one ``videorectangle`` region per track id. Frames stream through the model
        one at a time; only the boxes are kept."""
        weights: Weights = self.resources
        model = weights.get(control.weights, use="track")
        names = model.names
        fps = video_fps(path)
        tracks: dict[int, list[dict[str, Any]]] = defaultdict(list)
        labels: dict[int, str] = {}
        frames = 0
        with model.lock, tracker_config(control, weights) as tracker:
            stream = model.yolo.track(
                path,
                stream=True,
                persist=False,
                tracker=tracker,
                device=weights.device,
                verbose=False,
                **control.options,
            )
            for frames, result in enumerate(stream, start=1):
                boxes = result.boxes
                if boxes is None or boxes.id is None:
                    continue
                height, width = result.orig_shape[:2]
                for track, score, cls, xyxy in zip(
                    boxes.id.int().tolist(), boxes.conf.tolist(), boxes.cls.tolist(), boxes.xyxy.tolist()
                ):
                    label = control.pair.map_label(names[int(cls)])
                    if label is None or score < control.threshold:
                        continue
                    x1, y1, x2, y2 = xyxy
                    box = to_percent(x1, y1, x2 - x1, y2 - y1, width, height)
                    # LS numbers frames from 1; a frame's time is when it starts showing
                    tracks[track].append(
                        {
                            "frame": frames,
                            "time": (frames - 1) / fps,
                            **box,
                            "rotation": 0,
                            "enabled": True,
                            "score": score,
                        }
                    )
                    labels[track] = label
        duration = frames / fps
        return [
            video_rectangle(control.pair, sequence, labels[track], frames, duration)
            for track, sequence in tracks.items()
        ]

    def _timeline(self, control: Control, path: str) -> list[dict[str, Any]]:
        """Per-frame classes over a video as ``timelinelabels`` ranges of consecutive frames."""
        weights: Weights = self.resources
        model = weights.get(control.weights)
        mapped = {i: label for i, name in model.names.items() if (label := control.pair.map_label(name)) is not None}
        runs: dict[str, list[tuple[int, float]]] = defaultdict(list)
        out: list[dict[str, Any]] = []
        options = {k: v for k, v in control.options.items() if k == "imgsz"}
        with model.lock:
            stream = model.yolo.predict(path, stream=True, device=weights.device, verbose=False, **options)
            for frame, result in enumerate(stream, start=1):
                probs = result.probs.data.detach().cpu().numpy()
                best: dict[str, float] = {}
                for index, label in mapped.items():
                    best[label] = max(best.get(label, 0.0), float(probs[index]))
                for label, score in best.items():
                    run = runs[label]
                    if score >= control.threshold:
                        run.append((frame, score))
                    elif run:
                        out.append(timeline_range(control.pair, label, run))
                        run.clear()
        out += [timeline_range(control.pair, label, run) for label, run in runs.items() if run]
        return out

    # --- training ------------------------------------------------------------------------------
    def fit(self, event: str, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Fine-tune from the project's annotations the first ``RectangleLabels`` on an Image (detection) and
        every ``TimelineLabels`` (per-frame classes). Each trained control's weights go into the new version as
        ``<control name>.pt``; the others keep the weights the previous version gave them."""
        detection = next((c for c in self.controls if c.kind == "detect" and c.pair.type == "RectangleLabels"), None)
        jobs = (
            [(detection, box_example, self._write_boxes, int(_env("YOLO_TRAIN_MIN_IMAGES", "2")))] if detection else []
        )
        jobs += [(c, timeline_example, self._write_frames, 1) for c in self.controls if c.pair.type == "TimelineLabels"]
        trained = []
        for control, example_of, write, minimum in jobs:
            name = control.pair.from_name
            examples = collect(
                self, event, data, partial(example_of, control.pair), kwargs.get("events"), key=f"examples-{name}"
            )
            if len(examples) < minimum:
                logger.info(
                    "project %s: %d example(s) for %s, training needs %d", self.project_id, len(examples), name, minimum
                )
                continue
            with tempfile.TemporaryDirectory(prefix="yolo-train-") as tmp:
                dataset = write(Path(tmp) / "dataset", control, examples)
                if dataset is not None:
                    shutil.copyfile(self._train(control, dataset, Path(tmp) / "runs"), self.output_dir / f"{name}.pt")
                    trained.append(name)
        if trained and self.version_dir is not None:
            for previous in self.version_dir.glob("*.pt"):
                if not (self.output_dir / previous.name).exists():
                    shutil.copyfile(previous, self.output_dir / previous.name)
        return {"trained": trained}

    def _write_boxes(self, root: Path, control: Control, examples: dict[str, dict[str, Any]]) -> Path:
        """A YOLO detection dataset: images as LS shows them (EXIF applied), a file of normalised boxes each."""
        (root / "images").mkdir(parents=True)
        (root / "labels").mkdir()
        for number, (key, example) in enumerate(sorted(examples.items())):
            self.report_progress(0.3 * number / len(examples), "reading images")
            try:
                picture = open_image(self.get_local_path(example["image"], task_id=example.get("task")))
            except MediaError as exc:
                logger.warning("task %s left out of training: %s", key, exc)
                continue
            picture.save(root / "images" / f"{key}.png")
            lines = [f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}" for c, x, y, w, h in example["boxes"]]
            (root / "labels" / f"{key}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        names = "".join(f"  {i}: {label!r}\n" for i, label in enumerate(control.pair.labels))
        dataset = root / "data.yaml"
        dataset.write_text(f"path: {root}\ntrain: images\nval: images\nnames:\n{names}")
        return dataset

    def _write_frames(self, root: Path, control: Control, examples: dict[str, dict[str, Any]]) -> Path | None:
        """A classification dataset (a folder per class) of the annotated videos' frames: a frame inside one
        label's range is that label's, a frame in none is background, a frame in several is left out. Frames
        stream from the decoder and go to disk; at most ``YOLO_TRAIN_MAX_FRAMES`` in all."""
        import cv2

        budget = int(_env("YOLO_TRAIN_MAX_FRAMES", "2000"))
        for number, (key, example) in enumerate(sorted(examples.items())):
            self.report_progress(0.3 * number / len(examples), "reading video frames")
            try:
                path = self.get_local_path(example["video"], task_id=example.get("task"))
            except MediaError as exc:
                logger.warning("task %s left out of training: %s", key, exc)
                continue
            capture = cv2.VideoCapture(path)
            step = max(1, -(-int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) * len(examples) // budget))
            frame = 0
            while capture.grab():
                frame += 1
                covering = {label for start, end, label in example["ranges"] if start <= frame <= end}
                if (frame - 1) % step or len(covering) > 1:
                    continue
                ok, image = capture.retrieve()
                folder = root / "train" / (covering.pop() if covering else BACKGROUND)
                folder.mkdir(parents=True, exist_ok=True)
                if ok:
                    cv2.imwrite(str(folder / f"{key}-{frame}.jpg"), image)
            capture.release()
        classes = [p.name for p in (root / "train").glob("*")] if (root / "train").is_dir() else []
        if len(classes) < 2:
            logger.info(
                "project %s: frames of %d class(es) for %s; training needs 2",
                self.project_id,
                len(classes),
                control.pair.from_name,
            )
            return None
        (root / "val").symlink_to(root / "train")  # ultralytics wants a validation split: the same frames
        return root

    def _train(self, control: Control, dataset: Path, runs: Path) -> Path:
        from ultralytics import YOLO

        weights: Weights = self.resources
        model = YOLO(control.weights)  # a copy of its own: the served model keeps serving meanwhile
        epochs = int(control.attr("model_train_epochs", _env("YOLO_TRAIN_EPOCHS", "30")))
        batch = int(_env("YOLO_TRAIN_BATCH", "8"))

        def progress(trainer: Any) -> None:
            self.report_progress(0.3 + 0.7 * (trainer.epoch + 1) / epochs, f"epoch {trainer.epoch + 1}/{epochs}")

        model.add_callback("on_train_epoch_end", progress)
        model.train(
            data=str(dataset),
            epochs=epochs,
            imgsz=control.options["imgsz"],
            batch=batch,
            nbs=batch,  # step every batch: ultralytics would otherwise accumulate up to 64 images a step
            device=weights.device,
            workers=0,
            project=str(runs),
            name="train",
            exist_ok=True,
            plots=False,
            verbose=False,
            seed=0,
        )
        trainer = model.trainer
        best = Path(trainer.best)
        return best if best.is_file() else Path(trainer.last)


def _threshold(attrs: dict[str, str]) -> float:
    value = attrs.get("model_score_threshold") or attrs.get("score_threshold") or _env("SCORE_THRESHOLD", "0.5")
    return float(value)


def _mean_score(items: list[dict[str, Any]]) -> float | None:
    scores = [item["score"] for item in items if isinstance(item.get("score"), float)]
    return float(np.mean(scores)) if scores else None


def _choices(control: Control, names: dict[int, str], probs: np.ndarray) -> list[dict[str, Any]]:
    """``choice="multiple"``: every mapped class at or above the threshold; otherwise the best mapped one."""
    scored: dict[str, float] = {}
    for index, name in names.items():
        label = control.pair.map_label(name)
        if label is not None:
            scored[label] = max(scored.get(label, 0.0), float(probs[index]))
    if control.attr("choice", "single") == "multiple":
        chosen = {label: score for label, score in scored.items() if score >= control.threshold}
    else:
        top = max(scored.items(), key=lambda item: item[1], default=None)
        chosen = dict([top]) if top is not None and top[1] >= control.threshold else {}
    if not chosen:
        return []
    return [regions.choices(control.pair, list(chosen), float(np.mean(list(chosen.values()))))]


def _keypoints(control: Control, result: Any, names: dict[int, str], width: int, height: int) -> list[dict[str, Any]]:
    """Points of each pose instance scoring at least the threshold. A config label names the point it is
    with ``model_index="<point number>"`` and, optionally, the class through ``predicted_values``."""
    point_labels = {
        (attrs.get("predicted_values", "").strip() or None, int(attrs["model_index"])): label
        for label, attrs in control.pair.labels_attrs.items()
        if attrs.get("model_index", "").strip().isdigit()
    }
    point_threshold = float(control.attr("model_point_threshold", "0"))
    size = float(control.attr("model_point_size", "1")) * 100.0 / width
    points = result.keypoints.xy.tolist()
    confidence = result.keypoints.conf.tolist() if result.keypoints.conf is not None else None
    out = []
    for i, (score, cls) in enumerate(zip(result.boxes.conf.tolist(), result.boxes.cls.tolist())):
        if score < control.threshold:
            continue
        for k, (x, y) in enumerate(points[i]):
            label = point_labels.get((names[int(cls)], k)) or point_labels.get((None, k))
            point_score = confidence[i][k] if confidence is not None else score
            if label is None or point_score < point_threshold:
                continue
            point = point_to_percent(x, y, width, height)
            out.append(regions.keypoint(control.pair, point, size, width, height, label, point_score))
    return out


def rotated_box(
    cx: float, cy: float, w: float, h: float, angle: float, width: int, height: int
) -> tuple[dict[str, float], float]:
    """An oriented box (centre, size, angle in radians, clockwise on screen) as LS percent geometry: LS turns
    a rectangle about its top-left corner, so ``x``/``y`` is that corner after the turn."""
    cos, sin = np.cos(angle), np.sin(angle)
    corner_x = cx - (w / 2) * cos + (h / 2) * sin
    corner_y = cy - (w / 2) * sin - (h / 2) * cos
    box = {
        "x": 100.0 * corner_x / width,
        "y": 100.0 * corner_y / height,
        "width": 100.0 * w / width,
        "height": 100.0 * h / height,
    }
    return box, float(np.degrees(angle) % 360.0)


def labelled(pair: ControlPair, annotation: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, value) of each region of the annotation on ``pair`` whose label the config has."""
    for item in annotation.get("result") or []:
        value = item.get("value") or {}
        labels = value.get(pair.result_type) or []
        if item.get("from_name") == pair.from_name and labels and labels[0] in pair.labels:
            yield labels[0], value


def box_example(pair: ControlPair, task: dict[str, Any], annotation: dict[str, Any]) -> dict[str, Any] | None:
    """A training example of an annotation: the image and its boxes as (class, cx, cy, w, h), normalised."""
    image = (task.get("data") or {}).get(pair.data_key)
    if not isinstance(image, str) or not image:
        return None
    boxes = [
        [pair.labels.index(label), *box] for label, value in labelled(pair, annotation) if (box := upright_box(value))
    ]
    # an annotation without boxes is a negative example: the image holds none of the labels
    return {"image": image, "task": task.get("id"), "boxes": boxes}


def timeline_example(pair: ControlPair, task: dict[str, Any], annotation: dict[str, Any]) -> dict[str, Any] | None:
    """A training example of an annotation: the video and its labelled frame ranges (1-based, inclusive)."""
    video = (task.get("data") or {}).get(pair.data_key)
    if not isinstance(video, str) or not video:
        return None
    ranges = [
        [int(span["start"]), int(span["end"]), label]
        for label, value in labelled(pair, annotation)
        for span in value.get("ranges") or []
        if isinstance(span.get("start"), (int, float))
        and isinstance(span.get("end"), (int, float))
        and 1 <= span["start"] <= span["end"]
    ]
    return {"video": video, "task": task.get("id"), "ranges": ranges}


def upright_box(value: dict[str, Any]) -> tuple[float, float, float, float] | None:
    """A LS rectangle (percent, turned by ``rotation`` degrees about its corner) as the normalised centre and
    size of the upright box around it, clipped to the image; None when nothing of it is left."""
    try:
        x, y, w, h = (float(value[k]) / 100.0 for k in ("x", "y", "width", "height"))
    except (KeyError, TypeError, ValueError):
        return None
    turn = np.radians(float(value.get("rotation") or 0.0))
    # the corners in percent space are exact only for a square image; LS's own YOLO export does the same
    offsets = np.array([[0, 0], [w, 0], [w, h], [0, h]])
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    corners = np.clip(offsets @ rotation.T + [x, y], 0.0, 1.0)
    (left, top), (right, bottom) = corners.min(axis=0), corners.max(axis=0)
    if right - left <= 0 or bottom - top <= 0:
        return None
    return (left + right) / 2, (top + bottom) / 2, right - left, bottom - top


@contextmanager
def tracker_config(control: Control, weights: Weights) -> Iterator[str]:
    """The tracker a VideoRectangle names (``model_tracker``: botsort, bytetrack, or a YAML file in MODEL_DIR),
    with the settings it overrides through prefixed attributes (``bytetrack_track_buffer="60"``)."""
    from ultralytics.utils.checks import check_yaml

    name = control.attr("model_tracker", "botsort")
    file = name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"
    local = Path(weights.resolve(file))
    base = str(local) if local.is_file() else file
    prefix = f"{Path(file).stem}_"
    overrides = {key[len(prefix) :]: value for key, value in control.attrs.items() if key.startswith(prefix)}
    if not overrides:
        yield base
        return
    settings = yaml.safe_load(Path(check_yaml(base)).read_text())
    for key, value in overrides.items():
        if key not in settings:
            raise LabelConfigError(f"tracker {name!r} has no setting {key!r}")
        kind = type(settings[key])
        settings[key] = value.lower() in TRUE if kind is bool else kind(value) if kind in (int, float) else value
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="tracker-") as written:
        yaml.safe_dump(settings, written)
        written.flush()
        yield written.name


def video_fps(path: str) -> float:
    import cv2

    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise MediaError(f"{Path(path).name} is not a video OpenCV can read")
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        capture.release()
    return fps if fps > 0 else 25.0


def video_rectangle(
    pair: ControlPair, sequence: list[dict[str, Any]], label: str, frames: int, duration: float
) -> dict[str, Any]:
    """One track as LS's ``videorectangle``: a keyframe per frame it was seen. ``enabled: false`` ends the
    box's lifespan at the last frame before a gap and at the track's last frame."""
    for before, after in zip(sequence, sequence[1:]):
        if after["frame"] - before["frame"] > 1:
            before["enabled"] = False
    sequence[-1]["enabled"] = False
    score = max(box.pop("score") for box in sequence)
    return {
        "id": regions.region_id(),
        "from_name": pair.from_name,
        "to_name": pair.to_name,
        "type": "videorectangle",
        "value": {"framesCount": frames, "duration": duration, "sequence": sequence, "labels": [label]},
        "score": float(score),
    }


def timeline_range(pair: ControlPair, label: str, run: list[tuple[int, float]]) -> dict[str, Any]:
    """Consecutive frames (1-based, inclusive) where ``label`` scored above the threshold."""
    return {
        "id": regions.region_id(),
        "from_name": pair.from_name,
        "to_name": pair.to_name,
        "type": "timelinelabels",
        "value": {"ranges": [{"start": run[0][0], "end": run[-1][0]}], "timelinelabels": [label]},
        "score": float(np.mean([score for _, score in run])),
    }
