"""nemo service versus NeMo's ``transcribe`` called directly, on the same audio and model.

    .tox/nemo/bin/python benchmarks/nemo.py [--model FILE.nemo|NAME] [--tasks 24] [--repeat 3]

Without --model it trains the tests' tiny CTC model on synthesised speech first (needs espeak-ng and
sox). Direct: ``model.transcribe(paths, batch_size=8)`` (NeMo reads and resamples the files itself).
Service: ``POST /predict`` through the real app (in-process ASGI client): media fetch, decoding,
resampling, chunking, batching, region building and validation included. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# this file is nemo.py: keep its folder off the path, or ``import nemo`` would find it instead of NeMo
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path[:0] = [str(ROOT / "services" / "nemo"), str(ROOT / "services" / "nemo" / "tests")]

CONFIG = """<View><Audio name="audio" value="$audio"/>
<TextArea name="transcription" toName="audio"/></View>"""


def median_time(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="")
    parser.add_argument("--tasks", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import numpy as np
    import soundfile as sf
    from tiny_asr import PHRASES, VOICES, speak, train

    work = Path(tempfile.mkdtemp(prefix="bench-nemo-"))
    if args.model:
        model_path = args.model
    else:
        started = time.perf_counter()
        model_path = str(train(work / "model"))
        print(f"tiny CTC model trained in {time.perf_counter() - started:.1f} s")
    os.environ["NEMO_MODEL"] = model_path
    media = work / "media"
    media.mkdir()
    files = []
    for i in range(args.tasks):
        path = media / f"task-{i}.wav"
        speak(PHRASES[i % len(PHRASES)], path, *VOICES[i % len(VOICES)])
        files.append(path)
    rate = sf.info(str(files[0])).samplerate
    long_audio = np.concatenate(
        [np.concatenate([sf.read(str(f), dtype="float32")[0], np.zeros(rate // 2, np.float32)]) for f in files * 3]
    )
    sf.write(str(media / "long.wav"), long_audio, rate)
    seconds = sum(sf.info(str(f)).duration for f in files)

    from label_studio_ml.testing.plugin import model_client

    from model import NemoASR

    with model_client(NemoASR, work / "model_dir", local_files_document_root=str(media)) as client:
        nemo_model = client.runtime.resources["model"]

        def direct(paths: list[Path]) -> None:
            nemo_model.transcribe([str(p) for p in paths], batch_size=8, verbose=False)

        def service(names: list[str]) -> None:
            tasks = [{"id": i, "data": {"audio": f"/data/local-files/?d={n}"}} for i, n in enumerate(names)]
            reply = client.post("/predict", json={"tasks": tasks, "label_config": CONFIG, "project": "1"})
            assert reply.status_code == 200 and len(reply.json()["results"]) == len(tasks), reply.text

        names = [f.name for f in files]
        chunk = os.environ.get("NEMO_CHUNK_SECONDS", "30")
        direct(files[:2])
        service(names[:2])  # warm-up
        rows = [
            (
                f"{args.tasks} tasks, {seconds:.0f} s of speech, one request",
                median_time(lambda: direct(files), args.repeat),
                median_time(lambda: service(names), args.repeat),
            ),
            (
                "1 task, 1 phrase (interactive-sized)",
                median_time(lambda: direct(files[:1]), args.repeat),
                median_time(lambda: service(names[:1]), args.repeat),
            ),
            (
                f"1 task of {len(long_audio) / rate:.0f} s (service: {chunk} s chunks)",
                median_time(lambda: direct([media / "long.wav"]), args.repeat),
                median_time(lambda: service(["long.wav"]), args.repeat),
            ),
        ]
    print(f"model {model_path}, {len(files)} files at {rate} Hz, median of {args.repeat}")
    print(f"{'case':<58} {'direct':>9} {'service':>9} {'ratio':>6}")
    for name, d, s in rows:
        print(f"{name:<58} {d * 1000:8.0f}ms {s * 1000:8.0f}ms {s / d:6.2f}")


if __name__ == "__main__":
    main()
