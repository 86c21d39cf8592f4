"""A backend returning label-studio-sdk ``PredictionValue`` objects: long texts are "Long", others "Short"."""

from typing import Dict, List, Optional

from label_studio_sdk.label_interface.objects import PredictionValue

from label_studio_ml.model import LabelStudioMLBase


class LengthClassifier(LabelStudioMLBase):
    threshold = 40

    def predict(self, tasks: List[Dict], context: Optional[Dict] = None, **kwargs) -> List[PredictionValue]:
        from_name, to_name, value = self.label_interface.get_first_tag_occurence("Choices", "Text")
        predictions = []
        for task in tasks:
            text = task["data"][value]
            choice = "Long" if len(text) > self.threshold else "Short"
            region = {"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": [choice]}}
            predictions.append(PredictionValue(result=[region], score=min(1.0, len(text) / (2 * self.threshold))))
        return predictions
