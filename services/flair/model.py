"""Flair NER (Labels on Text) with per-entity scores; fine-tunes the tagger on LS annotations."""

from __future__ import annotations

import logging
import os
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flair
import torch
from flair.data import Sentence
from flair.models import SequenceTagger
from flair.models.sequence_tagger_utils.crf import START_TAG, STOP_TAG
from flair.models.sequence_tagger_utils.viterbi import ViterbiDecoder, ViterbiLoss
from flair.splitter import SegtokSentenceSplitter

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.results import regions
from label_studio_ml.training import examples as training_examples

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "ner"
TEXT_OBJECTS = ["Text", "HyperText"]
TAGGER_FILE = "tagger.pt"
CACHED_VERSIONS = 2
_TRUE = {"1", "true", "yes", "on"}


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass
class Tagger:
    """A loaded SequenceTagger; one inference at a time (torch already uses every core)."""

    name: str
    model: SequenceTagger
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def labels(self) -> list[str]:
        """Entity labels (BIOES/BIO tags without their prefix)."""
        found = []
        for tag in self.model.label_dictionary.get_items():
            label = tag.split("-", 1)[1] if tag[:2] in ("B-", "I-", "E-", "S-") else None
            if label and label not in found:
                found.append(label)
        return found


_versions: OrderedDict[str, Tagger] = OrderedDict()
_versions_lock = threading.Lock()


def trained_tagger(path: Path) -> Tagger:
    """A trained version's tagger, loaded once and shared by every instance that serves it."""
    key = str(path.resolve())
    with _versions_lock:
        if key not in _versions:
            _versions[key] = Tagger(key, SequenceTagger.load(key))
            while len(_versions) > CACHED_VERSIONS:
                _versions.popitem(last=False)
        _versions.move_to_end(key)
        return _versions[key]


