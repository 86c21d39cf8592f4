"""Interactive substring matching in the upstream style: the label a person draws around a word goes to every
occurrence of that word, found through ``self.label_interface``."""

import logging
import re
from typing import Dict, List, Optional
from uuid import uuid4

from label_studio_ml.model import LabelStudioMLBase
from label_studio_ml.response import ModelResponse

logger = logging.getLogger(__name__)


class SubstringMatcher(LabelStudioMLBase):
    def setup(self):
        self.set("model_version", "matcher-v1")

    def predict(self, tasks: List[Dict], context: Optional[Dict] = None, **kwargs) -> ModelResponse:
        if not context or not context.get("result"):
            return ModelResponse(predictions=[])  # batch pre-annotation: nothing to match yet
        from_name, to_name, value = self.label_interface.get_first_tag_occurence("Labels", "Text")
        drawn = next((r for r in context["result"] if r["from_name"] == from_name), None)
        if drawn is None:
            logger.warning("no region of %s in the context", from_name)
            return ModelResponse(predictions=[])
        word, labels = drawn["value"]["text"], drawn["value"]["labels"]
        predictions = []
        for task in tasks:
            text = task["data"].get(value) or ""
            regions = [
                {
                    "id": uuid4().hex[:8],
                    "from_name": from_name,
                    "to_name": to_name,
                    "type": "labels",
                    "value": {"start": m.start(), "end": m.end(), "text": m.group(0), "labels": labels},
                    "score": 1.0 if m.group(0) == word else 0.8,
                }
                for m in re.finditer(re.escape(word), text, flags=re.IGNORECASE)
            ]
            predictions.append({"result": regions, "score": 1.0 if regions else 0.0})
        return ModelResponse(predictions=predictions, model_version=self.get("model_version"))
