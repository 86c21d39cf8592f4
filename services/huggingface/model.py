"""Hugging Face transformers on text: classification (``Choices``), NER (``Labels``) and generation
(``TextArea``), with fine-tuning of classification and NER models from Label Studio annotations.

The task follows the model: ``HF_TASK`` or the model's architecture (``*ForSequenceClassification``,
``*ForTokenClassification``, a causal LM), and the project's label config supplies the matching control.
A bare encoder (e.g. ``bert-base-uncased``) serves nothing until a project trains it.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    pipeline,
)
from transformers.utils import logging as hf_logging

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.errors import LabelConfigError
from label_studio_ml.results import regions
from label_studio_ml.results.label_config import ControlPair
from label_studio_ml.training.examples import collect

logger = logging.getLogger(__name__)

CLASSIFICATION, NER, GENERATION = "text-classification", "token-classification", "text-generation"
TASK_ALIASES = {
    "sentiment-analysis": CLASSIFICATION,
    "ner": NER,
    "text-classification": CLASSIFICATION,
    "token-classification": NER,
    "text-generation": GENERATION,
}
CONTROLS = {
    CLASSIFICATION: ("Choices", ["Text", "HyperText"]),
    NER: ("Labels", ["Text"]),
    GENERATION: ("TextArea", ["Text", "HyperText"]),
}
AUTO_CLASSES = {
    CLASSIFICATION: AutoModelForSequenceClassification,
    NER: AutoModelForTokenClassification,
    GENERATION: AutoModelForCausalLM,
}
UNSET_MAX_LENGTH = 100_000  # tokenizers without a model_max_length report ~1e30


@dataclass(frozen=True)
class Options:
    """The service's environment, read in one place."""

    model: str = ""
    token: str | None = field(default=None, repr=False)
    task: str | None = None
    device: str = ""
    batch_size: int = 32
    aggregation: str = "first"
    stride: int = 64
    max_new_tokens: int = 64
    prompt: str = "{text}"
    epochs: int = 3
    learning_rate: float = 5e-5
    train_batch_size: int = 8
    seed: int = 42
    cached_versions: int = 4

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Options:
        env = dict(os.environ if env is None else env)

        def get(name: str, default: Any) -> Any:
            value = env.get(name, "")
            return type(default)(value) if value != "" else default

        aggregation = env.get("HF_AGGREGATION", "").strip().lower() or cls.aggregation
        if aggregation not in ("first", "average", "max", "simple"):
            raise ValueError(f"HF_AGGREGATION={aggregation!r}: use first, average, max or simple")
        task = env.get("HF_TASK", "").strip().lower()
        if task and task not in TASK_ALIASES:
            raise ValueError(f"HF_TASK={task!r}: use one of {sorted(set(TASK_ALIASES.values()))}")
        return cls(
            model=env.get("HF_MODEL", "").strip(),
            token=env.get("HF_TOKEN") or None,
            task=TASK_ALIASES.get(task),
            device=env.get("HF_DEVICE", "").strip(),
            batch_size=get("HF_BATCH_SIZE", cls.batch_size),
            aggregation=aggregation,
            stride=get("HF_STRIDE", cls.stride),
            max_new_tokens=get("HF_MAX_NEW_TOKENS", cls.max_new_tokens),
            prompt=get("HF_PROMPT", cls.prompt),
            epochs=get("HF_EPOCHS", cls.epochs),
            learning_rate=get("HF_LEARNING_RATE", cls.learning_rate),
            train_batch_size=get("HF_TRAIN_BATCH_SIZE", cls.train_batch_size),
            seed=get("HF_SEED", cls.seed),
            cached_versions=get("HF_CACHED_VERSIONS", cls.cached_versions),
        )


def pick_device(requested: str = "") -> str:
    if requested:
        return requested
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def task_of(config: Any) -> str | None:
    """The task a model's head does, from its architecture; None for a bare encoder."""
    for architecture in getattr(config, "architectures", None) or []:
        if architecture.endswith("ForSequenceClassification"):
            return CLASSIFICATION
        if architecture.endswith("ForTokenClassification"):
            return NER
        if architecture.endswith(("ForCausalLM", "LMHeadModel")):
            return GENERATION
    return None


def model_max_length(tokenizer: Any, config: Any) -> int:
    length = getattr(tokenizer, "model_max_length", None) or 0
    if 0 < length < UNSET_MAX_LENGTH:
        return int(length)
    return int(getattr(config, "max_position_embeddings", None) or 512)


