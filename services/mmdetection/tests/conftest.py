import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the service folder: `import model`

from label_studio_ml.testing.plugin import model_client  # noqa: E402

from model import MMDetection  # noqa: E402

#: configs shipped inside mmdet, run with random weights (no checkpoint can be fetched here)
BOX_CONFIG = "rtmdet_tiny_8xb32-300e_coco"
MASK_CONFIG = "rtmdet-ins_tiny_8xb32-300e_coco"
#: random weights (seed 0) score every box about 0.52: the threshold sits below that to see boxes
THRESHOLD = 0.3


def draw(path: Path, width: int, height: int, seed: int, exif_orientation: int | None = None) -> Path:
    """A photo-like test image: smooth colour gradients plus a few filled rectangles."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack(
        [(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)), np.full_like(x, 90)], axis=-1
    ).astype(np.uint8)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        pixels[y0 : y0 + height // 3, x0 : x0 + width // 3] = rng.integers(0, 255, 3)
    image = Image.fromarray(pixels)
    if exif_orientation is None:
        image.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(path, exif=exif.tobytes())
    return path


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A document root of test images, served to the model as LS local files."""
    root = tmp_path_factory.mktemp("media")
    draw(root / "wide.png", 317, 211, seed=1)
    draw(root / "tall.png", 203, 341, seed=2)
    draw(root / "rotated.jpg", 300, 180, seed=3, exif_orientation=6)  # displayed 180 x 300
    return root


def serve(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, media: Path, config: str, **env: str):
    for key, value in {
        "MMDET_CONFIG": config,
        "MMDET_CHECKPOINT": "",
        "MMDET_DEVICE": "cpu",
        "SCORE_THRESHOLD": str(THRESHOLD),
        **env,
    }.items():
        monkeypatch.setenv(key, value)
    torch.manual_seed(0)  # the random weights, the same in every run
    return model_client(MMDetection, tmp_path, local_files_document_root=str(media))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, media: Path):
    """The service with random-weight RTMDet-tiny, loaded once for the module."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        with serve(monkeypatch, tmp_path_factory.mktemp("model_dir"), media, BOX_CONFIG) as app:
            yield app


@pytest.fixture(scope="module")
def mask_client(tmp_path_factory: pytest.TempPathFactory, media: Path):
    """The service with random-weight RTMDet-Ins-tiny (a mask head)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        with serve(monkeypatch, tmp_path_factory.mktemp("model_dir"), media, MASK_CONFIG) as app:
            yield app