class FlairModel(LabelStudioMLBase):
    service_name = "flair"

    @classmethod
    def load(cls) -> Tagger:
        name = _env("FLAIR_MODEL", DEFAULT_MODEL)
        return Tagger(name, SequenceTagger.load(name))

    def setup(self) -> None:
        self.pair = self.find_control("Labels", TEXT_OBJECTS)
        trained = self.version_dir is not None and (self.version_dir / TAGGER_FILE).exists()
        self.tagger: Tagger = trained_tagger(self.version_dir / TAGGER_FILE) if trained else self.resources  # type: ignore[operator]
        self.batch_size = int(_env("FLAIR_BATCH_SIZE", "32"))
        self.split = _env("FLAIR_SPLIT_SENTENCES", "true").lower() in _TRUE
        self.splitter = SegtokSentenceSplitter() if self.split else None

    # --- prediction ----------------------------------------------------------------------------
    def sentences(self, text: str) -> list[Sentence]:
        """The text as flair sentences; each knows its offset in the text (``start_position``)."""
        if not text.strip():
            return []
        if self.splitter is not None:
            return self.splitter.split(text)
        return [Sentence(text)]

    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        texts = [self.read_text(task, self.pair.data_key) for task in tasks]
        per_task = [self.sentences(text) for text in texts]
        flat = [sentence for sentences in per_task for sentence in sentences]
        label_type = self.tagger.model.label_type
        if flat:
            with self.tagger.lock:
                self.tagger.model.predict(flat, mini_batch_size=self.batch_size, label_name=label_type)
        out = []
        for text, sentences in zip(texts, per_task, strict=True):
            result = []
            for sentence in sentences:
                offset = sentence.start_position
                for span in sentence.get_spans(label_type):
                    label = self.pair.map_label(span.tag)
                    if label is None:
                        continue
                    start, end = offset + span.start_position, offset + span.end_position
                    result.append(regions.span(self.pair, text, start, end, label, score=span.score))
            scores = [r["score"] for r in result]
            out.append({"result": result, "score": sum(scores) / len(scores) if scores else None})
        return out

    # --- training ------------------------------------------------------------------------------
    def fit(self, event: str, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        found = training_examples.collect(self, event, data, self._example, kwargs.get("events"))
        usable = [e for e in found.values() if e["spans"]]
        self.report_progress(0.1, f"{len(usable)} annotated texts")
        if not usable:
            return {"trained": False, "examples": 0}
        flair.set_seed(0)
        tagger = SequenceTagger.load(self.resources.name)  # a private copy of the base: served ones stay
        loss = self._fine_tune(tagger, usable)
        tagger.save(self.output_dir / TAGGER_FILE)
        return {"trained": True, "examples": len(usable), "loss": loss}

    def _example(self, task: dict[str, Any], annotation: dict[str, Any]) -> dict[str, Any] | None:
        if not isinstance((task.get("data") or {}).get(self.pair.data_key), str):
            return None
        text = self.read_text(task, self.pair.data_key)
        spans = training_examples.labeled_spans(self.pair, annotation, text)
        return {"text": text, "spans": [list(s) for s in spans]} if spans else None

    def _fine_tune(self, tagger: SequenceTagger, found: list[dict[str, Any]]) -> float:
        label_type = tagger.label_type
        known = Tagger(self.resources.name, tagger).labels
        model_label = {
            label: next((m for m in known if self.pair.map_label(m) == label), label) for label in self.pair.labels
        }
        train: list[Sentence] = []
        gold: list[list[tuple[int, int, str]]] = []
        for example in found:
            spans = [(start, end, model_label.get(label, label)) for start, end, label in example["spans"]]
            for sentence in self.sentences(example["text"]):
                train.append(sentence)
                gold.append(token_spans(sentence, spans))
        # entities of labels the config lacks stay as the tagger predicted them (so it keeps them)
        tagger.predict(train, mini_batch_size=self.batch_size, label_name="predicted")
        for sentence, annotated in zip(train, gold, strict=True):
            kept = [
                (s.tokens[0].idx, s.tokens[-1].idx, s.tag)
                for s in sentence.get_spans("predicted")
                if self.pair.map_label(s.tag) is None
            ]
            sentence.remove_labels("predicted")
            taken: set[int] = set()
            for first, last, label in annotated + kept:
                if not taken & set(range(first, last + 1)):
                    taken.update(range(first, last + 1))
                    sentence[first - 1 : last].add_label(label_type, label)
        add_labels(tagger, [label for label in dict.fromkeys(model_label.values()) if label not in known])
        epochs = int(_env("FLAIR_TRAIN_EPOCHS", "10"))
        optimizer = torch.optim.Adam(
            [p for p in tagger.parameters() if p.requires_grad], lr=float(_env("FLAIR_LEARNING_RATE", "0.005"))
        )
        tagger.train()
        rng = random.Random(0)
        total = 0.0
        for epoch in range(epochs):
            rng.shuffle(train)
            total = 0.0
            for i in range(0, len(train), 8):
                loss, count = tagger.forward_loss(train[i : i + 8])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.detach().item() / max(int(count), 1)
            self.report_progress(0.1 + 0.85 * (epoch + 1) / epochs, f"loss {total:.3f}")
        tagger.eval()
        return total


def token_spans(sentence: Sentence, spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Character spans of the text as (first token, last token, label) of one of its sentences;
    a span covers every token it touches."""
    offset = sentence.start_position
    out = []
    for start, end, label in spans:
        tokens = [t for t in sentence.tokens if offset + t.start_position < end and offset + t.end_position > start]
        if tokens:
            out.append((tokens[0].idx, tokens[-1].idx, label))
    return out


def add_labels(tagger: SequenceTagger, labels: list[str]) -> None:
    """Grow a tagger's output (tag dictionary, linear layer, CRF transitions) for new entity labels;
    the existing tags keep their weights."""
    prefixes = ("S-", "B-", "E-", "I-") if tagger.tag_format == "BIOES" else ("B-", "I-")
    dictionary = tagger.label_dictionary
    tags = [p + label for label in labels for p in prefixes if not dictionary.has_item(p + label)]
    if not tags:
        return
    before = len(dictionary)
    for tag in tags:
        dictionary.add_item(tag)
    size = len(dictionary)
    old = tagger.linear
    linear = torch.nn.Linear(old.in_features, size).to(old.weight.device)
    with torch.no_grad():
        linear.weight[:before] = old.weight
        linear.bias[:before] = old.bias
        linear.weight[before:].normal_(0, 0.01)
        linear.bias[before:] = old.bias.min()
    tagger.linear = linear
    tagger.tagset_size = size
    if tagger.use_crf:
        old_transitions = tagger.crf.transitions
        transitions = torch.zeros(size, size, device=old_transitions.device)
        with torch.no_grad():
            transitions[:before, :before] = old_transitions
            transitions[dictionary.get_idx_for_item(START_TAG), :] = -10000
            transitions[:, dictionary.get_idx_for_item(STOP_TAG)] = -10000
        tagger.crf.transitions = torch.nn.Parameter(transitions)
        tagger.crf.tagset_size = size
        tagger.loss_function = ViterbiLoss(dictionary)
        tagger.viterbi_decoder = ViterbiDecoder(dictionary)
    elif tagger.weight_dict:
        tagger.loss_weights = tagger._init_loss_weights(tagger.weight_dict)
        tagger.loss_function = torch.nn.CrossEntropyLoss(weight=tagger.loss_weights, reduction="sum")