class Predictor:
    """One loaded model behind a transformers pipeline; calls are batched and serialised."""

    def __init__(self, source: str, task: str, options: Options, device: str) -> None:
        self.source, self.task, self.options, self.device = source, task, options, device
        tokenizer = AutoTokenizer.from_pretrained(source, token=options.token)
        model = AUTO_CLASSES[task].from_pretrained(source, token=options.token)
        tokenizer.model_max_length = model_max_length(tokenizer, model.config)
        if task == GENERATION and tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token  # batching needs a pad token; it is masked out
        self.pipe = pipeline(task, model=model.to(device).eval(), tokenizer=tokenizer, device=device)
        self.labels = (
            [str(model.config.id2label[i]) for i in sorted(model.config.id2label)] if task != GENERATION else []
        )
        self._lock = threading.Lock()

    @property
    def entity_names(self) -> list[str]:
        """Model label names as a config sees them (NER tags without their B-/I- prefix)."""
        if self.task != NER:
            return self.labels
        return sorted(
            {name.split("-", 1)[1] if name[:2] in ("B-", "I-") else name for name in self.labels if name != "O"}
        )

    def call_kwargs(self) -> dict[str, Any]:
        """The arguments of each pipeline call (the benchmark calls the pipeline with the same)."""
        kwargs: dict[str, Any] = {"batch_size": self.options.batch_size}
        tokenizer = self.pipe.tokenizer
        if self.task == CLASSIFICATION:
            kwargs["truncation"] = True
        elif self.task == NER:
            fast = bool(getattr(tokenizer, "is_fast", False))
            strategy = self.options.aggregation if fast else "simple"
            kwargs["aggregation_strategy"] = strategy
            stride = min(self.options.stride, tokenizer.model_max_length // 4)
            if fast and stride > 0:
                kwargs["stride"] = stride  # long texts: overlapping windows instead of truncation
        else:
            kwargs.update(max_new_tokens=self.options.max_new_tokens, do_sample=False, return_full_text=False)
            if tokenizer.pad_token_id is not None:
                kwargs["pad_token_id"] = tokenizer.pad_token_id
        return kwargs

    def __call__(self, texts: list[str]) -> list[Any]:
        if not texts:
            return []
        with self._lock, torch.inference_mode():
            outputs = self.pipe(texts, **self.call_kwargs())
        return list(outputs)


@dataclass
class Resources:
    options: Options
    device: str
    task: str | None
    predictor: Predictor | None


class _VersionCache:
    """Predictors of trained versions, keyed by version folder, shared by all projects and instances."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, Predictor] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, folder: Path, build: Callable[[], Predictor], keep: int) -> Predictor:
        key = str(folder.resolve())
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            predictor = build()
            self.loads += 1
            self._items[key] = predictor
            while len(self._items) > max(1, keep):
                self._items.popitem(last=False)
            return predictor


VERSIONS = _VersionCache()


# --- spans ---------------------------------------------------------------------------------------
def entity_spans(
    text: str, entities: list[dict[str, Any]], map_label: Callable[[str], str | None]
) -> list[tuple[int, int, str, float]]:
    """Pipeline entities as ``(start, end, config_label, score)`` spans over ``text``.

    Offsets come from the tokenizer's offset mapping; edges are trimmed of whitespace (byte-level and
    sentencepiece tokenizers count the leading space into a word), entities the config lacks are
    dropped, overlaps of one label merge and overlaps of different labels keep the better score.
    """
    spans: list[tuple[int, int, str, float]] = []
    cursor = 0
    for entity in entities:
        name = str(entity.get("entity_group") or entity.get("entity") or "")
        label = map_label(name.split("-", 1)[1] if name[:2] in ("B-", "I-") else name)
        start, end = entity.get("start"), entity.get("end")
        if start is None or end is None:  # a slow tokenizer gives no offsets: find the word
            found = _find_word(text, str(entity.get("word") or ""), cursor)
            if found is None:
                continue
            start, end = found
        start, end = max(0, int(start)), min(len(text), int(end))
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        cursor = max(cursor, end)
        if label is not None and start < end:
            spans.append((start, end, label, float(entity.get("score", 0.0))))
    return resolve_overlaps(spans)


def _find_word(text: str, word: str, cursor: int) -> tuple[int, int] | None:
    word = word.replace(" ##", "").replace("##", "").strip()
    if not word:
        return None
    at = text.lower().find(word.lower(), cursor)
    return (at, at + len(word)) if at >= 0 else None


def resolve_overlaps(spans: list[tuple[int, int, str, float]]) -> list[tuple[int, int, str, float]]:
    merged: list[tuple[int, int, str, float]] = []
    for span in sorted(spans, key=lambda s: (s[0], -s[1])):
        if merged and merged[-1][2] == span[2] and span[0] < merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], span[1]), last[2], max(last[3], span[3]))
        else:
            merged.append(span)
    kept: list[tuple[int, int, str, float]] = []
    for span in sorted(merged, key=lambda s: -s[3]):
        if all(span[1] <= other[0] or other[1] <= span[0] for other in kept):
            kept.append(span)
    return sorted(kept)


# --- training data -------------------------------------------------------------------------------
def bio_labels(labels: list[str]) -> list[str]:
    return ["O"] + [f"{prefix}-{label}" for label in labels for prefix in ("B", "I")]


def token_tags(
    offsets: list[tuple[int, int]],
    special: list[int],
    text: str,
    spans: list[tuple[int, int, str]],
    label2id: dict[str, int],
) -> list[int]:
    """BIO tag ids for one tokenised text from character spans (-100 on special tokens)."""
    tags: list[int] = []
    previous: tuple[int, int, str] | None = None
    for (start, end), is_special in zip(offsets, special):
        if is_special or end <= start:
            tags.append(-100)
            continue
        while start < end and text[start].isspace():
            start += 1
        inside = next((s for s in spans if s[0] <= start < s[1]), None)
        if inside is None:
            tags.append(label2id["O"])
        else:
            tags.append(label2id[("I-" if inside == previous else "B-") + inside[2]])
        previous = inside
    return tags


def fine_tune(
    model: Any,
    batches: Callable[[list[int]], dict[str, torch.Tensor]],
    size: int,
    options: Options,
    device: str,
    progress: Callable[[float, str], None],
) -> None:
    """A short AdamW fine-tune: ``options.epochs`` passes over ``size`` examples in small batches."""
    random.seed(options.seed)
    torch.manual_seed(options.seed)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.learning_rate, weight_decay=0.01)
    order = list(range(size))
    steps = options.epochs * ((size + options.train_batch_size - 1) // options.train_batch_size)
    step = 0
    for epoch in range(options.epochs):
        random.shuffle(order)
        for begin in range(0, size, options.train_batch_size):
            inputs = {k: v.to(device) for k, v in batches(order[begin : begin + options.train_batch_size]).items()}
            loss = model(**inputs).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            progress(0.1 + 0.8 * step / steps, f"epoch {epoch + 1}/{options.epochs} loss {loss.item():.4f}")
    model.eval()


class HuggingFace(LabelStudioMLBase):
    service_name = "huggingface"

    @classmethod
    def load(cls) -> Resources:
        options = Options.from_env()
        hf_logging.disable_progress_bar()  # per-file loading bars are noise in a server log
        if not options.model:
            raise RuntimeError("HF_MODEL is not set: give a Hugging Face hub id or a local model folder")
        device = pick_device(options.device)
        config = AutoConfig.from_pretrained(options.model, token=options.token)
        task = options.task or task_of(config)
        if task is None:
            AutoTokenizer.from_pretrained(options.model, token=options.token)  # fail now, not at training
            logger.info("%s has no task head: it serves nothing until a project trains it", options.model)
            return Resources(options, device, None, None)
        logger.info("loading %s for %s on %s", options.model, task, device)
        return Resources(options, device, task, Predictor(options.model, task, options, device))

    def setup(self) -> None:
        self.options: Options = self.resources.options
        trained = self.version_dir is not None and (self.version_dir / "config.json").exists()
        self.served_task: str | None = self.resources.task
        if trained:
            self.served_task = task_of(AutoConfig.from_pretrained(self.version_dir))
        self.task, self.pair = self._pick_control(self.served_task)
        self._trained = trained
        self._predictor: Predictor | None = None

    def _pick_control(self, preferred: str | None) -> tuple[str, ControlPair]:
        for task in dict.fromkeys([preferred, CLASSIFICATION, NER, GENERATION]):
            if task is None:
                continue
            control, objects = CONTROLS[task]
            pair = self.config.find(control, objects, required=False)
            if pair is not None:
                return task, pair
        raise LabelConfigError("the label config needs Choices, Labels or TextArea on a Text tag")

    @property
    def predictor(self) -> Predictor | None:
        """The model this project serves: its trained version, else the base model (when its task fits)."""
        if self.task != self.served_task:
            return None
        if self._predictor is None:
            if self._trained and self.version_dir is not None:
                folder, task = self.version_dir, self.task
                self._predictor = VERSIONS.get(
                    folder,
                    lambda: Predictor(str(folder), task, self.options, self.resources.device),
                    self.options.cached_versions,
                )
            else:
                self._predictor = self.resources.predictor
            if self._predictor is not None:
                self._warn_unmapped(self._predictor)
        return self._predictor

    def _warn_unmapped(self, predictor: Predictor) -> None:
        lost = [name for name in predictor.entity_names if self.pair.map_label(name) is None]
        if lost and self.task != GENERATION:
            logger.warning(
                "model labels %s map to no label of %r; their predictions are dropped", lost, self.pair.from_name
            )

    # --- prediction ------------------------------------------------------------------------------
    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        predictor = self.predictor
        if predictor is None:
            return [{"result": [], "score": None} for _ in tasks]
        texts = [self.read_text(task, self.pair.data_key) for task in tasks]
        todo = [i for i, text in enumerate(texts) if text.strip()]
        inputs = [texts[i] for i in todo]
        if self.task == GENERATION:
            inputs = [self.options.prompt.replace("{text}", text) for text in inputs]
        outputs = dict(zip(todo, predictor(inputs)))
        convert = {CLASSIFICATION: self._choices, NER: self._spans, GENERATION: self._generated}[self.task]
        return [
            convert(texts[i], outputs[i]) if i in outputs else {"result": [], "score": None} for i in range(len(tasks))
        ]

    def _choices(self, text: str, output: Any) -> dict[str, Any]:
        top = output[0] if isinstance(output, list) else output
        label = self.pair.map_label(str(top["label"]))
        if label is None:
            return {"result": [], "score": None}
        score = float(top["score"])
        return {"result": [regions.choices(self.pair, [label], score)], "score": score}

    def _spans(self, text: str, output: list[dict[str, Any]]) -> dict[str, Any]:
        spans = entity_spans(text, output, self.pair.map_label)
        result = [regions.span(self.pair, text, start, end, label, score) for start, end, label, score in spans]
        score = sum(s[3] for s in spans) / len(spans) if spans else None
        return {"result": result, "score": score}

    def _generated(self, text: str, output: Any) -> dict[str, Any]:
        first = output[0] if isinstance(output, list) else output
        generated = str(first.get("generated_text", "")).strip()
        if not generated:
            return {"result": [], "score": None}
        return {"result": [regions.textarea(self.pair, generated)], "score": None}

    # --- training --------------------------------------------------------------------------------
    def fit(self, event: str, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if self.task == GENERATION:
            logger.info("project %s: text generation is not trained; event %s ignored", self.project_id, event)
            return {"trained": False, "reason": "generation is not trained"}
        examples = collect(self, event, data, self._example, kwargs.get("events"))
        labels = sorted(
            {e["label"] for e in examples.values()}
            if self.task == CLASSIFICATION
            else {s[2] for e in examples.values() for s in e["spans"]}
        )
        self.report_progress(0.05, f"{len(examples)} examples, labels {labels}")
        if len(labels) < (2 if self.task == CLASSIFICATION else 1):
            logger.info(
                "project %s: %d example(s) with labels %s: not enough to train", self.project_id, len(examples), labels
            )
            return {"trained": False, "examples": len(examples)}
        ordered = [examples[key] for key in sorted(examples)]
        if self.task == CLASSIFICATION:
            self._train_classifier(ordered)
        else:
            self._train_tagger(ordered)
        self.report_progress(0.95, "saved")
        return {"trained": True, "examples": len(ordered), "labels": labels}

    def _base(self) -> tuple[str, Any]:
        tokenizer = AutoTokenizer.from_pretrained(self.options.model, token=self.options.token)
        tokenizer.model_max_length = model_max_length(
            tokenizer, AutoConfig.from_pretrained(self.options.model, token=self.options.token)
        )
        return self.options.model, tokenizer

    def _head_labels(self, names: list[str]) -> list[str]:
        """The head's label names: the base model's own order when its labels map one to one onto
        ``names`` (its trained head is kept), else ``names`` (a new head)."""
        base = AutoConfig.from_pretrained(self.options.model, token=self.options.token)
        if task_of(base) != self.task:
            return names
        mapped = []
        for i in sorted(base.id2label):
            name = str(base.id2label[i])
            prefix, tag = (name[:2], name[2:]) if name[:2] in ("B-", "I-") else ("", name)
            label = tag if tag == "O" and self.task == NER else self.pair.map_label(tag)
            mapped.append(None if label is None else prefix + label)
        return mapped if None not in mapped and sorted(mapped) == sorted(names) else names  # type: ignore

    def _train_classifier(self, examples: list[dict[str, Any]]) -> None:
        source, tokenizer = self._base()
        labels = self._head_labels(list(self.pair.labels))
        label2id = {label: i for i, label in enumerate(labels)}
        model = AutoModelForSequenceClassification.from_pretrained(
            source,
            token=self.options.token,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id=label2id,
            ignore_mismatched_sizes=True,
        )

        def batch(indices: list[int]) -> dict[str, torch.Tensor]:
            encoded = tokenizer(
                [examples[i]["text"] for i in indices], padding=True, truncation=True, return_tensors="pt"
            )
            encoded["labels"] = torch.tensor([label2id[examples[i]["label"]] for i in indices])
            return dict(encoded)

        fine_tune(model, batch, len(examples), self.options, self.resources.device, self.report_progress)
        self._save(model, tokenizer)

    def _train_tagger(self, examples: list[dict[str, Any]]) -> None:
        source, tokenizer = self._base()
        if not getattr(tokenizer, "is_fast", False):
            raise RuntimeError(f"NER training needs a fast tokenizer (offsets); {source} has none")
        names = self._head_labels(bio_labels(list(self.pair.labels)))
        label2id = {name: i for i, name in enumerate(names)}
        model = AutoModelForTokenClassification.from_pretrained(
            source,
            token=self.options.token,
            num_labels=len(names),
            id2label=dict(enumerate(names)),
            label2id=label2id,
            ignore_mismatched_sizes=True,
        )

        def batch(indices: list[int]) -> dict[str, torch.Tensor]:
            texts = [examples[i]["text"] for i in indices]
            encoded = tokenizer(
                texts,
                padding=True,
                truncation=True,
                return_offsets_mapping=True,
                return_special_tokens_mask=True,
                return_tensors="pt",
            )
            offsets = encoded.pop("offset_mapping").tolist()
            special = encoded.pop("special_tokens_mask").tolist()
            encoded["labels"] = torch.tensor(
                [
                    token_tags(
                        offsets[row], special[row], texts[row], [tuple(s) for s in examples[i]["spans"]], label2id
                    )  # type: ignore[misc]
                    for row, i in enumerate(indices)
                ]
            )
            return dict(encoded)

        fine_tune(model, batch, len(examples), self.options, self.resources.device, self.report_progress)
        self._save(model, tokenizer)

    def _save(self, model: Any, tokenizer: Any) -> None:
        model.save_pretrained(self.output_dir)
        tokenizer.save_pretrained(self.output_dir)
        model.to("cpu")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the training copy's memory goes back before the version loads

    # --- annotations -----------------------------------------------------------------------------
    def _example(self, task: dict[str, Any], annotation: dict[str, Any]) -> dict[str, Any] | None:
        items = [
            item
            for item in annotation.get("result") or []
            if item.get("from_name") == self.pair.from_name and item.get("to_name") == self.pair.to_name
        ]
        if self.task == CLASSIFICATION:
            chosen = [
                c for item in items for c in (item.get("value") or {}).get("choices") or [] if c in self.pair.labels
            ]
            if not chosen:
                return None
            text = self.read_text(task, self.pair.data_key)
            return {"text": text, "label": chosen[0], "annotation": annotation.get("id")}
        text = self.read_text(task, self.pair.data_key)
        spans = []  # an annotation without spans teaches "no entities here"
        for item in items:
            value = item.get("value") or {}
            start, end = value.get("start"), value.get("end")
            for label in value.get(self.pair.result_type) or []:
                if (
                    label in self.pair.labels
                    and isinstance(start, int)
                    and isinstance(end, int)
                    and 0 <= start < end <= len(text)
                ):
                    spans.append([start, end, label])
        return {"text": text, "spans": sorted(spans), "annotation": annotation.get("id")}
