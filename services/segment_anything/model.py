"""Interactive segmentation with Segment Anything: the annotator's clicks and/or box become one brush mask.

Positive and negative keypoints (``is_positive``) and a rectangle from the interactive context are
the prompts. The image embedding (the expensive vision encoder) is cached per image, so every further
click on the same image runs only the prompt encoder and the light mask decoder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import SamModel, SamProcessor

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.devices import torch_device
from label_studio_ml.errors import MediaError
from label_studio_ml.media.images import context_regions, open_image
from label_studio_ml.results import regions
from label_studio_ml.results.brush import mask_to_rle

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "facebook/sam-vit-base"
POINT_TYPES = ("keypointlabels", "keypoint")
BOX_TYPES = ("rectanglelabels", "rectangle")


@dataclass(frozen=True)
class ImageEmbedding:
    """The vision encoder's output for one image and the sizes needed to prompt it."""

    embeddings: torch.Tensor  # (1, C, h, w), on the model's device
    original_size: tuple[int, int]  # (height, width) of the image as LS shows it (EXIF applied)
    reshaped_size: tuple[int, int]  # (height, width) after the processor's longest-edge resize


class EmbeddingCache:
    """A bounded, thread-safe LRU of image embeddings keyed by image identity.

    Concurrent first clicks on the same image wait for one encoder run instead of each running it.
    """

    def __init__(self, size: int) -> None:
        self.size = max(0, size)
        self._items: OrderedDict[str, ImageEmbedding] = OrderedDict()
        self._pending: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def _lookup(self, key: str) -> ImageEmbedding | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
            self.hits += 1
        return item

    def get_or_compute(self, key: str, compute: Callable[[], ImageEmbedding]) -> ImageEmbedding:
        with self._lock:
            item = self._lookup(key)
            if item is not None:
                return item
            key_lock = self._pending.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                item = self._lookup(key)
                if item is not None:
                    return item
                self.misses += 1
            try:
                item = compute()
            finally:
                with self._lock:
                    self._pending.pop(key, None)
            with self._lock:
                if self.size:
                    self._items[key] = item
                    while len(self._items) > self.size:
                        self._items.popitem(last=False)
            return item


class Sam:
    """A loaded SAM checkpoint: encoder with an embedding cache, prompt encoder and mask decoder."""

    def __init__(self, name: str, device: str, cache_size: int) -> None:
        self.name = name
        self.device = device
        self.processor = SamProcessor.from_pretrained(name)
        self.model = SamModel.from_pretrained(name).to(device).eval()
        self.cache = EmbeddingCache(cache_size)

    def embed(self, path: str | Path) -> ImageEmbedding:
        """The image's embedding; the encoder runs only when this file's content was not seen recently."""
        return self.cache.get_or_compute(_file_identity(path), lambda: self._encode(path))

    def _encode(self, path: str | Path) -> ImageEmbedding:
        image = open_image(path)
        inputs = self.processor(images=image, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, self.model.dtype)
        with torch.inference_mode():
            embeddings = self.model.get_image_embeddings(pixel_values)
        original = tuple(int(v) for v in inputs["original_sizes"][0])
        reshaped = tuple(int(v) for v in inputs["reshaped_input_sizes"][0])
        return ImageEmbedding(embeddings, original, reshaped)  # type: ignore[arg-type]

    def segment(
        self,
        image: ImageEmbedding,
        points: list[tuple[float, float]],
        labels: list[int],
        box: tuple[float, float, float, float] | None,
    ) -> tuple[np.ndarray, float]:
        """One mask (H x W bool at the image's size) for pixel prompts, and the predicted IoU.

        A single click is ambiguous (part or whole?): SAM then proposes three masks and the one with
        the best predicted IoU wins. Several clicks or a box give one mask.
        """
        # prompts are scaled like the processor scales them: into the resized image's pixels
        sy = image.reshaped_size[0] / image.original_size[0]
        sx = image.reshaped_size[1] / image.original_size[1]
        prompts: dict[str, torch.Tensor] = {}
        if points:
            prompts["input_points"] = torch.tensor(
                [[[[x * sx, y * sy] for x, y in points]]], dtype=torch.float32, device=self.device
            )
            prompts["input_labels"] = torch.tensor([[labels]], dtype=torch.int64, device=self.device)
        if box is not None:
            x0, y0, x1, y1 = box
            prompts["input_boxes"] = torch.tensor(
                [[[x0 * sx, y0 * sy, x1 * sx, y1 * sy]]], dtype=torch.float32, device=self.device
            )
        with torch.inference_mode():
            out = self.model(
                image_embeddings=image.embeddings, multimask_output=len(points) == 1 and box is None, **prompts
            )
        scores = out.iou_scores[0, 0]
        best = int(scores.argmax())
        masks = self.processor.image_processor.post_process_masks(
            out.pred_masks[:, :, best : best + 1].float().cpu(), [image.original_size], [image.reshaped_size]
        )
        return masks[0][0, 0].numpy(), float(scores[best])


