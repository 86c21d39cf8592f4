"""Interactive substring matching: the annotator labels a word, every other occurrence gets the label."""

from __future__ import annotations

import os
from typing import Any

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.results import regions
from label_studio_ml.results.label_config import ControlPair


class SubstringMatcher(LabelStudioMLBase):
    service_name = "substring_matching"

    def setup(self) -> None:
        self.whole_word = os.environ.get("SUBSTRING_WHOLE_WORD", "false").lower() in ("1", "true", "yes")

    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        pair = self.find_control("Labels", ["Text", "HyperText"])
        selections = [
            r
            for r in (context or {}).get("result") or []
            if isinstance(r, dict)
            and r.get("from_name") == pair.from_name
            and isinstance(r.get("value"), dict)
            and r["value"].get("text")
        ]
        return [self._match(task, pair, selections) for task in tasks]

    def _match(self, task: dict[str, Any], pair: ControlPair, selections: list[dict[str, Any]]) -> dict[str, Any]:
        if not selections:
            return {"result": [], "score": None}
        text = self.read_text(task, pair.data_key)
        found, taken, scores = [], set(), []
        for selection in selections:
            value = selection["value"]
            needle = value["text"] if isinstance(value["text"], str) else "".join(value["text"])
            label = (value.get(pair.result_type) or [None])[0]
            if label is None:
                continue
            taken.add((value.get("start"), value.get("end")))
            for start, end in regions.find_all_spans(text, needle, whole_word=self.whole_word):
                if (start, end) in taken:
                    continue
                taken.add((start, end))
                # exact case agreement scores 1.0; a case-insensitive match 0.5
                score = 1.0 if text[start:end] == needle else 0.5
                scores.append(score)
                found.append(regions.span(pair, text, start, end, label, score=score))
        return {"result": found, "score": sum(scores) / len(scores) if scores else None}
