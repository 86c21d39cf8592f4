"""Speech transcription with a NeMo ASR model: ``Audio`` -> ``TextArea``, optionally per-segment
``Labels`` regions with start/end times (and per-region transcripts when the TextArea is perRegion).

``NEMO_MODEL`` names a pretrained model (``from_pretrained``) or a ``.nemo`` file (``restore_from``),
loaded once per process. Audio is fetched through core's media helper, decoded with soundfile (librosa
for other formats), mixed to mono and resampled to the model's rate. Long audio is cut into chunks of
at most ``NEMO_CHUNK_SECONDS`` (at the quietest moment near each boundary, so words are rarely split),
and the chunks of all tasks go through ``transcribe`` together in batches. A time budget keeps one
request under LS's 100 s predict timeout: tasks not reached in time get an empty result and an error
in the log naming them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.errors import LabelConfigError, MediaError
from label_studio_ml.results import regions
from label_studio_ml.results.label_config import ControlPair

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "nvidia/stt_en_conformer_ctc_small"
#: NeMo pads inputs shorter than this on both sides (shifting timestamps): we pad at the end instead
MIN_CHUNK_SECONDS = 1.0


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value.strip() else default


@dataclass
class Chunk:
    task: int  # index of the task in the request
    offset: float  # seconds from the start of the task's audio
    samples: np.ndarray


@dataclass
class Word:
    text: str
    start: float
    end: float


@dataclass
class Transcript:
    text: str = ""
    words: list[Word] = field(default_factory=list)
    duration: float = 0.0


class NemoASR(LabelStudioMLBase):
    service_name = "nemo"

    _lock = threading.Lock()  # one transcribe at a time: NeMo changes model state while it runs

    @classmethod
    def load(cls) -> Any:
        import torch
        from nemo.collections.asr.models import ASRModel

        name = os.environ.get("NEMO_MODEL", DEFAULT_MODEL).strip()
        device = os.environ.get("NEMO_DEVICE", "").strip() or ("cuda" if torch.cuda.is_available() else "cpu")
        started = time.monotonic()
        if name.endswith(".nemo") or Path(name).is_file():
            if not Path(name).is_file():
                raise FileNotFoundError(f"NEMO_MODEL={name}: no such .nemo file")
            model = ASRModel.restore_from(name, map_location=torch.device(device))
        else:
            model = ASRModel.from_pretrained(name, map_location=torch.device(device))
        model.eval()
        sample_rate = int(model.cfg.get("sample_rate") or model.cfg.preprocessor.sample_rate)
        logger.info(
            "NeMo model %s (%s) on %s at %d Hz loaded in %.1f s",
            name,
            type(model).__name__,
            device,
            sample_rate,
            time.monotonic() - started,
        )
        return {"model": model, "name": name, "sample_rate": sample_rate, "device": device}

    def setup(self) -> None:
        self.text_pair = self.config.find("TextArea", "Audio", required=False)
        self.labels_pair = self.config.find("Labels", "Audio", required=False)
        if self.text_pair is None and self.labels_pair is None:
            raise LabelConfigError("nemo needs a TextArea (and/or Labels) on an Audio object")
        if (
            self.text_pair is not None
            and self.labels_pair is not None
            and self.text_pair.to_name != self.labels_pair.to_name
        ):
            self.labels_pair = None  # segments only where the transcript goes
        self.per_region = self._per_region()
        self.chunk_seconds = env_float("NEMO_CHUNK_SECONDS", 30.0)
        self.batch_size = int(env_float("NEMO_BATCH_SIZE", 8))
        self.budget = env_float("NEMO_PREDICT_BUDGET", 85.0)
        self.pause = env_float("NEMO_SEGMENT_PAUSE", 0.6)
        self.segment_max = env_float("NEMO_SEGMENT_MAX_SECONDS", 15.0)

    def _per_region(self) -> bool:
        if self.text_pair is None:
            return False
        import xml.etree.ElementTree as ET

        for el in ET.fromstring(self.label_config).iter("TextArea"):
            if el.get("name") == self.text_pair.from_name:
                return el.get("perRegion", "").lower() == "true"
        return False

    @property
    def audio_pair(self) -> ControlPair:
        return self.text_pair or self.labels_pair  # type: ignore[return-value]

    # --- audio -----------------------------------------------------------------------------------
    def read_audio(self, task: dict[str, Any]) -> np.ndarray:
        """The task's audio as mono float32 at the model's sample rate."""
        url = (task.get("data") or {}).get(self.audio_pair.data_key)
        if not isinstance(url, str) or not url:
            raise MediaError(f"task {task.get('id')} has no audio in data[{self.audio_pair.data_key!r}]")
        path = self.get_local_path(url, task_id=task.get("id"))
        return load_audio(path, self.resources["sample_rate"])

    def chunks(self, index: int, audio: np.ndarray) -> list[Chunk]:
        rate = self.resources["sample_rate"]
        out = []
        for start, end in split_points(audio, rate, self.chunk_seconds):
            piece = audio[start:end]
            if len(piece) < MIN_CHUNK_SECONDS * rate:
                piece = np.pad(piece, (0, int(MIN_CHUNK_SECONDS * rate) - len(piece)))
            out.append(Chunk(index, start / rate, piece))
        return out

    # --- predict ---------------------------------------------------------------------------------
    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        started = time.monotonic()
        transcripts = self.transcribe_tasks(tasks, deadline=started + self.budget)
        out = []
        for transcript in transcripts:
            if transcript is None:
                out.append({"result": [], "score": None})
            else:
                out.append({"result": self.regions(transcript), "score": None})
        return out

    def transcribe_tasks(self, tasks: list[dict[str, Any]], deadline: float) -> list[Transcript | None]:
        """Transcripts in task order (None: no audio, or not reached within the budget).

        Tasks are read one after the other and their chunks queued; a full batch goes to the model
        at once, so memory holds about one batch of audio plus the task being read, whatever the
        number of tasks. No batch starts when it would likely end after ``deadline``.
        """
        rate = self.resources["sample_rate"]
        transcripts: list[Transcript | None] = [None] * len(tasks)
        pieces: list[list[tuple[float, Transcript]]] = [[] for _ in tasks]
        remaining = [0] * len(tasks)
        pending: list[Chunk] = []
        slowest, chunks_done, seconds = 0.0, 0, 0.0
        started = time.monotonic()

        def run(batch: list[Chunk]) -> bool:
            nonlocal slowest, chunks_done
            if time.monotonic() + slowest > deadline:
                return False
            began = time.monotonic()
            for chunk, hyp in zip(batch, self._transcribe([c.samples for c in batch]), strict=True):
                pieces[chunk.task].append((chunk.offset, hyp))
                remaining[chunk.task] -= 1
            slowest = max(slowest, time.monotonic() - began)
            chunks_done += len(batch)
            return True

        in_time, unreadable = True, set()
        for i, task in enumerate(tasks):
            try:
                audio = self.read_audio(task)
            except MediaError as exc:
                logger.error("task %s: no transcript: %s", task.get("id"), exc.reason)
                unreadable.add(i)
                continue
            chunks = self.chunks(i, audio)
            transcripts[i] = Transcript(duration=len(audio) / rate)
            remaining[i] = len(chunks)
            seconds += len(audio) / rate
            pending.extend(chunks)
            while len(pending) >= self.batch_size:
                in_time = run(pending[: self.batch_size])
                if not in_time:
                    break
                del pending[: self.batch_size]
            if not in_time:
                break
        if pending and in_time:
            in_time = run(pending)
        if not in_time:
            unfinished = [
                tasks[i].get("id")
                for i in range(len(tasks))
                if i not in unreadable and (transcripts[i] is None or remaining[i])
            ]
            logger.error(
                "NEMO_PREDICT_BUDGET (%.0f s) spent after %d chunk(s) of %.1f s of audio: tasks %s get no "
                "transcript in this request (LS gives up at 100 s). Use a GPU (NEMO_DEVICE), a smaller "
                "model, or fewer tasks per request.",
                self.budget,
                chunks_done,
                seconds,
                unfinished,
            )
        logger.info(
            "transcribed %d chunk(s), %.1f s of audio, in %.2f s", chunks_done, seconds, time.monotonic() - started
        )
        for i, transcript in enumerate(transcripts):
            if transcript is None or remaining[i]:
                transcripts[i] = None
                continue
            parts = sorted(pieces[i], key=lambda p: p[0])
            transcript.text = " ".join(p.text for _, p in parts if p.text).strip()
            transcript.words = [Word(w.text, w.start + offset, w.end + offset) for offset, p in parts for w in p.words]
        return transcripts

    def _transcribe(self, audio: list[np.ndarray]) -> list[Transcript]:
        model = self.resources["model"]
        with self._lock:
            hypotheses = model.transcribe(
                audio,
                batch_size=self.batch_size,
                return_hypotheses=True,
                timestamps=bool(self.labels_pair),
                verbose=False,
            )
        if isinstance(hypotheses, tuple):  # RNNT models: (best, all)
            hypotheses = hypotheses[0]
        out = []
        for hyp in hypotheses:
            text = hyp if isinstance(hyp, str) else (hyp.text or "")
            words = []
            stamps = getattr(hyp, "timestamp", None) or {}
            for w in stamps.get("word", []) if isinstance(stamps, dict) else []:
                if w.get("start") is not None and w.get("end") is not None:
                    words.append(Word(str(w.get("word", "")), float(w["start"]), float(w["end"])))
            out.append(Transcript(text=" ".join(text.split()), words=words))
        return out

    # --- regions ---------------------------------------------------------------------------------
    def segments(self, transcript: Transcript) -> list[tuple[float, float, str]]:
        """Words grouped into segments at pauses of NEMO_SEGMENT_PAUSE s, sentence ends, or
        NEMO_SEGMENT_MAX_SECONDS."""
        segments: list[list[Word]] = []
        for word in transcript.words:
            current = segments[-1] if segments else None
            if (
                current
                and word.start - current[-1].end < self.pause
                and word.end - current[0].start <= self.segment_max
                and not current[-1].text.endswith((".", "?", "!"))
            ):
                current.append(word)
            else:
                segments.append([word])
        return [
            (round(max(0.0, s[0].start), 3), round(min(transcript.duration, s[-1].end), 3), " ".join(w.text for w in s))
            for s in segments
        ]

    def regions(self, transcript: Transcript) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = []
        if self.text_pair is not None and not self.per_region and transcript.text:
            result.append(regions.textarea(self.text_pair, transcript.text))
        if self.labels_pair is None or not self.labels_pair.labels:
            return result
        label = self.labels_pair.labels[0]
        for start, end, text in self.segments(transcript):
            if end <= start:
                continue
            region = regions.region_id()
            value = {"start": start, "end": end, "channel": 0}
            result.append(
                {
                    "id": region,
                    "from_name": self.labels_pair.from_name,
                    "to_name": self.labels_pair.to_name,
                    "type": "labels",
                    "value": {**value, "labels": [label]},
                }
            )
            if self.text_pair is not None and self.per_region:
                result.append(
                    {
                        "id": region,
                        "from_name": self.text_pair.from_name,
                        "to_name": self.text_pair.to_name,
                        "type": "textarea",
                        "value": {**value, "text": [text]},
                    }
                )
        return result


def load_audio(path: str | Path, rate: int) -> np.ndarray:
    """Decode, mix to mono and resample to ``rate`` (float32 in [-1, 1])."""
    import soundfile as sf

    try:
        data, source_rate = sf.read(str(path), dtype="float32", always_2d=True)
        data = data.mean(axis=1)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        import librosa  # mp3/m4a and other formats libsndfile cannot read (via audioread/ffmpeg)

        try:
            data, source_rate = librosa.load(str(path), sr=None, mono=True)
        except Exception as exc:  # librosa raises many types for undecodable input
            raise MediaError(f"{Path(path).name} is not audio that can be decoded: {type(exc).__name__}") from None
    if source_rate != rate:
        import librosa

        data = librosa.resample(np.asarray(data, dtype=np.float32), orig_sr=source_rate, target_sr=rate)
    return np.ascontiguousarray(data, dtype=np.float32)


def split_points(
    audio: np.ndarray,
    rate: int,
    chunk_seconds: float,
    search_seconds: float = 2.0,
    frame_seconds: float = 0.02,
    smooth_frames: int = 10,
) -> list[tuple[int, int]]:
    """(start, end) sample ranges of at most ``chunk_seconds`` covering ``audio``, each cut at the
    quietest moment (frame energy averaged over ``smooth_frames``, so the cut lands inside a pause
    rather than at a word's quiet consonant) of the last ``search_seconds`` before the limit."""
    limit = max(1, int(chunk_seconds * rate))
    if len(audio) <= limit:
        return [(0, len(audio))]
    frame = max(1, int(frame_seconds * rate))
    search = min(int(search_seconds * rate), limit // 2)
    out, start = [], 0
    while len(audio) - start > limit:
        lo, hi = start + limit - search, start + limit
        frames = (hi - lo) // frame
        if frames < 1:
            cut = hi
        else:
            energy = (audio[lo : lo + frames * frame].reshape(frames, frame).astype(np.float64) ** 2).mean(axis=1)
            width = max(1, min(smooth_frames, frames))
            smoothed = np.convolve(energy, np.ones(width) / width, mode="same")
            cut = lo + int(np.argmin(smoothed)) * frame + frame // 2
        out.append((start, cut))
        start = cut
    out.append((start, len(audio)))
    return out