def _file_identity(path: str | Path) -> str:
    """Image identity for the cache: a hash of the file's bytes (a re-uploaded or edited file is new)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Prompt:
    points: list[tuple[float, float]]  # percent of the image
    labels: list[int]  # 1 positive, 0 negative
    box: tuple[float, float, float, float] | None  # percent: left, top, right, bottom
    label: str | None  # the label the annotator picked (last context region's)
    size: tuple[int, int] | None  # (width, height) LS reported for the image


class SegmentAnything(LabelStudioMLBase):
    service_name = "segment_anything"

    @classmethod
    def load(cls) -> Sam:
        name = os.environ.get("SAM_MODEL", "") or DEFAULT_MODEL
        device = torch_device()
        sam = Sam(name, device, int(os.environ.get("SAM_CACHE_SIZE", "16")))
        logger.info("SAM %s on %s; embedding cache of %d image(s)", name, device, sam.cache.size)
        return sam

    def setup(self) -> None:
        self.pair = self.find_control("BrushLabels", "Image")

    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        prompt = self._prompt(context)
        if prompt is None:
            return [{"result": [], "score": None} for _ in tasks]
        return [self._segment(task, prompt) for task in tasks]

    def _prompt(self, context: dict[str, Any] | None) -> Prompt | None:
        items = [
            r
            for r in context_regions(context, *POINT_TYPES, *BOX_TYPES)
            if r.get("to_name") in (None, self.pair.to_name)
        ]
        points, labels, box = [], [], None
        for item in items:
            value = item["value"]
            try:
                if str(item.get("type")).lower() in POINT_TYPES:
                    points.append((float(value["x"]), float(value["y"])))
                    labels.append(0 if item.get("is_positive", value.get("is_positive")) is False else 1)
                else:  # SAM takes one box: the last one drawn
                    x, y = float(value["x"]), float(value["y"])
                    box = (x, y, x + float(value["width"]), y + float(value["height"]))
            except (KeyError, TypeError, ValueError):
                logger.warning("ignoring a context region without usable geometry: %s", item.get("type"))
        if not points and box is None:
            return None
        label = None
        for item in items:
            chosen = item["value"].get(str(item.get("type")).lower())
            if isinstance(chosen, list) and chosen:
                label = str(chosen[0])
        size = None
        for item in items:
            width, height = item.get("original_width"), item.get("original_height")
            if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
                size = (width, height)
        return Prompt(points, labels, box, label, size)

    def _segment(self, task: dict[str, Any], prompt: Prompt) -> dict[str, Any]:
        label = None
        if prompt.label is not None:
            label = self.pair.map_label(prompt.label)
            if label is None:
                logger.warning("label %r is not a %s label; no mask", prompt.label, self.pair.from_name)
                return {"result": [], "score": None}
        sam: Sam = self.resources
        url = (task.get("data") or {}).get(self.pair.data_key)
        if not isinstance(url, str) or not url:
            raise MediaError(f"task {task.get('id')} has no image under data.{self.pair.data_key}")
        path = self.get_local_path(url, task_id=task.get("id"))
        image = sam.embed(path)
        height, width = image.original_size
        points = [(x * width / 100.0, y * height / 100.0) for x, y in prompt.points]
        box = None
        if prompt.box is not None:
            left, top, right, bottom = prompt.box
            box = (left * width / 100.0, top * height / 100.0, right * width / 100.0, bottom * height / 100.0)
        mask, iou = sam.segment(image, points, prompt.labels, box)
        if prompt.size is not None and prompt.size != (width, height):
            # LS decodes the RLE at the size it displays; percent prompts already match either size
            logger.warning(
                "task %s: Label Studio shows the image as %dx%d, the file is %dx%d after EXIF "
                "orientation; the mask is resized to Label Studio's size",
                task.get("id"),
                *prompt.size,
                width,
                height,
            )
            mask = np.asarray(Image.fromarray(mask).resize(prompt.size, Image.Resampling.NEAREST))
            width, height = prompt.size
        if not mask.any():
            return {"result": [], "score": None}
        score = min(1.0, max(0.0, iou))
        region = regions.brush(self.pair, mask_to_rle(mask), width, height, label=label, score=score)
        return {"result": [region], "score": score}
