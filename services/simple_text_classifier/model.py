"""Text classification (Choices on Text) with TF-IDF + logistic regression, trained from LS annotations."""

from __future__ import annotations

import logging
import pickle
from typing import Any

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.results import regions
from label_studio_ml.training.examples import collect

logger = logging.getLogger(__name__)


class SimpleTextClassifier(LabelStudioMLBase):
    service_name = "simple_text_classifier"

    def setup(self) -> None:
        self.pair = self.find_control("Choices", ["Text", "HyperText"])
        self.pipeline: Pipeline | None = None
        if self.version_dir is not None and (self.version_dir / "model.pkl").exists():
            with (self.version_dir / "model.pkl").open("rb") as fh:
                self.pipeline = pickle.load(fh)  # our own artifact, written by fit below

    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        if self.pipeline is None:
            return [{"result": [], "score": None} for _ in tasks]
        texts = [self.read_text(task, self.pair.data_key) for task in tasks]
        probabilities = self.pipeline.predict_proba(texts)
        classes = list(self.pipeline.classes_)
        out = []
        for row in probabilities:
            best = int(row.argmax())
            label = self.pair.map_label(classes[best])
            if label is None:
                out.append({"result": [], "score": None})
                continue
            score = float(row[best])
            out.append({"result": [regions.choices(self.pair, [label], score)], "score": score})
        return out

    # --- training ------------------------------------------------------------------------------
    def fit(self, event: str, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        examples = collect(self, event, data, self._example, kwargs.get("events"))
        labels = {e["label"] for e in examples.values()}
        self.report_progress(0.2, f"{len(examples)} examples, {len(labels)} classes")
        if len(labels) < 2:
            logger.info(
                "project %s: %d example(s) in %d class(es); need 2 classes to train",
                self.project_id,
                len(examples),
                len(labels),
            )
            return {"trained": False, "examples": len(examples)}
        ordered = sorted(examples.items())
        pipeline = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(max_iter=1000)
        )
        pipeline.fit([e["text"] for _, e in ordered], [e["label"] for _, e in ordered])
        self.report_progress(0.9, "fitted")
        with (self.output_dir / "model.pkl").open("wb") as fh:
            pickle.dump(pipeline, fh)
        return {"trained": True, "examples": len(examples)}

    def _example(self, task: dict[str, Any], annotation: dict[str, Any]) -> dict[str, Any] | None:
        for item in annotation.get("result") or []:
            if item.get("from_name") == self.pair.from_name and item.get("type") == "choices":
                chosen = item.get("value", {}).get("choices") or []
                text = (task.get("data") or {}).get(self.pair.data_key)
                if chosen and isinstance(text, str):
                    return {"text": self.read_text(task, self.pair.data_key), "label": chosen[0]}
        return None
