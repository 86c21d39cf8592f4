"""spaCy NER (Labels on Text) and, when the pipeline has a text categoriser, Choices; trains its NER
component from LS annotations."""

from __future__ import annotations

import logging
import os
import random
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import spacy
from spacy.language import Language
from spacy.training import Example
from spacy.util import fix_random_seed, minibatch

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.errors import LabelConfigError
from label_studio_ml.results import regions
from label_studio_ml.results.label_config import ControlPair
from label_studio_ml.training import examples as training_examples

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "en_core_web_sm"
TEXT_OBJECTS = ["Text", "HyperText"]
TEXTCAT_FACTORIES = {"textcat", "textcat_multilabel"}
CACHED_VERSIONS = 4


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def load_pipeline(name: str) -> Language:
    """A package name or path (``spacy.load``), or ``blank:<lang>`` for an empty pipeline to train."""
    if name.startswith("blank:"):
        return spacy.blank(name.split(":", 1)[1])
    return spacy.load(name)


@dataclass
class Base:
    """The pipeline named by ``SPACY_MODEL``, loaded once per process."""

    name: str
    nlp: Language


_versions: OrderedDict[str, Language] = OrderedDict()
_versions_lock = threading.Lock()


def trained_pipeline(path: Path) -> Language:
    """A trained version's pipeline, loaded once and shared by every instance that serves it."""
    key = str(path.resolve())
    with _versions_lock:
        if key not in _versions:
            _versions[key] = spacy.load(path)
            while len(_versions) > CACHED_VERSIONS:
                _versions.popitem(last=False)
        _versions.move_to_end(key)
        return _versions[key]


def components_to_run(nlp: Language, outputs: set[str], keep: Iterable[str] = ()) -> list[str]:
    """The components that produce ``outputs`` (e.g. ``doc.ents``) and the embedding layers they
    listen to; ``keep`` adds more by name, ``all`` keeps every one."""
    keep = set(keep)
    if "all" in keep:
        return list(nlp.pipe_names)
    needed = {name for name in nlp.pipe_names if outputs & set(nlp.get_pipe_meta(name).assigns) or name in keep}
    for name, component in nlp.pipeline:
        if set(getattr(component, "listening_components", None) or ()) & needed:
            needed.add(name)
    return [name for name in nlp.pipe_names if name in needed]


