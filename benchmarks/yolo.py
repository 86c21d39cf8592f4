"""yolo: images/s through the service's /predict (a real server process) against ultralytics' own
``YOLO.predict`` on the same image files and weights, and video frames/s of tracking through the service
against ``YOLO.track`` on the same clip. Target: service / direct <= 1.10 for images.

    python benchmarks/yolo.py [--images 8] [--rounds 5] [--frames 40] [--weights yolo11n.pt]

Without --weights (none can be fetched offline) it builds yolo11n from the YAML inside ultralytics with
random weights: the inference cost is that of yolo11n; only the number of regions differs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import requests

from label_studio_ml.testing.plugin import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "services" / "yolo"
IMAGE_CONFIG = """<View><Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image" model_path="{weights}" model_score_threshold="{threshold}">
    <Label value="Object" predicted_values="{names}"/></RectangleLabels></View>"""
VIDEO_CONFIG = """<View><Video name="video" value="$video"/>
  <VideoRectangle name="track" toName="video" model_path="{weights}" model_score_threshold="{threshold}"
                  model_tracker="bytetrack"/>
  <Labels name="kind" toName="video"><Label value="Object" predicted_values="{names}"/></Labels></View>"""


def make_images(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        width, height = (640, 480) if i % 2 == 0 else (480, 640)
        small = rng.integers(0, 255, (height // 16, width // 16, 3), dtype=np.uint8)
        path = folder / f"image{i}.jpg"
        cv2.imwrite(str(path), cv2.resize(small, (width, height)), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def make_video(path: Path, frames: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (640, 480))
    for f in range(frames):
        frame = np.full((480, 640, 3), 60, np.uint8)
        cv2.circle(frame, (100 + 4 * f, 200), 50, (60, 200, 230), -1)
        cv2.rectangle(frame, (500 - 3 * f, 300), (580 - 3 * f, 380), (230, 120, 60), -1)
        writer.write(frame)
    writer.release()


def timed(fn, process: psutil.Process) -> tuple[float, float]:
    """Wall seconds of ``fn()``, and the CPU seconds ``process`` spent meanwhile: the CPU figure holds when
    other work on the machine slows the wall clock of one side more than the other."""
    cpu, started = sum(process.cpu_times()[:2]), time.perf_counter()
    fn()
    return time.perf_counter() - started, sum(process.cpu_times()[:2]) - cpu


def medians(rounds: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in rounds), statistics.median(r[1] for r in rounds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--weights", default="")
    parser.add_argument("--threshold", type=float, default=0.25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = {
            "YOLO_OFFLINE": "1",
            "YOLO_AUTOINSTALL": "false",
            "YOLO_CONFIG_DIR": str(folder / "ultralytics"),
            "LOCAL_FILES_DOCUMENT_ROOT": str(folder),
            "MODEL_DIR": str(folder),
            "LOG_LEVEL": "WARNING",
        }
        os.environ.update({k: v for k, v in env.items() if k.startswith("YOLO_")})
        import torch
        from ultralytics import YOLO

        from label_studio_ml.devices import torch_device

        device = torch_device()
        weights = args.weights
        if not weights:
            weights = str(folder / "yolo11n-random.pt")
            torch.manual_seed(0)
            YOLO("yolo11n.yaml").save(weights)
        model = YOLO(weights)
        names = ",".join(model.names.values())
        paths = make_images(folder, args.images)
        make_video(folder / "clip.mp4", args.frames)
        image_config = IMAGE_CONFIG.format(weights=weights, threshold=args.threshold, names=names)
        video_config = VIDEO_CONFIG.format(weights=weights, threshold=args.threshold, names=names)
        tasks = [{"id": i, "data": {"image": f"/data/local-files/?d={p.name}"}} for i, p in enumerate(paths)]
        video_task = [{"id": 99, "data": {"video": "/data/local-files/?d=clip.mp4"}}]
        with ServerProcess(SERVICE, env={**env, "DEVICE": device}) as server:
            session = requests.Session()

            def service(config: str, batch: list) -> list:
                reply = session.post(
                    server.url + "/predict",
                    timeout=600,
                    json={"tasks": batch, "project": "1", "label_config": config, "params": {"context": None}},
                )
                reply.raise_for_status()
                return reply.json()["results"]

            def direct_images() -> list:
                return model.predict([str(p) for p in paths], device=device, conf=args.threshold, verbose=False)

            def direct_video() -> int:
                stream = model.track(
                    str(folder / "clip.mp4"), stream=True, tracker="bytetrack.yaml", device=device,
                    conf=args.threshold, verbose=False,
                )  # fmt: skip
                return sum(1 for _ in stream)

            me, backend = psutil.Process(), psutil.Process(server.proc.pid)
            results, replies = direct_images(), service(image_config, tasks)  # warm-up: lazy inits, allocator
            direct, served = [], []
            for _ in range(args.rounds):  # interleaved, so that load from elsewhere hits both alike
                direct.append(timed(direct_images, me))
                served.append(timed(lambda: service(image_config, tasks), backend))
            direct_video(), service(video_config, video_task)
            video_direct, video_served = [], []
            for _ in range(3):  # interleaved too
                video_direct.append(timed(direct_video, me))
                video_served.append(timed(lambda: service(video_config, video_task), backend))
            tracks = service(video_config, video_task)[0]["result"]
        boxes = sum(int((r.boxes.conf >= args.threshold).sum()) for r in results)
        regions = sum(len(r["result"]) for r in replies)

    n = args.images
    (d, dc), (s, sc) = medians(direct), medians(served)
    (vd, vdc), (vs, vsc) = medians(video_direct), medians(video_served)
    source = "random-weight yolo11n" if not args.weights else args.weights
    print(f"yolo: {source} on {device}, torch threads {torch.get_num_threads()}, medians of {args.rounds}")
    print(
        f"  direct YOLO.predict({n} image paths): {d:.3f} s wall ({n / d:.1f} images/s), {dc:.3f} s CPU, {boxes} boxes"
    )
    print(f"  service POST /predict ({n} tasks):      {s:.3f} s wall ({n / s:.1f} images/s), {sc:.3f} s CPU")
    print(f"  {regions} regions served")
    print(f"  per-round wall ratios: {', '.join(f'{b[0] / a[0]:.2f}' for a, b in zip(direct, served))}")
    print(f"  ratio service / direct: {s / d:.3f}x wall, {sc / dc:.3f}x CPU (target <= 1.10x)")
    frames = args.frames
    print(f"  video 640x480, {frames} frames, ByteTrack (medians of 3):")
    print(f"    direct YOLO.track(stream=True): {vd:.2f} s wall ({frames / vd:.1f} frames/s), {vdc:.2f} s CPU")
    print(f"    service POST /predict:          {vs:.2f} s wall ({frames / vs:.1f} frames/s), {vsc:.2f} s CPU")
    print(f"    {len(tracks)} tracks served")
    print(f"    ratio service / direct: {vs / vd:.3f}x wall, {vsc / vdc:.3f}x CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
