"""Object detection pre-annotation with MMDetection 3: boxes as RectangleLabels, and, for models with a
mask head, instance masks as PolygonLabels and/or BrushLabels. COCO (or the checkpoint's) class names
map onto the config's labels; detections below SCORE_THRESHOLD or without a label are dropped."""

from __future__ import annotations

import copy
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np
import torch

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.errors import LabelConfigError, MediaError
from label_studio_ml.media.images import open_image
from label_studio_ml.results import regions
from label_studio_ml.results.brush import mask_to_rle
from label_studio_ml.results.geometry import polygon_to_percent, to_percent
from label_studio_ml.results.label_config import ControlPair

logger = logging.getLogger(__name__)

#: served when MMDET_CONFIG is unset: RTMDet-m trained on COCO (box AP 49.1, 24.7 M parameters)
DEFAULT_CONFIG = "rtmdet_m_8xb32-300e_coco"
DEFAULT_CHECKPOINT = (
    "https://download.openmmlab.com/mmdetection/v3.0/rtmdet/rtmdet_m_8xb32-300e_coco/"
    "rtmdet_m_8xb32-300e_coco_20220719_112220-229f527c.pth"
)
#: a polygon may leave the mask's contour by at most this many pixels (Douglas-Peucker)
POLYGON_TOLERANCE_PX = 1.0


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, "").strip() or default


def resolve_config(name: str) -> Path:
    """A config file path: an existing file, or a config shipped inside mmdet, named with or without
    its folder, ``.py`` suffix and ``mmdet::`` prefix (``rtmdet_tiny_8xb32-300e_coco``)."""
    if Path(name).is_file():
        return Path(name)
    import mmdet

    configs = Path(mmdet.__file__).parent / ".mim" / "configs"
    rel = name.removeprefix("mmdet::")
    rel = rel if rel.endswith(".py") else f"{rel}.py"
    if (configs / rel).is_file():
        return configs / rel
    found = sorted(configs.rglob(Path(rel).name))
    if not found:
        raise FileNotFoundError(f"MMDET_CONFIG={name!r} is neither a file nor a config shipped in mmdet")
    return found[0]


def resolve_checkpoint(checkpoint: str, model_dir: Path) -> str | None:
    """A local checkpoint path; an http(s) URL is downloaded once into ``model_dir/checkpoints``."""
    if not checkpoint:
        return None
    if urlsplit(checkpoint).scheme not in ("http", "https"):
        return checkpoint
    target = model_dir / "checkpoints" / Path(urlsplit(checkpoint).path).name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        logger.info("downloading %s into %s", checkpoint, target)
        torch.hub.download_url_to_file(checkpoint, str(target), progress=False)  # via a temp file
    return str(target)


@dataclass
class Detector:
    """The loaded detector: one per process, shared by every project."""

    model: Any
    pipeline: Any
    classes: tuple[str, ...]
    score_threshold: float
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def has_masks(self) -> bool:
        """Whether the model predicts instance masks (Mask R-CNN-like, RTMDet-Ins, SOLO, ...)."""
        model = self.model
        return bool(
            getattr(model, "with_mask", False)
            or getattr(model, "mask_head", None) is not None
            or "Ins" in type(getattr(model, "bbox_head", None)).__name__
        )

    def detect(self, images: list[np.ndarray]) -> list[Any]:
        """``inference_detector`` over BGR arrays; one ``DetDataSample`` per image, in order."""
        from mmdet.apis import inference_detector

        with self.lock:  # one batch at a time: the device (and CPU threads) are shared
            return inference_detector(self.model, images, test_pipeline=self.pipeline)


def build_detector(config: str, checkpoint: str | None, device: str, score_threshold: float) -> Detector:
    from mmcv.transforms import Compose
    from mmdet.apis import init_detector
    from mmdet.utils import get_test_pipeline_cfg

    model = init_detector(str(resolve_config(config)), checkpoint, device=device)
    if checkpoint is None:
        logger.warning("MMDET_CHECKPOINT is not set: %s runs with random weights", config)
    # built once here instead of on every inference_detector call; images arrive as arrays
    steps = copy.deepcopy(get_test_pipeline_cfg(model.cfg))
    steps[0].type = "mmdet.LoadImageFromNDArray"
    classes = tuple(str(c) for c in model.dataset_meta["classes"])
    return Detector(model, Compose(steps), classes, score_threshold)


