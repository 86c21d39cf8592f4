"""A tiny NeMo CTC model trained on speech synthesised here (espeak-ng + sox), saved as ``.nemo``.

No pretrained ASR model can be downloaded on these machines, so tests (and the benchmark) build a
small ``EncDecCTCModel`` (character vocabulary, ConvASR encoder) from a config and train it until it
transcribes its training phrases, in well under two minutes on two CPU cores.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

PHRASES = ["hello world", "open the door", "turn left", "stop now", "yes please", "good morning"]
VOICES = [("en-us", 150, 50), ("en-us", 185, 35), ("en", 165, 65), ("en-us", 130, 50)]  # voice, speed, pitch
VOCABULARY = list(" abcdefghijklmnopqrstuvwxyz'")
RATE = 16000

logger = logging.getLogger(__name__)


def have_tools() -> bool:
    return bool(shutil.which("espeak-ng") and shutil.which("sox"))


def speak(text: str, path: Path, voice: str = "en-us", speed: int = 160, pitch: int = 50) -> Path:
    """espeak-ng's own output (22,050 Hz mono WAV): the service resamples it."""
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
        check=True,
        capture_output=True,
    )
    return path


def sox(*args: str) -> None:
    subprocess.run(["sox", *args], check=True, capture_output=True)


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate: edit distance / reference length."""
    ref, hyp = reference, hypothesis
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(1, len(ref))


def model_config() -> dict:
    conv = {"repeat": 1, "dilation": [1], "dropout": 0.0, "separable": True}
    return {
        "sample_rate": RATE,
        "labels": VOCABULARY,
        "preprocessor": {
            "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            "sample_rate": RATE,
            "normalize": "per_feature",
            "window_size": 0.025,
            "window_stride": 0.01,
            "window": "hann",
            "features": 64,
            "n_fft": 512,
            "frame_splicing": 1,
            "dither": 0.0,
            "pad_to": 0,
        },
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConvASREncoder",
            "feat_in": 64,
            "activation": "relu",
            "conv_mask": True,
            "jasper": [
                {**conv, "filters": 128, "kernel": [11], "stride": [2], "residual": False, "separable": False},
                {**conv, "filters": 128, "kernel": [13], "stride": [1], "residual": True},
                {**conv, "filters": 128, "kernel": [17], "stride": [1], "residual": True},
                {**conv, "filters": 192, "kernel": [1], "stride": [1], "residual": False, "separable": False},
            ],
        },
        "decoder": {
            "_target_": "nemo.collections.asr.modules.ConvASRDecoder",
            "feat_in": 192,
            "num_classes": len(VOCABULARY),
            "vocabulary": VOCABULARY,
        },
    }


def training_set(folder: Path) -> list[tuple[np.ndarray, str]]:
    """Each phrase in each voice, plain and with silence around it, plus a few pairs of phrases with
    a pause between: so the model learns that silence is blank, as in chunks of longer audio."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    speech: dict[tuple[int, int], np.ndarray] = {}
    for p, phrase in enumerate(PHRASES):
        for v, (voice, speed, pitch) in enumerate(VOICES):
            raw = speak(phrase, folder / f"raw-{p}-{v}.wav", voice, speed, pitch)
            resampled = folder / f"train-{p}-{v}.wav"
            sox(str(raw), "-r", str(RATE), "-c", "1", str(resampled))
            speech[(p, v)] = sf.read(str(resampled), dtype="float32")[0]

    def silence(low: float, high: float) -> np.ndarray:
        return np.zeros(int(rng.uniform(low, high) * RATE), dtype=np.float32)

    out = []
    for (p, _), audio in speech.items():
        out.append((audio, PHRASES[p]))
        out.append((np.concatenate([silence(0.2, 1.0), audio, silence(0.2, 1.0)]), PHRASES[p]))
    for p in range(len(PHRASES)):
        q = (p + 1) % len(PHRASES)
        pair = [silence(0.1, 0.5), speech[(p, p % len(VOICES))], silence(0.5, 1.0), speech[(q, p % len(VOICES))]]
        out.append((np.concatenate(pair), f"{PHRASES[p]} {PHRASES[q]}"))
    return out


def train(folder: Path, max_steps: int = 800, target_cer: float = 0.02, seed: int = 0) -> Path:
    """Train on the synthesised phrases until greedy CER on them is at most ``target_cer`` (checked
    every 20 steps) or ``max_steps``; save ``tiny_ctc.nemo`` in ``folder`` and return its path.

    Bounded by steps, not seconds, so a busy machine gets the same model, only later. One thread:
    the model is so small that a second one mostly spins.
    """
    import torch
    from nemo.collections.asr.models import EncDecCTCModel
    from omegaconf import OmegaConf

    torch.manual_seed(seed)
    np.random.seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    data = training_set(folder / "speech")
    model = EncDecCTCModel(cfg=OmegaConf.create(model_config()))
    lengths = torch.tensor([len(a) for a, _ in data])
    signal = torch.zeros(len(data), int(lengths.max()))
    for i, (audio, _) in enumerate(data):
        signal[i, : len(audio)] = torch.from_numpy(audio)
    with torch.no_grad():  # no augmentation and no dither: the features are the same every step
        features, feature_lengths = model.preprocessor(input_signal=signal, length=lengths)
    targets = [[VOCABULARY.index(c) for c in text] for _, text in data]
    target_lengths = torch.tensor([len(t) for t in targets])
    target = torch.zeros(len(data), int(target_lengths.max()), dtype=torch.long)
    for i, t in enumerate(targets):
        target[i, : len(t)] = torch.tensor(t)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    started, cpu, step, score = time.monotonic(), time.process_time(), 0, 1.0
    try:
        while step < max_steps:
            model.train()
            log_probs, encoded_len, _ = model(processed_signal=features, processed_signal_length=feature_lengths)
            loss = model.loss(
                log_probs=log_probs, targets=target, input_lengths=encoded_len, target_lengths=target_lengths
            )
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            step += 1
            if step % 20 == 0:
                score = greedy_cer(model, features, feature_lengths, data)
                logger.info(
                    "step %d loss %.3f cer %.3f (%.0f s, %.0f s CPU)",
                    step,
                    float(loss),
                    score,
                    time.monotonic() - started,
                    time.process_time() - cpu,
                )
                if score <= target_cer:
                    break
    finally:
        torch.set_num_threads(threads)
    model.eval()
    path = folder / "tiny_ctc.nemo"
    model.save_to(str(path))
    logger.info(
        "trained %d steps in %.1f s (%.1f s CPU), training CER %.3f",
        step,
        time.monotonic() - started,
        time.process_time() - cpu,
        score,
    )
    return path


def greedy_cer(model, features, lengths, data) -> float:  # type: ignore[no-untyped-def]
    import torch

    model.eval()
    with torch.no_grad():
        log_probs, encoded_len, predictions = model(processed_signal=features, processed_signal_length=lengths)
    total = 0.0
    for row, length, (_, text) in zip(predictions, encoded_len, data, strict=True):
        ids = row[: int(length)].tolist()
        blank = len(VOCABULARY)
        chars, last = [], None
        for i in ids:
            if i != last and i != blank:
                chars.append(VOCABULARY[i])
            last = i
        total += cer(text, "".join(chars))
    return total / len(data)
