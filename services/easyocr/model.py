"""OCR pre-annotation with EasyOCR (CRAFT text detection + CRNN recognition): text regions as
polygons or rectangles, each with its transcription and confidence."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.errors import MediaError
from label_studio_ml.media.images import open_image
from label_studio_ml.results.ocr import OcrLayout

logger = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}
# polygons first: EasyOCR finds quadrilaterals; rectangles when the config only has those
SHAPES = ("PolygonLabels", "Polygon", "RectangleLabels", "Rectangle")


@dataclass(frozen=True)
class EasyOcrSettings:
    langs: tuple[str, ...] = ("en",)
    model_dir: str = ""
    download: bool = True
    gpu: str = "auto"
    score_threshold: float = 0.3
    batch_size: int = 16
    label: str = "Text"
    canvas_size: int = 2560
    threads: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EasyOcrSettings:
        env = os.environ if env is None else env
        langs = tuple(code.strip() for code in env.get("EASYOCR_LANGS", "en").split(",") if code.strip())
        return cls(
            langs=langs or cls.langs,
            model_dir=env.get("EASYOCR_MODEL_DIR", ""),
            download=env.get("EASYOCR_DOWNLOAD", "true").strip().lower() in _TRUE,
            gpu=env.get("EASYOCR_GPU", cls.gpu).strip().lower() or cls.gpu,
            score_threshold=float(env.get("EASYOCR_SCORE_THRESHOLD", cls.score_threshold)),
            batch_size=max(1, int(env.get("EASYOCR_BATCH_SIZE", cls.batch_size))),
            label=env.get("EASYOCR_LABEL", cls.label),
            canvas_size=int(env.get("EASYOCR_CANVAS_SIZE", cls.canvas_size)),
            threads=int(env.get("EASYOCR_THREADS") or 0),
        )

    def device(self) -> bool | str:
        """EasyOCR's ``gpu`` argument: auto picks CUDA (or MPS) when torch sees one."""
        if self.gpu == "auto":
            return True
        if self.gpu in _TRUE | {"false", "0", "no", "off"}:
            return self.gpu in _TRUE
        return self.gpu  # a device name such as "cuda:1"


@dataclass
class Resources:
    settings: EasyOcrSettings
    reader: Any
    lock: threading.Lock


@dataclass
class Text:
    quad: list[tuple[float, float]]  # pixel corners, clockwise from the top-left
    text: str
    score: float


class EasyOCR(LabelStudioMLBase):
    service_name = "easyocr"

    @classmethod
    def load(cls) -> Resources:
        import easyocr
        import torch

        settings = EasyOcrSettings.from_env()
        if settings.threads > 0:
            # torch sizes its CPU pool from the host's cores, not a container's CPU quota
            torch.set_num_threads(settings.threads)
        started = time.monotonic()
        reader = easyocr.Reader(
            list(settings.langs),
            gpu=settings.device(),
            model_storage_directory=settings.model_dir or None,
            download_enabled=settings.download,
            verbose=False,
        )
        logger.info(
            "EasyOCR %s for %s on %s (%d CPU threads), weights from %s (%.1f s)",
            easyocr.__version__,
            ",".join(settings.langs),
            reader.device,
            torch.get_num_threads(),
            reader.model_storage_directory,
            time.monotonic() - started,
        )
        return Resources(settings, reader, threading.Lock())

    def setup(self) -> None:
        self.layout = OcrLayout.from_config(self.config, shapes=SHAPES, label_hint=self.options.label)

    @property
    def options(self) -> EasyOcrSettings:
        return self.resources.settings

    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        images: dict[int, np.ndarray] = {}
        for i, task in enumerate(tasks):
            try:
                images[i] = np.asarray(open_image(self._local_image(task)))
            except MediaError as exc:
                logger.error("task %s: no OCR, the image cannot be used: %s", task.get("id"), exc.reason)
        found = self._read(images)
        out = []
        for i in range(len(tasks)):
            if i not in images:
                out.append({"result": [], "score": None})
                continue
            height, width = images[i].shape[:2]
            texts = [t for t in found[i] if t.score >= self.options.score_threshold and t.text.strip()]
            result: list[dict[str, Any]] = []
            for text in texts:
                result += self.layout.quad(text.quad, width, height, text.text, text.score)
            out.append({"result": result, "score": _mean([t.score for t in texts])})
        return out

    def _local_image(self, task: dict[str, Any]) -> str:
        url = (task.get("data") or {}).get(self.layout.data_key)
        if not isinstance(url, str) or not url:
            raise MediaError(f"task data has no image under {self.layout.data_key!r}")
        return self.get_local_path(url, task_id=task.get("id"))

    def _read(self, images: dict[int, np.ndarray]) -> dict[int, list[Text]]:
        """EasyOCR on every image. On a GPU, images of one size go through the detector as one batch;
        on a CPU one at a time (batches of 16 pages measured ~30% more CPU time there)."""
        import cv2

        groups: dict[tuple[int, ...], list[int]] = {}
        for i, image in images.items():
            groups.setdefault(image.shape, []).append(i)
        reader, options = self.resources.reader, self.options
        found: dict[int, list[Text]] = {}
        per_batch = options.batch_size if str(reader.device) != "cpu" else 1
        for indexes in groups.values():
            for start in range(0, len(indexes), per_batch):
                chunk = indexes[start : start + per_batch]
                batch = np.stack([images[i] for i in chunk]) if len(chunk) > 1 else images[chunk[0]]
                with self.resources.lock:  # one inference at a time: torch already uses every core
                    horizontal, free = reader.detect(batch, reformat=False, canvas_size=options.canvas_size)
                    for i, boxes, quads in zip(chunk, horizontal, free, strict=True):
                        if not boxes and not quads:
                            found[i] = []  # nothing detected: nothing to recognise
                            continue
                        grey = cv2.cvtColor(images[i], cv2.COLOR_RGB2GRAY)
                        lines = reader.recognize(
                            grey, boxes, quads, batch_size=options.batch_size, reformat=False, detail=1
                        )
                        found[i] = [
                            Text([(float(x), float(y)) for x, y in quad], str(text), float(score))
                            for quad, text, score in lines
                        ]
        return found


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
