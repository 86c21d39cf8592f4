"""Synthetic data for the tests: small images and a video of filled circles and squares, a YOLO dataset of
them, and the tiny models trained or built from the YAMLs inside ultralytics."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("circle", "square")
COLOURS = {0: (60, 200, 230), 1: (230, 120, 60)}  # BGR
SIZE = 64
#: the recipe that makes a tiny YOLO-seg find the shapes: what matters on 2 CPU cores is optimizer steps,
#: so nbs = batch (ultralytics otherwise accumulates gradients up to a nominal batch of 64) and no warm-up
TRAIN = dict(
    epochs=20,
    imgsz=SIZE,
    batch=8,
    nbs=8,
    warmup_epochs=0,
    mosaic=0.0,
    close_mosaic=0,
    optimizer="AdamW",
    lr0=0.004,
    lrf=0.5,
    seed=0,
    val=False,
    amp=False,
    plots=False,
    workers=0,
    verbose=False,
)
TRAIN_IMAGES = 48


@dataclass(frozen=True)
class Shape:
    cls: int
    cx: int
    cy: int
    r: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.cx - self.r, self.cy - self.r, self.cx + self.r, self.cy + self.r


def place(rng: np.random.Generator, size: int, count: int = 2) -> list[Shape]:
    shapes: list[Shape] = []
    for _ in range(count):
        for _ in range(50):
            r = int(rng.integers(size // 10, size // 5))
            cx, cy = (int(v) for v in rng.integers(r + 2, size - r - 2, 2))
            if all((cx - s.cx) ** 2 + (cy - s.cy) ** 2 > (r + s.r + 4) ** 2 for s in shapes):
                break
        shapes.append(Shape(int(rng.integers(0, 2)), cx, cy, r))
    return shapes


def paint(shapes: list[Shape], width: int, height: int, background: int = 40) -> np.ndarray:
    """A BGR image of the shapes on a flat background."""
    image = np.full((height, width, 3), background, np.uint8)
    for s in shapes:
        if s.cls == 0:
            cv2.circle(image, (s.cx, s.cy), s.r, COLOURS[0], -1)
        else:
            cv2.rectangle(image, (s.cx - s.r, s.cy - s.r), (s.cx + s.r, s.cy + s.r), COLOURS[1], -1)
    return image


def outline(s: Shape, points: int = 16) -> list[tuple[float, float]]:
    if s.cls == 1:
        return [(s.cx - s.r, s.cy - s.r), (s.cx + s.r, s.cy - s.r), (s.cx + s.r, s.cy + s.r), (s.cx - s.r, s.cy + s.r)]
    turn = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return list(zip(s.cx + s.r * np.cos(turn), s.cy + s.r * np.sin(turn)))


def write_dataset(root: Path, count: int = TRAIN_IMAGES, seed: int = 0) -> Path:
    """A YOLO segmentation dataset (polygons) of ``count`` images; returns its data.yaml."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    for i in range(count):
        shapes = place(rng, SIZE)
        cv2.imwrite(str(root / "images" / f"{i}.png"), paint(shapes, SIZE, SIZE))
        lines = [f"{s.cls} " + " ".join(f"{x / SIZE:.5f} {y / SIZE:.5f}" for x, y in outline(s)) for s in shapes]
        (root / "labels" / f"{i}.txt").write_text("\n".join(lines) + "\n")
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(CLASSES))
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images\nval: images\nnames:\n{names}")
    return root / "data.yaml"


def recipe_key() -> str:
    """Changes when the training recipe or ultralytics changes: the cached trained model is then trained again."""
    import inspect

    import ultralytics

    recipe = [repr(TRAIN), str(TRAIN_IMAGES), ultralytics.__version__]
    recipe += [inspect.getsource(f) for f in (place, paint, outline, write_dataset, train_segmenter)]
    return hashlib.sha256("".join(recipe).encode()).hexdigest()[:12]


def train_segmenter(work: Path, target: Path) -> Path:
    """yolo11n-seg built from its YAML, trained on the shapes; the weights are saved as ``target``."""
    from ultralytics import YOLO

    model = YOLO("yolo11n-seg.yaml")
    model.train(data=str(write_dataset(work / "dataset")), device="cpu", project=str(work), name="run", **TRAIN)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    best = Path(model.trainer.best)
    tmp.write_bytes((best if best.is_file() else Path(model.trainer.last)).read_bytes())
    tmp.replace(target)
    return target


def build_untrained(yaml: str, names: dict[int, str], target: Path, **kwargs: object) -> Path:
    """A random-weight model of a task built from a YAML in ultralytics, with our class names."""
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import ClassificationModel, DetectionModel, OBBModel, PoseModel

    torch.manual_seed(0)
    model = YOLO(yaml)
    network = {"pose": PoseModel, "obb": OBBModel, "classify": ClassificationModel, "detect": DetectionModel}
    model.model = network[model.task](yaml, nc=len(names), verbose=False, **kwargs)
    model.model.names = names
    model.model.task = model.task  # else a loaded file guesses "detect"
    model.save(str(target))
    return target


def moving_shapes(frames: int = 24) -> list[list[Shape]]:
    """A circle moving right along the top and a square moving left along the bottom, frame by frame."""
    return [[Shape(0, 12 + f, 16, 9), Shape(1, 50 - f, 46, 9)] for f in range(frames)]


def write_video(path: Path, frames: int = 24, fps: float = 8.0) -> None:
    """The moving shapes as a 64 x 64 clip (mp4v)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (SIZE, SIZE))
    for shapes in moving_shapes(frames):
        writer.write(paint(shapes, SIZE, SIZE))
    writer.release()


def write_phases(path: Path, frames: int = 24, fps: float = 8.0) -> None:
    """A clip showing a circle for its first half and a square for the rest (per-frame classes to learn)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (SIZE, SIZE))
    for f in range(frames):
        writer.write(paint([Shape(0 if f < frames // 2 else 1, 32, 32, 14)], SIZE, SIZE))
    writer.release()


def decoded_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count


def prepare(models: Path, media: Path) -> None:
    """The trained segmenter as ``models/shapes-seg.pt`` (trained once, cached like the tests do), two shape
    images and the clip in ``media``: what the end-to-end test hands a real Label Studio."""
    import tempfile

    cached = Path(tempfile.gettempdir()) / "lsml-yolo-tests" / f"shapes-seg-{recipe_key()}.pt"
    if not cached.is_file():
        with tempfile.TemporaryDirectory() as work:
            train_segmenter(Path(work), cached)
    models.mkdir(parents=True, exist_ok=True)
    media.mkdir(parents=True, exist_ok=True)
    (models / "shapes-seg.pt").write_bytes(cached.read_bytes())
    rng = np.random.default_rng(7)
    for i in range(2):
        cv2.imwrite(str(media / f"shapes{i}.png"), paint(place(rng, SIZE), SIZE, SIZE))
    write_video(media / "clip.mp4")


if __name__ == "__main__":  # python shapes.py MODELS MEDIA (the end-to-end test runs it in the torch env)
    import os
    import sys

    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    prepare(Path(sys.argv[1]), Path(sys.argv[2]))
