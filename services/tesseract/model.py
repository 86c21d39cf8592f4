"""OCR with Tesseract: the text inside a box the annotator draws (interactive), and full-page word
or line boxes with transcriptions (pre-annotation)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytesseract
from PIL import Image

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.errors import MediaError
from label_studio_ml.media.images import MAX_PIXELS, context_regions, open_image
from label_studio_ml.results import regions
from label_studio_ml.results.ocr import RECTANGLES, OcrLayout, crop_rectangle

logger = logging.getLogger(__name__)

#: formats Tesseract (Leptonica) reads itself: such files go to it as they are, without re-encoding
DIRECT_FORMATS = {"PNG", "JPEG", "TIFF", "BMP", "PPM"}
LEVELS = {"word": 5, "line": 4}
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class TesseractSettings:
    lang: str = "eng"
    psm: int = 3
    crop_psm: int = 6
    level: str = "word"
    min_confidence: float = 0.0
    label: str = "Text"
    workers: int = 2
    timeout: float = 60.0
    crop_padding: int = 10

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TesseractSettings:
        env = os.environ if env is None else env
        level = env.get("TESSERACT_LEVEL", cls.level).strip().lower()
        if level not in LEVELS:
            raise ValueError(f"TESSERACT_LEVEL must be one of {sorted(LEVELS)}, not {level!r}")
        return cls(
            lang=env.get("TESSERACT_LANG", cls.lang).strip() or cls.lang,
            psm=int(env.get("TESSERACT_PSM", cls.psm)),
            crop_psm=int(env.get("TESSERACT_CROP_PSM", cls.crop_psm)),
            level=level,
            min_confidence=float(env.get("TESSERACT_MIN_CONFIDENCE", cls.min_confidence)),
            label=env.get("TESSERACT_LABEL", cls.label),
            workers=max(1, int(env.get("TESSERACT_WORKERS") or min(4, os.cpu_count() or 1))),
            timeout=float(env.get("TESSERACT_TIMEOUT", cls.timeout)),
            crop_padding=int(env.get("TESSERACT_CROP_PADDING", cls.crop_padding)),
        )


@dataclass
class Resources:
    settings: TesseractSettings
    version: str
    pool: ThreadPoolExecutor


@dataclass
class Line:
    """Recognised text with its pixel box (left, top, right, bottom) and confidence 0-1."""

    text: str
    box: tuple[int, int, int, int]
    score: float


class Tesseract(LabelStudioMLBase):
    service_name = "tesseract"

    @classmethod
    def load(cls) -> Resources:
        settings = TesseractSettings.from_env()
        # parallel pages, each Tesseract single-threaded: its OpenMP threads only spin on small CPUs
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        version = str(pytesseract.get_tesseract_version())
        installed = set(pytesseract.get_languages(config=""))
        missing = [lang for lang in settings.lang.split("+") if lang not in installed]
        if missing:
            raise RuntimeError(
                f"Tesseract lacks the language data for {missing} (TESSERACT_LANG="
                f"{settings.lang}); installed: {sorted(installed)}"
            )
        logger.info(
            "Tesseract %s, languages %s, level %s, psm %d, %d workers",
            version,
            settings.lang,
            settings.level,
            settings.psm,
            settings.workers,
        )
        return Resources(settings, version, ThreadPoolExecutor(settings.workers, thread_name_prefix="tesseract"))

    def setup(self) -> None:
        self.layout = OcrLayout.from_config(self.config, label_hint=self.resources.settings.label)

    @property
    def options(self) -> TesseractSettings:
        return self.resources.settings

    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        if isinstance(context, dict):
            return [self._interactive(task, context) for task in tasks]
        return list(self.resources.pool.map(self._page, tasks))

    # --- pre-annotation ------------------------------------------------------------------------
    def _page(self, task: dict[str, Any]) -> dict[str, Any]:
        try:
            source, width, height = self._image_source(task)
            found = self._ocr(source, self.options.psm, self.options.level)
        except MediaError as exc:
            logger.error("task %s: no OCR, the image cannot be used: %s", task.get("id"), exc.reason)
            return {"result": [], "score": None}
        result: list[dict[str, Any]] = []
        for line in found:
            left, top, right, bottom = line.box
            result += self.layout.box(left, top, right, bottom, width, height, line.text, line.score)
        return {"result": result, "score": _mean([line.score for line in found])}

    def _image_source(self, task: dict[str, Any]) -> tuple[Any, int, int]:
        """What to hand Tesseract for a task's image, and the image's displayed size. Files Tesseract
        reads as LS shows them (no EXIF rotation) go as a path; others as EXIF-transposed pixels."""
        path = self._local_image(task)
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        try:
            with Image.open(path) as raw:
                orientation = raw.getexif().get(EXIF_ORIENTATION, 1)
                if orientation == 1 and raw.format in DIRECT_FORMATS and raw.mode in ("RGB", "L", "1"):
                    return path, raw.width, raw.height
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            pass  # open_image gives the reason
        image = open_image(path)
        return image, image.width, image.height

    def _local_image(self, task: dict[str, Any]) -> str:
        url = (task.get("data") or {}).get(self.layout.data_key)
        if not isinstance(url, str) or not url:
            raise MediaError(f"task data has no image under {self.layout.data_key!r}")
        return self.get_local_path(url, task_id=task.get("id"))

    # --- interactive ---------------------------------------------------------------------------
    def _interactive(self, task: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        items = context_regions(context)
        # boxes that hold their transcription already (LS pairs a box and its text by region id) stay
        # as they are: like upstream's example, only the boxes still without text are read
        transcribed = {str(r.get("id")) for r in items if str(r.get("type")).lower() == "textarea" and _text(r)}
        drawn = [
            r
            for r in items
            if str(r.get("type", "")).lower() in RECTANGLES
            and self._rectangle_control(r.get("from_name"))
            and {"x", "y", "width", "height"} <= r["value"].keys()
            and str(r.get("id")) not in transcribed
            and not _text(r)
        ]
        if not drawn:
            return {"result": [], "score": None}
        try:
            image = open_image(self._local_image(task))
        except MediaError as exc:
            logger.error("task %s: no OCR, the image cannot be used: %s", task.get("id"), exc.reason)
            return {"result": [], "score": None}
        result: list[dict[str, Any]] = []
        scores: list[float] = []
        for region in drawn:
            crop = _pad(crop_rectangle(image, region["value"]), self.options.crop_padding)
            found = self._ocr(crop, self.options.crop_psm, "line")
            if not found:
                continue  # nothing legible: the user's box stays as drawn
            text = "\n".join(line.text for line in found)
            score = _mean([line.score for line in found])
            # the user's region id, so that LS pairs the text with the box just drawn
            shape = {
                "id": str(region.get("id") or regions.region_id()),
                "from_name": region["from_name"],
                "to_name": self.layout.shape.to_name,
                "type": self._rectangle_control(region["from_name"]),
                "original_width": image.width,
                "original_height": image.height,
                "image_rotation": region.get("image_rotation", 0),
                "origin": "manual",
                "value": dict(region["value"]),
            }
            result += self.layout.region(shape, text, score)
            if score is not None:
                scores.append(score)
        return {"result": result, "score": _mean(scores)}

    def _rectangle_control(self, name: Any) -> str | None:
        """The result type of a rectangle control on the layout's image named ``name``, else None."""
        control = self.config.controls.get(name) if isinstance(name, str) else None
        if control is None or control["type"].lower() not in RECTANGLES:
            return None
        return control["type"].lower() if self.layout.shape.to_name in control["to_name"] else None

    # --- Tesseract -----------------------------------------------------------------------------
    def _ocr(self, image: Any, psm: int, level: str) -> list[Line]:
        """Words or lines (``level``) Tesseract finds in an image or image file."""
        try:
            data = pytesseract.image_to_data(
                image,
                lang=self.options.lang,
                config=f"--psm {psm}",
                output_type=pytesseract.Output.DICT,
                timeout=self.options.timeout,
            )
        except (pytesseract.TesseractError, RuntimeError) as exc:
            raise MediaError(f"Tesseract failed: {exc}") from None
        return _group(data, LEVELS[level], self.options.min_confidence)


