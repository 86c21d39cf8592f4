"""A trainable text classifier in the upstream style: word counts per class, learnt from each annotation
and kept in the model's cache; model classes reach the config's labels through ``build_label_map``."""

import json
import logging
import re
from collections import Counter
from typing import Dict, List, Optional

from label_studio_ml.model import LabelStudioMLBase
from label_studio_ml.utils import get_choice, get_single_tag_keys, is_skipped

logger = logging.getLogger(__name__)

# the model's own class names; <Choice predicted_values="..."> in the config maps them onto its labels
CLASSES = ["pos", "neg"]
SEED_WORDS = {"pos": ["good", "great"], "neg": ["bad", "awful"]}


def words(text: str) -> List[str]:
    return re.findall(r"[a-z']+", text.lower())


class KeywordClassifier(LabelStudioMLBase):
    def setup(self):
        self.set("model_version", self.get("model_version") or "keywords-0")

    def counts(self) -> Dict[str, Counter]:
        stored = self.get("counts")
        if stored:
            return {name: Counter(c) for name, c in json.loads(stored).items()}
        return {name: Counter(seed) for name, seed in SEED_WORDS.items()}

    def predict(self, tasks: List[Dict], context: Optional[Dict] = None, **kwargs) -> List[Dict]:
        from_name, to_name, value, labels = get_single_tag_keys(self.parsed_label_config, "Choices", "Text")
        label_map = self.build_label_map(from_name, CLASSES + list(self.counts()))
        counts = self.counts()
        predictions = []
        for task in tasks:
            found = Counter(words(task["data"][value]))
            scores = {name: sum(counts[name][w] * n for w, n in found.items()) for name in counts}
            best = max(scores, key=scores.get)
            total = sum(scores.values())
            choice = label_map.get(best, best)
            predictions.append(
                {
                    "result": [
                        {"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": [choice]}}
                    ],
                    "score": scores[best] / total if total else 0.0,
                    "model_version": self.get("model_version"),
                }
            )
        return predictions

    def fit(self, event, data, **kwargs):
        if event not in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
            logger.info("fit skips %s: it learns from each annotation as it comes", event)
            return
        task = dict(data["task"], annotations=[data["annotation"]])
        if is_skipped(task):
            return
        from_name, to_name, value, labels = get_single_tag_keys(self.parsed_label_config, "Choices", "Text")
        label = get_choice(task)
        label_map = self.build_label_map(from_name, CLASSES)
        name = next((model_name for model_name, ls_label in label_map.items() if ls_label == label), label)
        counts = self.counts()
        counts.setdefault(name, Counter()).update(words(task["data"][value]))
        self.set("counts", json.dumps(counts))
        trained = int(self.get("trained") or 0) + 1
        self.set("trained", str(trained))
        self.set("model_version", f"keywords-{trained}")
