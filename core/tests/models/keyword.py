"""A model for pre-annotation tests in other processes (workers, servers): Positive for texts with
'good'; raises on 'boom'; each predict call appends its process id and task ids to KEYWORD_LOG and
sleeps KEYWORD_DELAY_S per task (so a test can kill a worker in the middle of a chunk)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from label_studio_ml import LabelStudioMLBase


class Keyword(LabelStudioMLBase):
    service_name = "keyword"
    predict_batch_size = 8

    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        log = os.environ.get("KEYWORD_LOG")
        if log:
            with open(log, "a") as fh:
                fh.write(json.dumps({"pid": os.getpid(), "tasks": [t.get("id") for t in tasks]}) + "\n")
        time.sleep(float(os.environ.get("KEYWORD_DELAY_S", "0")) * len(tasks))
        if any("boom" in t["data"]["text"] for t in tasks):
            raise ValueError("cannot handle 'boom'")
        label = "Positive"
        return [
            {
                "result": [
                    {
                        "from_name": "label",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": [label if "good" in t["data"]["text"] else "Negative"]},
                    }
                ],
                "score": 0.5,
            }
            for t in tasks
        ]
