"""A tiny trainable model for core's training tests: 'weights' are the count of examples seen."""

import json
import os
import time

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.results import regions


class Trainable(LabelStudioMLBase):
    service_name = "trainable"
    fits = 0

    def setup(self):
        self.pair = self.find_control("Choices", "Text")
        self.weights = {}
        if self.version_dir is not None:
            self.weights = json.loads((self.version_dir / "weights.json").read_text())

    def predict(self, tasks, context=None, **kwargs):
        for task in tasks:  # a URL or LS path as the text is fetched (media tests, benchmarks/robustness.py)
            self.read_text(task, self.pair.data_key)
        label = self.weights.get("label")
        return [{"result": [regions.choices(self.pair, [label])] if label else [], "score": 1.0} for _ in tasks]

    def fit(self, event, data, **kwargs):
        type(self).fits += 1
        events = kwargs.get("events") or []
        seconds = float(os.environ.get("TRAINABLE_FIT_SECONDS", "0"))
        if any(payload.get("fail") for _, payload in events):
            raise ValueError("asked to fail")
        total = (self.get("seen") or 0) + len(events)
        self.set("seen", total)
        # which annotations were trained on, for tests and benchmarks that count lost webhooks
        ids = {p["annotation"]["id"] for _, p in events if isinstance(p.get("annotation"), dict)}
        self.set("annotation_ids", sorted(ids | set(self.get("annotation_ids") or [])))
        partial = self.output_dir / "weights.json"
        partial.write_text('{"label": ')  # half-written on purpose: a crash here must not publish
        for step in range(10):
            self.report_progress(step / 10, f"step {step}")
            time.sleep(seconds / 10)
        label = next((p.get("label") for _, p in reversed(events) if p.get("label")), "Positive")
        partial.write_text(json.dumps({"label": label, "seen": total}))
