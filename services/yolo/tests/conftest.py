import os
import sys
import tempfile
from pathlib import Path

# before ultralytics is imported: no downloads (fonts, weights), no pip installs, settings in a throwaway dir
os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", YOLO_VERBOSE="false", DEVICE="cpu")
os.environ["YOLO_CONFIG_DIR"] = tempfile.mkdtemp(prefix="yolo-settings-")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the service folder: `import model`
sys.path.insert(0, str(Path(__file__).resolve().parent))

import shapes  # noqa: E402

from label_studio_ml.testing.plugin import model_client  # noqa: E402

from model import YOLOModel  # noqa: E402

#: trained weights survive the session here (keyed by the recipe and the ultralytics version)
CACHE = Path(tempfile.gettempdir()) / "lsml-yolo-tests"


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MODEL_DIR's weights: the shape segmenter trained on synthetic images (once, cached), and random-weight
    pose, oriented-box, classification and detection models built from the YAMLs in ultralytics."""
    root = tmp_path_factory.mktemp("models")
    trained = CACHE / f"shapes-seg-{shapes.recipe_key()}.pt"
    if not trained.is_file():
        shapes.train_segmenter(tmp_path_factory.mktemp("training"), trained)
    (root / "shapes-seg.pt").write_bytes(trained.read_bytes())
    names = dict(enumerate(shapes.CLASSES))
    shapes.build_untrained("yolo11n-pose.yaml", {0: "square"}, root / "pose.pt", data_kpt_shape=(4, 3))
    shapes.build_untrained("yolo11n-obb.yaml", names, root / "obb.pt")
    shapes.build_untrained("yolo11n-cls.yaml", names, root / "cls.pt")
    shapes.build_untrained("yolo11n.yaml", names, root / "detect.pt")
    return root


@pytest.fixture(scope="session")
def drawn() -> dict[str, list[shapes.Shape]]:
    """The shapes in each test image."""
    rng = np.random.default_rng(7)
    return {f"shapes{i}.png": shapes.place(rng, shapes.SIZE) for i in range(4)}


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory, drawn: dict[str, list[shapes.Shape]]) -> Path:
    """LS local files: the shape images, an EXIF-rotated one, and a video."""
    root = tmp_path_factory.mktemp("media")
    for name, found in drawn.items():
        Image.fromarray(shapes.paint(found, shapes.SIZE, shapes.SIZE)[:, :, ::-1]).save(root / name)
    rng = np.random.default_rng(8)
    # stored 64 x 48 turned on its side: displayed 48 x 64 once the EXIF orientation (6: 90 degrees) applies
    upright = shapes.paint(shapes.place(rng, 48), 48, 64)[:, :, ::-1]
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(root / "rotated.jpg", exif=exif.tobytes())
    shapes.write_video(root / "clip.mp4")
    shapes.write_phases(root / "phases.mp4")
    return root


@pytest.fixture(scope="session")
def client(tmp_path_factory: pytest.TempPathFactory, models: Path, media: Path):
    """The service on the real app, MODEL_DIR holding the test weights, LS local files from ``media``."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MODEL_DIR", str(models))
        with model_client(YOLOModel, models, local_files_document_root=str(media)) as app:
            yield app
