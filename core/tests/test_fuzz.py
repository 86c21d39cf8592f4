"""Schemathesis against a running server from its own /openapi.json: no 5xx, every 4xx a JSON reason.

At least 2,000 generated requests in all (counted and asserted by the last test of this module).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from label_studio_ml.testing.plugin import ServerProcess

MODELS = Path(__file__).parent / "models"
EXAMPLES_PER_OPERATION = 150  # per operation and per mode (valid, invalid)
CALLS: list[int] = []

# no LS: POST /jobs answers 400 (a job needs LABEL_STUDIO_URL) instead of calling one
_server = ServerProcess(MODELS / "trainable.py", env={"MAX_REQUEST_BYTES": "200000", "LABEL_STUDIO_URL": ""})


@schemathesis.check
def four_xx_has_json_reason(ctx, response, case) -> None:  # type: ignore[no-untyped-def]
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], response.text


@pytest.fixture(scope="module", autouse=True)
def running_server(tmp_path_factory: pytest.TempPathFactory):
    _server.env["MODEL_DIR"] = str(tmp_path_factory.mktemp("fuzz"))
    _server.start()
    yield _server
    _server.stop()


def test_generated_requests_never_5xx_and_4xx_have_reasons(running_server) -> None:  # type: ignore[no-untyped-def]
    schema = schemathesis.openapi.from_url(running_server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    for operation, mode in [(op, mode) for op in operations for mode in GenerationMode]:

        @given(operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def exercise(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call()
            CALLS.append(response.status_code)
            case.validate_response(response, checks=(not_a_server_error, four_xx_has_json_reason))

        try:
            exercise()
        except Unsatisfiable:
            # an operation without inputs (GET /health) has no invalid requests to generate
            assert mode is GenerationMode.NEGATIVE and not operation.query and not operation.body
    assert len(CALLS) >= 2000, len(CALLS)
    assert not [c for c in CALLS if c >= 500]
    print(f"fuzz: {len(CALLS)} requests over {len(operations)} operations, statuses {sorted(set(CALLS))}")
