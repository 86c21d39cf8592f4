"""Segment Anything: first click versus further clicks on the same image; the service versus transformers.

    .tox/shared-torch/bin/python benchmarks/segment_anything.py         # SAM ViT-B shape, random weights
    SAM_MODEL=facebook/sam-vit-base .tox/shared-torch/bin/python benchmarks/segment_anything.py

Without ``SAM_MODEL`` a checkpoint with SAM ViT-B's architecture and random weights is built (no
download; the timings are those of the real network, the masks are meaningless). The service is driven
through its HTTP app (Starlette TestClient: JSON, media resolution, RLE, region validation included);
"direct" is the same work with transformers alone (processor, encoder once per image, prompt encoder and
mask decoder per click, mask post-processing). Figures are medians.
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
import torch
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services" / "segment_anything"))

CONFIG = """<View><Image name="image" value="$image"/>
<BrushLabels name="brush" toName="image"><Label value="Object"/></BrushLabels>
<KeyPointLabels name="kp" toName="image" smart="true"><Label value="Object"/></KeyPointLabels></View>"""


def random_checkpoint(folder: Path) -> Path:
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    torch.manual_seed(0)
    SamModel(SamConfig()).save_pretrained(folder)  # the default config has ViT-B's encoder
    SamProcessor(SamImageProcessor()).save_pretrained(folder)
    return folder


def make_image(folder: Path, name: str, width: int, height: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 16, width // 16, 3), dtype=np.uint8)
    path = folder / name
    Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR).save(path, quality=90)
    return path


def click(x: float, y: float, width: int, height: int) -> dict:
    return {
        "result": [
            {
                "id": "k",
                "from_name": "kp",
                "to_name": "image",
                "type": "keypointlabels",
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "is_positive": True,
                "value": {"x": x, "y": y, "width": 1, "keypointlabels": ["Object"]},
            }
        ]
    }


def timed(fn, *args):  # type: ignore[no-untyped-def]
    """(seconds, result) of one call."""
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3, help="distinct images (first clicks) per side")
    parser.add_argument("--clicks", type=int, default=10, help="further clicks per image")
    parser.add_argument("--size", default="1024x768", help="image size WxH")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import SamModel, SamProcessor

    from label_studio_ml.results.brush import mask_to_rle
    from label_studio_ml.testing.plugin import model_client

    from model import SegmentAnything

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        given = os.environ.get("SAM_MODEL", "")
        checkpoint = given or str(random_checkpoint(tmp_path / "sam"))
        os.environ["SAM_MODEL"] = checkpoint
        images = [make_image(tmp_path, f"img{i}.jpg", width, height, seed=i) for i in range(2 * args.images + 2)]
        points = [(20 + 60 * ((7 * i) % 10) / 10, 20 + 60 * ((3 * i) % 10) / 10) for i in range(args.clicks)]

        with model_client(SegmentAnything, tmp_path / "model_dir", local_files_document_root=tmp) as client:
            device = client.runtime.resources.device

            # --- the service, through its HTTP app -----------------------------------------------
            def predict(name: str, x: float, y: float) -> None:
                reply = client.post(
                    "/predict",
                    json={
                        "tasks": [{"id": 1, "data": {"image": f"/data/local-files/?d={name}"}}],
                        "label_config": CONFIG,
                        "params": {"context": click(x, y, width, height)},
                    },
                )
                assert reply.status_code == 200 and reply.json()["results"][0]["result"], reply.text

            # --- transformers directly -----------------------------------------------------------
            processor = SamProcessor.from_pretrained(checkpoint)
            model = SamModel.from_pretrained(checkpoint).to(device).eval()

            def encode(path: Path) -> tuple:  # type: ignore[type-arg]
                image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
                inputs = processor(images=image, return_tensors="pt")
                with torch.inference_mode():
                    embeddings = model.get_image_embeddings(inputs["pixel_values"].to(device))
                return embeddings, inputs["original_sizes"], inputs["reshaped_input_sizes"]

            def segment(encoded: tuple, x: float, y: float) -> np.ndarray:  # type: ignore[type-arg]
                embeddings, original, reshaped = encoded
                sy, sx = (float(r) / float(o) for r, o in zip(reshaped[0], original[0], strict=True))
                point = torch.tensor([[[[x * width / 100 * sx, y * height / 100 * sy]]]], device=device)
                with torch.inference_mode():
                    out = model(image_embeddings=embeddings, input_points=point, multimask_output=True)
                best = int(out.iou_scores[0, 0].argmax())
                masks = processor.post_process_masks(out.pred_masks[:, :, best : best + 1].cpu(), original, reshaped)
                return masks[0][0, 0].numpy()

            def first_click(path: Path) -> tuple:  # type: ignore[type-arg]
                encoded = encode(path)
                segment(encoded, 50, 50)
                return encoded

            predict(images[-1].name, 50, 50)  # warm-up
            first_click(images[-2])
            # interleaved, so that both sides see the same load on the machine
            service_first, service_next, direct_first, direct_next, rle, runs = [], [], [], [], [], []
            for i in range(args.images):
                service_first.append(timed(predict, images[i].name, 50, 50)[0])
                seconds, encoded = timed(first_click, images[args.images + i])
                direct_first.append(seconds)
                for x, y in points:
                    service_next.append(timed(predict, images[i].name, x, y)[0])
                    seconds, mask = timed(segment, encoded, x, y)
                    direct_next.append(seconds)
                    # the encoding LS needs, timed apart: its cost depends on the mask's shape
                    rle.append(timed(mask_to_rle, mask)[0])
                    runs.append(int(np.count_nonzero(np.diff(mask.reshape(-1).astype(np.int8)))) + 1)
            cache = client.runtime.resources.cache
            assert cache.misses == args.images + 1, "every further click hit the embedding cache"

    sf, sn = statistics.median(service_first), statistics.median(service_next)
    df, dn = statistics.median(direct_first), statistics.median(direct_next)
    dr = statistics.median(d + r for d, r in zip(direct_next, rle, strict=True))
    print(
        f"segment_anything on {device} ({torch.get_num_threads()} threads), image {width}x{height}, "
        f"checkpoint {given or 'SAM ViT-B architecture, random weights'}; medians of {args.images} first "
        f"and {args.images * args.clicks} further clicks"
    )
    print(f"{'':34}{'service':>10}{'direct':>10}{'service/direct':>16}")
    print(f"{'first click (encoder)':34}{sf * 1000:>8.0f}ms{df * 1000:>8.0f}ms{sf / df:>15.2f}x")
    print(f"{'further click, cached embedding':34}{sn * 1000:>8.0f}ms{dn * 1000:>8.0f}ms{sn / dn:>15.2f}x")
    print(f"{'  direct + LS RLE encoding':34}{'':>10}{dr * 1000:>8.0f}ms{sn / dr:>15.2f}x")
    print(
        f"LS RLE encoding alone: {statistics.median(rle) * 1000:.0f} ms for masks of "
        f"{statistics.median(runs):.0f} runs (random weights give ragged masks; an object mask has a few "
        f"thousand runs)"
    )
    print(f"first / further click: service {sf / sn:.1f}x faster, direct {df / dn:.1f}x")


if __name__ == "__main__":
    main()
