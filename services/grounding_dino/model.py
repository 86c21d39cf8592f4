"""Zero-shot object detection with Grounding DINO: a text prompt ("cat . dog") becomes labelled boxes.

The prompt comes from a ``TextArea`` in the interactive context, else from the prompt stored for the
project (``fit`` keeps the last prompt and thresholds found in annotations), else from the config's
labels. Each detected phrase maps onto a ``RectangleLabels`` value; boxes whose phrase maps to no
label are dropped.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from typing import Any

import torch
from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.devices import torch_device
from label_studio_ml.errors import MediaError
from label_studio_ml.media.images import context_regions, open_image
from label_studio_ml.results import regions
from label_studio_ml.results.geometry import to_percent
from label_studio_ml.results.label_config import ControlPair

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "IDEA-Research/grounding-dino-tiny"
PROMPT_FILE = "prompt.json"
ANNOTATION_EVENTS = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"}


@dataclass(frozen=True)
class Query:
    """What the model is asked: the prompt's phrases and the two thresholds."""

    phrases: tuple[str, ...]
    box_threshold: float
    text_threshold: float

    @property
    def text(self) -> str:
        # Grounding DINO's convention: lower-case phrases, each ended by a dot
        return " ".join(f"{phrase.lower()} ." for phrase in self.phrases)


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # left, top, right, bottom in pixels of the image
    score: float
    phrase: str


def split_prompt(text: str) -> tuple[str, ...]:
    """``"Cat . black dog."`` -> ``("Cat", "black dog")``: phrases are separated by dots."""
    return tuple(p.strip() for p in text.split(".") if p.strip())


class GroundingDino:
    """A loaded Grounding DINO checkpoint (processor and model), batching images through it."""

    def __init__(self, name: str, device: str, batch_size: int) -> None:
        self.name = name
        self.device = device
        self.batch_size = max(1, batch_size)
        self.processor = AutoProcessor.from_pretrained(name)
        self.model = AutoModelForZeroShotObjectDetection.from_pretrained(name).to(device).eval()
        self.tokenizer = self.processor.tokenizer
        self.special_tokens = set(self.tokenizer.all_special_tokens)

    def detect(self, images: list[Any], query: Query) -> list[list[Detection]]:
        """Detections per image (pixel boxes of each image's own size), images batched through the model."""
        found: list[list[Detection]] = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size]
            inputs = self.processor(images=batch, text=[query.text] * len(batch), padding=True, return_tensors="pt").to(
                self.device
            )
            with torch.inference_mode():
                outputs = self.model(**inputs)
            results = self.processor.post_process_grounded_object_detection(
                outputs,
                inputs["input_ids"],
                threshold=query.box_threshold,
                text_threshold=query.text_threshold,
                target_sizes=[(image.height, image.width) for image in batch],
            )
            for result in results:
                found.append(
                    [
                        Detection(tuple(float(v) for v in box), float(score), phrase)  # type: ignore[arg-type]
                        for box, score, phrase in zip(
                            result["boxes"].cpu(), result["scores"].cpu(), result["text_labels"], strict=True
                        )
                    ]
                )
        return found

    def normalize(self, phrase: str) -> str:
        """A phrase as the tokenizer gives it back after decoding (lower case, word pieces joined)."""
        ids = self.tokenizer(phrase, add_special_tokens=False)["input_ids"]
        return " ".join(self.tokenizer.decode(ids).split())

    def detected_phrases(self, text: str) -> list[str]:
        """The distinct prompt phrases in a post-processed label (special tokens and dots removed)."""
        words = [w for w in text.split() if w not in self.special_tokens]
        parts = [" ".join(p.split()) for p in " ".join(words).split(".")]
        return list(dict.fromkeys(p for p in parts if p))


