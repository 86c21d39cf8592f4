"""mmdetection: the service's /predict (a real server process) against mmdet's inference_detector called
directly on the same image files, same config and weights. Target: service / direct <= 1.10.

    python benchmarks/mmdetection.py [--images 8] [--rounds 5]

Reads MMDET_CONFIG, MMDET_CHECKPOINT, MMDET_DEVICE and SCORE_THRESHOLD like the service. Without a
checkpoint (none can be fetched offline) it runs RTMDet-tiny with random weights: the timing is the
same as with trained weights, except for the number of regions converted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
import torch
from PIL import Image

from label_studio_ml.testing import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "services" / "mmdetection"
CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
          '<Label value="Object" predicted_values="{names}"/></RectangleLabels></View>')


def make_images(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        width, height = (640, 480) if i % 2 == 0 else (480, 640)
        pixels = rng.integers(0, 255, (height // 16, width // 16, 3), dtype=np.uint8)
        path = folder / f"image{i}.jpg"
        Image.fromarray(pixels).resize((width, height), Image.BILINEAR).save(path, quality=90)
        paths.append(path)
    return paths


def timed(fn, rounds: int) -> list[float]:
    fn()  # warm-up: lazy inits, allocator, caches
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def direct_call(config: str, checkpoint: str | None, device: str, paths: list[Path], rounds: int) -> tuple:
    """mmdet's own API, as a script would use it: build the detector, run inference_detector on the files."""
    from mmdet.apis import inference_detector, init_detector

    from model import resolve_config

    torch.manual_seed(0)
    model = init_detector(str(resolve_config(config)), checkpoint, device=device)
    results: list = []

    def run() -> None:
        results[:] = inference_detector(model, [str(p) for p in paths])

    return timed(run, rounds), results, list(model.dataset_meta["classes"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(SERVICE))
    config = os.environ.get("MMDET_CONFIG") or "rtmdet_tiny_8xb32-300e_coco"
    checkpoint = os.environ.get("MMDET_CHECKPOINT") or None
    device = os.environ.get("MMDET_DEVICE") or ("cuda:0" if torch.cuda.is_available() else "cpu")
    threshold = float(os.environ.get("SCORE_THRESHOLD") or 0.5)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = make_images(folder, args.images)

        direct, results, classes = direct_call(config, checkpoint, device, paths, args.rounds)
        boxes = sum(int((r.pred_instances.scores >= threshold).sum()) for r in results)
        names = ",".join(classes)

        env = {"MMDET_CONFIG": config, "MMDET_CHECKPOINT": checkpoint or "", "MMDET_DEVICE": device,
               "SCORE_THRESHOLD": str(threshold), "LOCAL_FILES_DOCUMENT_ROOT": str(folder),
               "MODEL_DIR": str(folder / "model_dir"), "LOG_LEVEL": "WARNING"}
        label_config = CONFIG.format(names=names)
        tasks = [{"id": i, "data": {"image": f"/data/local-files/?d={p.name}"}} for i, p in enumerate(paths)]
        replies: list = []
        with ServerProcess(SERVICE, env=env) as server:
            session = requests.Session()
            session.post(server.url + "/setup", json={"project": "1", "schema": label_config}, timeout=30)

            def predict() -> None:
                reply = session.post(server.url + "/predict", timeout=600, json={
                    "tasks": tasks, "project": "1", "label_config": label_config, "params": {"context": None}})
                reply.raise_for_status()
                replies[:] = reply.json()["results"]

            service = timed(predict, args.rounds)
        regions = sum(len(r["result"]) for r in replies)

    n = args.images
    d, s = statistics.median(direct), statistics.median(service)
    print(f"mmdetection {config} ({'checkpoint' if checkpoint else 'random weights'}) on {device}, "
          f"torch threads {torch.get_num_threads()}, {n} images 640x480/480x640, medians of {args.rounds}")
    print(f"  direct inference_detector(model, paths): {d:.3f} s ({1000 * d / n:.0f} ms/image), "
          f"{boxes} boxes >= {threshold}")
    print(f"  service POST /predict ({n} tasks):       {s:.3f} s ({1000 * s / n:.0f} ms/image), "
          f"{regions} regions")
    print(f"  ratio service / direct: {s / d:.3f}x (target <= 1.10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
