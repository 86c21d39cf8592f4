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

from label_studio_ml.testing.plugin import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "services" / "mmdetection"
CONFIG = (
    '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
    '<Label value="Object" predicted_values="{names}"/></RectangleLabels></View>'
)


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


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def random_checkpoint(config: str, folder: Path) -> Path:
    from mmdet.apis import init_detector

    from model import resolve_config

    torch.manual_seed(0)
    model = init_detector(str(resolve_config(config)), None, device="cpu")
    path = folder / "random-weights.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(SERVICE))
    from mmdet.apis import inference_detector, init_detector

    from model import resolve_config

    config = os.environ.get("MMDET_CONFIG") or "rtmdet_tiny_8xb32-300e_coco"
    checkpoint = os.environ.get("MMDET_CHECKPOINT") or None
    weights = "checkpoint" if checkpoint else "random weights"
    device = os.environ.get("MMDET_DEVICE") or ("cuda:0" if torch.cuda.is_available() else "cpu")
    threshold = float(os.environ.get("SCORE_THRESHOLD") or 0.5)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = make_images(folder, args.images)
        if checkpoint is None:  # the same random weights for both sides, through the checkpoint path
            checkpoint = str(random_checkpoint(config, folder))
        # direct: mmdet's own API as a script uses it, on the image files
        model = init_detector(str(resolve_config(config)), checkpoint, device=device)
        label_config = CONFIG.format(names=",".join(model.dataset_meta["classes"]))
        tasks = [{"id": i, "data": {"image": f"/data/local-files/?d={p.name}"}} for i, p in enumerate(paths)]
        env = {
            "MMDET_CONFIG": config,
            "MMDET_CHECKPOINT": checkpoint,
            "MMDET_DEVICE": device,
            "SCORE_THRESHOLD": str(threshold),
            "LOCAL_FILES_DOCUMENT_ROOT": str(folder),
            "MODEL_DIR": str(folder / "model_dir"),
            "LOG_LEVEL": "WARNING",
        }
        with ServerProcess(SERVICE, env=env) as server:
            session = requests.Session()
            session.post(server.url + "/setup", json={"project": "1", "schema": label_config}, timeout=30)

            def direct_call() -> list:
                return inference_detector(model, [str(p) for p in paths])

            def service_call() -> list:
                reply = session.post(
                    server.url + "/predict",
                    timeout=600,
                    json={"tasks": tasks, "project": "1", "label_config": label_config, "params": {"context": None}},
                )
                reply.raise_for_status()
                return reply.json()["results"]

            results, replies = direct_call(), service_call()  # warm-up: lazy inits, allocator
            direct, service = [], []
            for _ in range(args.rounds):  # interleaved, so that load from elsewhere hits both alike
                direct.append(timed(direct_call))
                service.append(timed(service_call))
        boxes = sum(int((r.pred_instances.scores >= threshold).sum()) for r in results)
        regions = sum(len(r["result"]) for r in replies)

    n = args.images
    d, s = statistics.median(direct), statistics.median(service)
    print(
        f"mmdetection {config} ({weights}) on {device}, "
        f"torch threads {torch.get_num_threads()}, {n} images 640x480/480x640, medians of {args.rounds}"
    )
    print(
        f"  direct inference_detector(model, paths): {d:.3f} s ({1000 * d / n:.0f} ms/image), "
        f"{boxes} boxes >= {threshold}"
    )
    print(f"  service POST /predict ({n} tasks):       {s:.3f} s ({1000 * s / n:.0f} ms/image), {regions} regions")
    print(f"  per-round ratios: {', '.join(f'{b / a:.2f}' for a, b in zip(direct, service))}")
    print(f"  ratio service / direct: {s / d:.3f}x (target <= 1.10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