def _text(item: dict[str, Any]) -> bool:
    """Whether a context item carries a non-empty transcription."""
    text = item["value"].get("text")
    return any(str(t).strip() for t in (text if isinstance(text, list) else [text]) if t is not None)


def _group(data: dict[str, list[Any]], level: int, min_confidence: float) -> list[Line]:
    """Tesseract's TSV rows as words (level 5) or lines (level 4, words joined by spaces)."""
    lines: dict[tuple[int, ...], Line] = {}
    words: dict[tuple[int, ...], list[tuple[str, float]]] = {}
    for i, row_level in enumerate(data["level"]):
        key = (data["page_num"][i], data["block_num"][i], data["par_num"][i], data["line_num"][i])
        box = (
            int(data["left"][i]),
            int(data["top"][i]),
            int(data["left"][i]) + int(data["width"][i]),
            int(data["top"][i]) + int(data["height"][i]),
        )
        if int(row_level) == 4 and level == 4:
            lines[key] = Line("", box, 0.0)
        elif int(row_level) == 5:
            text, conf = str(data["text"][i]).strip(), float(data["conf"][i])
            if not text or conf < 0 or conf < min_confidence:
                continue
            if level == 5:
                lines[key + (data["word_num"][i],)] = Line(text, box, conf / 100.0)
            else:
                words.setdefault(key, []).append((text, conf / 100.0))
    if level == 4:
        for key, line in lines.items():
            found = words.get(key)
            if found:
                line.text = " ".join(t for t, _ in found)
                line.score = sum(c for _, c in found) / len(found)
    return [line for line in lines.values() if line.text]


def _pad(image: Any, padding: int) -> Any:
    """A white (or border-coloured) margin around a crop: Tesseract misreads text touching the edge."""
    if padding <= 0:
        return image
    from PIL import ImageOps

    return ImageOps.expand(image, border=padding, fill=_border_colour(image))


def _border_colour(image: Any) -> Any:
    width, height = image.size
    pixels = [image.getpixel((x, y)) for x in range(0, width, max(1, width // 16)) for y in (0, height - 1)]
    pixels += [image.getpixel((x, y)) for y in range(0, height, max(1, height // 16)) for x in (0, width - 1)]
    return max(set(pixels), key=pixels.count)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
