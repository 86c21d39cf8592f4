"""What `label-studio-ml create` writes upstream: predict answers no prediction, fit keeps data in the cache."""

from typing import Dict, List, Optional

from label_studio_ml.model import LabelStudioMLBase
from label_studio_ml.response import ModelResponse


class NewModel(LabelStudioMLBase):
    """Custom ML Backend model"""

    def setup(self):
        self.set("model_version", "0.0.1")

    def predict(self, tasks: List[Dict], context: Optional[Dict] = None, **kwargs) -> ModelResponse:
        print(f"Run prediction on {len(tasks)} task(s), project {self.project_id}, extra params {self.extra_params}")
        return ModelResponse(predictions=[])

    def fit(self, event, data, **kwargs):
        print(f"Old data: {self.get('my_data')}, old model version: {self.get('model_version')}")
        self.set("my_data", "my_new_data_value")
        self.set("model_version", "my_new_model_version")
        print("fit() completed successfully.")