class SpacyModel(LabelStudioMLBase):
    service_name = "spacy"

    @classmethod
    def load(cls) -> Base:
        name = os.environ.get("SPACY_MODEL") or DEFAULT_MODEL
        return Base(name=name, nlp=load_pipeline(name))

    def setup(self) -> None:
        self.ner_pair = self.config.find("Labels", TEXT_OBJECTS, required=False)
        self.choices_pair = self.config.find("Choices", TEXT_OBJECTS, required=False)
        if self.ner_pair is None and self.choices_pair is None:
            raise LabelConfigError("the spacy model needs a Labels or Choices control on a Text tag")
        trained = self.version_dir is not None and (self.version_dir / "config.cfg").exists()
        self.nlp: Language = trained_pipeline(self.version_dir) if trained else self.resources.nlp  # type: ignore[arg-type]
        self.textcat = next(
            (name for name in self.nlp.pipe_names if self.nlp.get_pipe_meta(name).factory in TEXTCAT_FACTORIES), None
        )
        self.batch_size = _env_int("SPACY_BATCH_SIZE", 128)
        keep = [p.strip() for p in os.environ.get("SPACY_KEEP_PIPES", "").split(",") if p.strip()]
        outputs = ({"doc.ents"} if self.ner_pair else set()) | (
            {"doc.cats"} if self.choices_pair and self.textcat else set()
        )
        running = components_to_run(self.nlp, outputs, keep)
        self.disabled = [name for name in self.nlp.pipe_names if name not in running]
        self._mapped: dict[str, str | None] = {}  # spaCy entity label -> config label (None: dropped)

    # --- prediction ----------------------------------------------------------------------------
    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        pairs = [p for p in (self.ner_pair, self.choices_pair if self.textcat else None) if p is not None]
        results: list[list[dict[str, Any]]] = [[] for _ in tasks]
        scores: list[float | None] = [None for _ in tasks]
        for key in dict.fromkeys(p.data_key for p in pairs):
            texts = [self.read_text(task, key) for task in tasks]
            docs = self.nlp.pipe(texts, batch_size=self.batch_size, disable=self.disabled)
            for i, (text, doc) in enumerate(zip(texts, docs, strict=True)):
                if self.ner_pair is not None and self.ner_pair.data_key == key:
                    results[i].extend(self._entities(self.ner_pair, text, doc))
                if self.choices_pair is not None and self.textcat and self.choices_pair.data_key == key:
                    choice, scores[i] = self._categories(self.choices_pair, doc.cats)
                    results[i].extend(choice)
        return [{"result": result, "score": score} for result, score in zip(results, scores, strict=True)]

    def _entities(self, pair: ControlPair, text: str, doc: Any) -> list[dict[str, Any]]:
        spans = []
        for ent in doc.ents:
            label = self._mapped.get(ent.label_, "")
            if label == "":
                label = self._mapped.setdefault(ent.label_, pair.map_label(ent.label_))
            if label is not None:
                spans.append(regions.span(pair, text, ent.start_char, ent.end_char, label))
        return spans

    def _categories(self, pair: ControlPair, cats: dict[str, float]) -> tuple[list[dict[str, Any]], float | None]:
        mapped = [(pair.map_label(name), score) for name, score in cats.items()]
        known = [(label, score) for label, score in mapped if label is not None]
        if not known:
            return [], None
        if self.nlp.get_pipe_meta(self.textcat or "").factory == "textcat_multilabel":
            threshold = float(os.environ.get("SPACY_TEXTCAT_THRESHOLD") or 0.5)
            chosen = [(label, score) for label, score in known if score >= threshold]
            if not chosen:
                return [], None
            score = min(score for _, score in chosen)
            return [regions.choices(pair, [label for label, _ in chosen], score)], score
        label, score = max(known, key=lambda item: item[1])
        return [regions.choices(pair, [label], score)], score

    # --- training ------------------------------------------------------------------------------
    def fit(self, event: str, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if self.ner_pair is None:
            logger.info("project %s: no Labels control, nothing to train", self.project_id)
            return {"trained": False, "examples": 0}
        found = training_examples.collect(self, event, data, self._example, kwargs.get("events"))
        usable = [e for e in found.values() if e["spans"]]
        self.report_progress(0.1, f"{len(usable)} annotated texts")
        if not usable:
            return {"trained": False, "examples": 0}
        fix_random_seed(0)
        nlp = load_pipeline(self.resources.name)
        losses = self._train(nlp, usable)
        nlp.to_disk(self.output_dir)
        return {"trained": True, "examples": len(usable), "loss": float(losses.get("ner", 0.0))}

    def _example(self, task: dict[str, Any], annotation: dict[str, Any]) -> dict[str, Any] | None:
        assert self.ner_pair is not None
        if not isinstance((task.get("data") or {}).get(self.ner_pair.data_key), str):
            return None
        text = self.read_text(task, self.ner_pair.data_key)
        spans = training_examples.labeled_spans(self.ner_pair, annotation, text)
        return {"text": text, "spans": [list(s) for s in spans]} if spans else None

    def _train(self, nlp: Language, found: list[dict[str, Any]]) -> dict[str, float]:
        assert self.ner_pair is not None
        pair = self.ner_pair
        if "ner" not in nlp.pipe_names:
            nlp.add_pipe("ner")
        ner = nlp.get_pipe("ner")
        fresh = not ner.labels
        model_label = {
            label: next((m for m in ner.labels if pair.map_label(m) == label), label) for label in pair.labels
        }
        texts = [e["text"] for e in found]
        # entities of labels the config lacks stay as the pipeline predicted them (so it keeps them)
        kept: list[list[tuple[int, int, str]]] = [[] for _ in texts]
        if not fresh:
            for i, doc in enumerate(nlp.pipe(texts, disable=[n for n in nlp.pipe_names if n != "ner"])):
                kept[i] = [(e.start_char, e.end_char, e.label_) for e in doc.ents if pair.map_label(e.label_) is None]
        train = []
        for example, others in zip(found, kept, strict=True):
            doc = nlp.make_doc(example["text"])
            gold = [(s, e, model_label.get(label, label)) for s, e, label in example["spans"]]
            entities = _aligned(doc, gold + others)
            for _, _, label in entities:
                ner.add_label(label)
            train.append(Example.from_dict(doc, {"entities": entities}))
        trainable = components_to_run(nlp, {"doc.ents"})
        iterations = _env_int("SPACY_TRAIN_ITERATIONS", 20)
        losses: dict[str, float] = {}
        with nlp.select_pipes(enable=trainable):
            optimizer = nlp.initialize(lambda: train) if fresh else nlp.resume_training()
            for iteration in range(iterations):
                random.shuffle(train)
                losses = {}
                for batch in minibatch(train, size=8):
                    nlp.update(batch, drop=0.2, sgd=optimizer, losses=losses)
                self.report_progress(0.1 + 0.85 * (iteration + 1) / iterations, f"loss {losses.get('ner', 0):.3f}")
        return losses


def _aligned(doc: Any, spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Spans snapped to token boundaries, overlaps dropped (the first listed wins: gold before kept)."""
    taken: set[int] = set()
    out = []
    for start, end, label in spans:
        span = doc.char_span(start, end, alignment_mode="expand")
        if span is None or taken & set(range(span.start, span.end)):
            continue
        taken.update(range(span.start, span.end))
        out.append((span.start_char, span.end_char, label))
    return sorted(out)
