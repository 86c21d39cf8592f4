"""Grounding DINO: batch pre-annotation through the service versus transformers called directly.

    .tox/shared-torch/bin/python benchmarks/grounding_dino.py       # grounding-dino-tiny shape, random weights
    GROUNDING_DINO_MODEL=IDEA-Research/grounding-dino-tiny .tox/shared-torch/bin/python benchmarks/grounding_dino.py

Without ``GROUNDING_DINO_MODEL`` a checkpoint with grounding-dino-tiny's architecture (Swin-T backbone,
BERT-base text encoder; a small vocabulary) and random weights is built: real compute, meaningless boxes.
One request of N tasks goes through the service's HTTP app (media, batching, label mapping, region
validation); "direct" runs the same batches through the processor, the model and the post-processor.
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
sys.path.insert(0, str(ROOT / "services" / "grounding_dino"))

CONFIG = """<View><Image name="image" value="$image"/>
<TextArea name="prompt" toName="image"/>
<RectangleLabels name="label" toName="image"><Label value="Cat"/><Label value="Dog"/></RectangleLabels></View>"""
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "cat", "dog"]


def random_checkpoint(folder: Path) -> Path:
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    torch.manual_seed(0)
    backbone = SwinConfig(
        embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7, out_indices=[2, 3, 4]
    )  # Swin-T, as in grounding-dino-tiny
    text = BertConfig(vocab_size=len(WORDS))  # BERT-base layers; only the vocabulary is small
    config = GroundingDinoConfig(backbone_config=backbone, text_config=text)
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(WORDS)}, do_lower_case=True)
    GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(), tokenizer=tokenizer).save_pretrained(folder)
    return folder


def make_image(folder: Path, name: str, width: int, height: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 16, width // 16, 3), dtype=np.uint8)
    path = folder / name
    Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR).save(path, quality=90)
    return path


def timed(fn, *args):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=8, help="tasks in one /predict request")
    parser.add_argument("--repeat", type=int, default=3, help="requests per side (median)")
    parser.add_argument("--size", default="640x480", help="image size WxH")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    from label_studio_ml.testing.plugin import model_client

    from model import GroundingDinoModel

    prompt, box_threshold, text_threshold = "cat . dog .", 0.35, 0.25
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        given = os.environ.get("GROUNDING_DINO_MODEL", "")
        checkpoint = given or str(random_checkpoint(tmp_path / "dino"))
        os.environ["GROUNDING_DINO_MODEL"] = checkpoint
        paths = [make_image(tmp_path, f"img{i}.jpg", width, height, seed=i) for i in range(args.tasks)]
        tasks = [{"id": i, "data": {"image": f"/data/local-files/?d={p.name}"}} for i, p in enumerate(paths)]
        context = {
            "result": [{"from_name": "prompt", "to_name": "image", "type": "textarea", "value": {"text": [prompt]}}]
        }

        with model_client(GroundingDinoModel, tmp_path / "model_dir", local_files_document_root=tmp) as client:
            dino = client.runtime.resources
            device, batch_size = dino.device, dino.batch_size

            def predict() -> int:
                reply = client.post(
                    "/predict", json={"tasks": tasks, "label_config": CONFIG, "params": {"context": context}}
                )
                assert reply.status_code == 200, reply.text
                return sum(len(r["result"]) for r in reply.json()["results"])

            processor = AutoProcessor.from_pretrained(checkpoint)
            model = AutoModelForZeroShotObjectDetection.from_pretrained(checkpoint).to(device).eval()

            def direct() -> int:
                images = [ImageOps.exif_transpose(Image.open(p)).convert("RGB") for p in paths]
                found = 0
                for start in range(0, len(images), batch_size):
                    batch = images[start : start + batch_size]
                    inputs = processor(images=batch, text=[prompt] * len(batch), padding=True, return_tensors="pt").to(
                        device
                    )
                    with torch.inference_mode():
                        outputs = model(**inputs)
                    results = processor.post_process_grounded_object_detection(
                        outputs,
                        inputs["input_ids"],
                        threshold=box_threshold,
                        text_threshold=text_threshold,
                        target_sizes=[(image.height, image.width) for image in batch],
                    )
                    found += sum(len(r["boxes"]) for r in results)
                return found

            predict()  # warm-up
            direct()
            service, lib = [], []
            for _ in range(args.repeat):  # interleaved, so that both sides see the same load on the machine
                service.append(timed(predict))
                lib.append(timed(direct))

    s, d = statistics.median(t for t, _ in service), statistics.median(t for t, _ in lib)
    print(
        f"grounding_dino on {device} ({torch.get_num_threads()} threads), {args.tasks} images {width}x{height} "
        f"in batches of {batch_size}, checkpoint {given or 'grounding-dino-tiny architecture, random weights'}"
    )
    print(f"service  {s:8.2f} s per request ({1000 * s / args.tasks:.0f} ms/image), {service[0][1]} regions kept")
    print(f"direct   {d:8.2f} s per request ({1000 * d / args.tasks:.0f} ms/image), {lib[0][1]} boxes")
    print(f"service/direct {s / d:.2f}x")


if __name__ == "__main__":
    main()