class MMDetection(LabelStudioMLBase):
    service_name = "mmdetection"

    @classmethod
    def load(cls) -> Detector:
        config = _env("MMDET_CONFIG")
        checkpoint = _env("MMDET_CHECKPOINT", "" if config else DEFAULT_CHECKPOINT)
        device = _env("MMDET_DEVICE", "cuda:0" if torch.cuda.is_available() else "cpu")
        detector = build_detector(
            config or DEFAULT_CONFIG,
            resolve_checkpoint(checkpoint, Path(_env("MODEL_DIR", "."))),
            device,
            float(_env("SCORE_THRESHOLD", "0.5")),
        )
        logger.info(
            "mmdetection: %s on %s, %d classes, masks: %s",
            config or DEFAULT_CONFIG,
            device,
            len(detector.classes),
            detector.has_masks,
        )
        return detector

    def setup(self) -> None:
        find = self.config.find
        pairs = [find(kind, "Image", required=False) for kind in ("RectangleLabels", "PolygonLabels", "BrushLabels")]
        first = next((p for p in pairs if p is not None), None)
        if first is None:
            raise LabelConfigError("label config has no RectangleLabels, PolygonLabels or BrushLabels on an Image")
        # every control must annotate the same image: one image per task goes through the model
        self.rectangles, self.polygons, self.brushes = (
            p if p is not None and p.to_name == first.to_name else None for p in pairs
        )
        self.image_key = first.data_key
        detector: Detector | None = self.resources
        if self.rectangles is None and detector is not None and not detector.has_masks:
            logger.warning(
                "the label config asks for masks only, but the model has no mask head: predictions will be empty"
            )

    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        detector: Detector = self.resources
        images = [open_image(self._image_path(task)) for task in tasks]
        # mmdet's pipelines expect BGR arrays (what cv2.imread gives)
        results = detector.detect([np.ascontiguousarray(np.asarray(image)[:, :, ::-1]) for image in images])
        return [self._prediction(result, *image.size) for result, image in zip(results, images)]

    def _image_path(self, task: dict[str, Any]) -> str:
        url = (task.get("data") or {}).get(self.image_key)
        if not isinstance(url, str) or not url:
            raise MediaError(f"task {task.get('id')} has no image in data[{self.image_key!r}]")
        return self.get_local_path(url, task_id=task.get("id"))

    def _prediction(self, result: Any, width: int, height: int) -> dict[str, Any]:
        detector: Detector = self.resources
        instances = result.pred_instances
        scores = instances.scores.detach().cpu().numpy()
        keep = np.flatnonzero(scores >= detector.score_threshold)
        labels = instances.labels.detach().cpu().numpy()[keep]
        boxes = instances.bboxes.detach().cpu().numpy()[keep]
        want_masks = (self.polygons or self.brushes) is not None and "masks" in instances
        masks = (
            instances.masks[torch.as_tensor(keep, dtype=torch.long)].detach().cpu().numpy()
            if (want_masks and len(keep))
            else [None] * len(keep)
        )
        items: list[dict[str, Any]] = []
        kept_scores: list[float] = []
        for score, label, box, mask in zip(scores[keep].tolist(), labels.tolist(), boxes, masks):
            name = detector.classes[label]
            before = len(items)
            items += self._regions(name, score, box, mask, width, height)
            if len(items) > before:
                kept_scores.append(score)
        return {"result": items, "score": float(np.mean(kept_scores)) if kept_scores else None}

    def _regions(
        self, name: str, score: float, box: np.ndarray, mask: np.ndarray | None, width: int, height: int
    ) -> list[dict[str, Any]]:
        out = []
        label = _mapped(self.rectangles, name)
        if label is not None:
            x1, y1, x2, y2 = (float(v) for v in box)
            geometry = to_percent(x1, y1, x2 - x1, y2 - y1, width, height)
            if geometry["width"] > 0 and geometry["height"] > 0:
                out.append(regions.rectangle(self.rectangles, geometry, width, height, label, score))
        if mask is None or not mask.any():
            return out
        label = _mapped(self.polygons, name)
        if label is not None:
            points = mask_polygon(mask)
            if points is not None:
                out.append(
                    regions.polygon(
                        self.polygons, polygon_to_percent(points, width, height), width, height, label, score
                    )
                )
        label = _mapped(self.brushes, name)
        if label is not None:
            out.append(regions.brush(self.brushes, mask_to_rle(mask), width, height, label, score))
        return out


def _mapped(pair: ControlPair | None, name: str) -> str | None:
    return pair.map_label(name) if pair is not None else None


def mask_polygon(mask: np.ndarray) -> list[list[float]] | None:
    """The outline of a mask's largest connected part, in pixels, simplified; None below 3 points."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    outline = cv2.approxPolyDP(max(contours, key=cv2.contourArea), POLYGON_TOLERANCE_PX, True).reshape(-1, 2)
    return outline.astype(float).tolist() if len(outline) >= 3 else None