class GroundingDinoModel(LabelStudioMLBase):
    service_name = "grounding_dino"

    @classmethod
    def load(cls) -> GroundingDino:
        name = os.environ.get("GROUNDING_DINO_MODEL", "") or DEFAULT_MODEL
        device = torch_device()
        batch_size = int(os.environ.get("GROUNDING_DINO_BATCH_SIZE", "4"))
        logger.info("Grounding DINO %s on %s, batches of %d image(s)", name, device, batch_size)
        return GroundingDino(name, device, batch_size)

    def setup(self) -> None:
        self.pair = self.find_control("RectangleLabels", "Image")
        prompts = [p for p in self.config.find_all("TextArea") if p.to_name == self.pair.to_name]
        named = [p for p in prompts if p.from_name.lower().startswith("prompt")]
        self.prompt_pair: ControlPair | None = (named or prompts or [None])[0]
        self.number_pairs = [p for p in self.config.find_all("Number") if p.to_name == self.pair.to_name]
        self.stored: dict[str, Any] = {}
        if self.version_dir is not None and (self.version_dir / PROMPT_FILE).exists():
            self.stored = json.loads((self.version_dir / PROMPT_FILE).read_text())

    # --- prompt and thresholds -----------------------------------------------------------------
    def _default_query(self) -> Query:
        prompt = self.stored.get("prompt") or self._labels_prompt()
        return Query(
            split_prompt(prompt),
            float(self.stored.get("box_threshold", os.environ.get("BOX_THRESHOLD", "0.35"))),
            float(self.stored.get("text_threshold", os.environ.get("TEXT_THRESHOLD", "0.25"))),
        )

    def _labels_prompt(self) -> str:
        """Without any prompt: the config's labels (their predicted_values where given) as phrases."""
        phrases = []
        for label in self.pair.labels:
            predicted = self.pair.labels_attrs.get(label, {}).get("predicted_values", "")
            phrases += [v.strip() for v in predicted.split(",") if v.strip()] or [label]
        return " . ".join(phrases)

    def _read_items(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Prompt and thresholds found in result items (an interactive context or an annotation)."""
        found: dict[str, Any] = {}
        for item in items:
            kind, value = str(item.get("type", "")).lower(), item.get("value")
            if not isinstance(value, dict):
                continue
            if kind == "textarea" and self.prompt_pair and item.get("from_name") in (None, self.prompt_pair.from_name):
                texts = value.get("text")
                texts = [texts] if isinstance(texts, str) else texts
                if isinstance(texts, list) and any(isinstance(t, str) and t.strip() for t in texts):
                    found["prompt"] = " . ".join(t for t in texts if isinstance(t, str) and t.strip())
            elif kind == "number" and isinstance(value.get("number"), (int, float)):
                key = self._threshold_key(str(item.get("from_name", "")))
                if key:
                    number = float(value["number"])
                    found[key] = number / 100.0 if number > 1 else number  # a slider in percent
        return found

    def _threshold_key(self, from_name: str) -> str | None:
        lowered = from_name.lower()
        if "text" in lowered:
            return "text_threshold"
        if "box" in lowered:
            return "box_threshold"
        names = [p.from_name for p in self.number_pairs]
        return "box_threshold" if names == [from_name] else None

    def query(self, context: dict[str, Any] | None) -> Query:
        base = self._default_query()
        found = self._read_items(context_regions(context, "textarea", "number"))
        return replace(
            base,
            phrases=split_prompt(found["prompt"]) if "prompt" in found else base.phrases,
            box_threshold=found.get("box_threshold", base.box_threshold),
            text_threshold=found.get("text_threshold", base.text_threshold),
        )

    # --- prediction ----------------------------------------------------------------------------
    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        query = self.query(context)
        out: list[dict[str, Any]] = [{"result": [], "score": None} for _ in tasks]
        if not query.phrases:
            return out
        images, indexes = [], []
        for index, task in enumerate(tasks):
            try:
                path = self.get_local_path(task["data"][self.pair.data_key], task_id=task.get("id"))
                images.append(open_image(path))
                indexes.append(index)
            except (MediaError, KeyError) as exc:
                logger.error("task %s: no image (%s); empty result", task.get("id"), exc)
        dino: GroundingDino = self.resources
        labels = self._phrase_labels(dino, query)
        for index, image, detections in zip(indexes, images, dino.detect(images, query), strict=True):
            out[index] = self._regions(dino, labels, image.width, image.height, detections)
        return out

    def _phrase_labels(self, dino: GroundingDino, query: Query) -> dict[str, str]:
        """Prompt phrase (as the tokenizer decodes it) -> config label."""
        labels: dict[str, str] = {}
        for phrase in query.phrases:
            label = self.pair.map_label(phrase) or self.pair.map_label(dino.normalize(phrase))
            if label is not None:
                labels.setdefault(dino.normalize(phrase), label)
            else:
                logger.info("prompt phrase %r maps to no %s label; its boxes are dropped", phrase, self.pair.from_name)
        return labels

    def _label(self, dino: GroundingDino, labels: dict[str, str], text: str) -> str | None:
        parts = dino.detected_phrases(text)
        if len(parts) != 1:  # nothing, or tokens of several phrases above the text threshold
            return None
        part = parts[0]
        if part in labels:
            return labels[part]
        direct = self.pair.map_label(part)
        if direct is not None:
            return direct
        # only some words of a phrase passed the text threshold ("black" of "black dog")
        containing = {label for phrase, label in labels.items() if f" {part} " in f" {phrase} "}
        return containing.pop() if len(containing) == 1 else None

    def _regions(
        self, dino: GroundingDino, labels: dict[str, str], width: int, height: int, detections: list[Detection]
    ) -> dict[str, Any]:
        result, scores = [], []
        for detection in detections:
            label = self._label(dino, labels, detection.phrase)
            if label is None:
                continue
            left, top, right, bottom = detection.box
            box = to_percent(left, top, right - left, bottom - top, width, height)
            if box["width"] <= 0 or box["height"] <= 0:
                continue
            result.append(regions.rectangle(self.pair, box, width, height, label=label, score=detection.score))
            scores.append(detection.score)
        return {"result": result, "score": sum(scores) / len(scores) if scores else None}

    # --- "training": remember the prompt -------------------------------------------------------
    def fit(self, event: str, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Store the last prompt and thresholds found in annotations; batch predictions then reuse them."""
        found: dict[str, Any] = {}
        if event == "START_TRAINING" and self.settings.label_studio_url:
            annotations = [a for task in self.fetch_labeled_tasks() for a in task["annotations"]]
            for annotation in sorted(annotations, key=lambda a: a.get("updated_at") or ""):
                found.update(self._read_items(annotation.get("result") or []))
        for name, payload in kwargs.get("events") or [(event, data)]:
            if name not in ANNOTATION_EVENTS:
                continue
            annotations = payload.get("annotation")
            for annotation in annotations if isinstance(annotations, list) else [annotations]:
                if isinstance(annotation, dict) and not annotation.get("was_cancelled"):
                    found.update(self._read_items(annotation.get("result") or []))
        if not found:
            logger.info("project %s: no prompt or threshold in the annotations; nothing stored", self.project_id)
            return {"stored": False}
        stored = {**self.stored, **found}
        (self.output_dir / PROMPT_FILE).write_text(json.dumps(stored, sort_keys=True))
        logger.info("project %s: stored prompt %r for batch predictions", self.project_id, stored.get("prompt"))
        return {"stored": True, **stored}
