import logging
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the service folder: `import model`
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tiny_asr

logger = logging.getLogger("tiny_asr")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A .nemo file trained here on synthesised speech (see tiny_asr.py): what NEMO_MODEL points at."""
    from tiny_asr import have_tools, train

    assert have_tools(), "espeak-ng and sox are needed (apt-get install espeak-ng sox; .ci/run does)"
    started = time.monotonic()
    path = train(tmp_path_factory.mktemp("tiny_asr"))
    print(f"\ntiny CTC model trained in {time.monotonic() - started:.1f} s -> {path}")
    return path
