from __future__ import annotations

import logging
import re
import shutil
import time

import numpy as np
import pytest
import soundfile as sf
from tiny_asr import PHRASES, VOICES, cer, sox, speak

from label_studio_ml.testing.plugin import FakeLabelStudio, assert_conformant

from model import NemoASR, load_audio, split_points

TEXT_CONFIG = """<View>
  <Audio name="audio" value="$audio"/>
  <TextArea name="transcription" toName="audio" rows="3" editable="true"/>
</View>"""
SEGMENT_CONFIG = """<View>
  <Audio name="audio" value="$audio"/>
  <Labels name="speech" toName="audio"><Label value="Speech"/></Labels>
  <TextArea name="transcription" toName="audio" perRegion="true" rows="2" editable="true"/>
</View>"""
GLOBAL_AND_SEGMENTS = SEGMENT_CONFIG.replace(' perRegion="true"', "")


@pytest.fixture
def client(make_client, monkeypatch, tiny_model, media_root):
    monkeypatch.setenv("NEMO_MODEL", str(tiny_model))
    return make_client(NemoASR, local_files_document_root=str(media_root))


def local(name: str) -> str:
    return f"/data/local-files/?d={name}"


def transcript(prediction: dict) -> str:
    return next(r["value"]["text"][0] for r in prediction["result"] if r["type"] == "textarea")


def test_loads_the_nemo_file_and_transcribes_each_training_phrase(client, media_root):
    tasks = [{"id": i, "data": {"audio": local(f"phrase-{i}.wav")}} for i in range(len(PHRASES))]
    results = assert_conformant(client, TEXT_CONFIG, tasks)
    texts = [transcript(r) for r in results]
    errors = [cer(p, t) for p, t in zip(PHRASES, texts, strict=True)]
    assert sum(errors) / len(errors) < 0.1, list(zip(PHRASES, texts, strict=True))
    assert all(e < 0.3 for e in errors), list(zip(PHRASES, texts, strict=True))
    health = client.get("/health").json()
    assert health["status"] == "UP" and health["model_class"] == "NemoASR"


def test_stereo_44k_flac_is_mixed_down_and_resampled(client, media_root):
    sox(str(media_root / "phrase-1.wav"), "-r", "44100", "-c", "2", str(media_root / "stereo.flac"))
    info = sf.info(str(media_root / "stereo.flac"))
    assert (info.samplerate, info.channels) == (44100, 2)
    audio = load_audio(media_root / "stereo.flac", 16000)
    assert audio.ndim == 1 and audio.dtype == np.float32
    assert abs(len(audio) / 16000 - info.duration) < 0.01
    results = assert_conformant(client, TEXT_CONFIG, [{"id": 1, "data": {"audio": local("stereo.flac")}}])
    assert cer(PHRASES[1], transcript(results[0])) < 0.3


def test_long_audio_is_chunked_and_segments_carry_times(make_client, monkeypatch, tiny_model, media_root):
    """~8 s of four phrases with pauses, cut into chunks of at most 2.5 s: every phrase comes back, in
    order, as a segment at the time it is spoken, with its own per-region transcript."""
    monkeypatch.setenv("NEMO_MODEL", str(tiny_model))
    monkeypatch.setenv("NEMO_CHUNK_SECONDS", "2.5")
    client = make_client(NemoASR, local_files_document_root=str(media_root))
    order = [0, 2, 4, 1]
    starts, audio, rate = [], [], 22050
    for i in order:
        data, rate = sf.read(str(media_root / f"phrase-{i}.wav"), dtype="float32")
        pause = np.zeros(int(0.9 * rate), dtype=np.float32)
        starts.append(sum(len(a) for a in audio) / rate + len(pause) / rate)
        audio += [pause, data]
    audio.append(np.zeros(int(0.5 * rate), dtype=np.float32))
    sf.write(str(media_root / "long.wav"), np.concatenate(audio), rate)
    duration = sum(len(a) for a in audio) / rate
    assert duration > 3 * 2.5

    calls = []
    model = client.runtime.resources["model"]
    original = model.transcribe
    monkeypatch.setattr(model, "transcribe", lambda audio, **kw: calls.append(len(audio)) or original(audio, **kw))
    results = assert_conformant(client, SEGMENT_CONFIG, [{"id": 1, "data": {"audio": local("long.wav")}}])
    assert calls and calls[0] >= 4, "the chunks went through transcribe together"
    labels = [r for r in results[0]["result"] if r["type"] == "labels"]
    texts = {r["id"]: r["value"]["text"][0] for r in results[0]["result"] if r["type"] == "textarea"}
    assert len(labels) == len(order), [(r["value"], texts.get(r["id"])) for r in labels]
    for region, start, i in zip(labels, starts, order, strict=True):
        value = region["value"]
        assert value["labels"] == ["Speech"] and value["channel"] == 0
        assert abs(value["start"] - start) < 0.4, (value, start)
        assert value["start"] < value["end"] <= duration
        assert cer(PHRASES[i], texts[region["id"]]) < 0.3, texts[region["id"]]
    assert [r["value"]["start"] for r in labels] == sorted(r["value"]["start"] for r in labels)


def test_global_transcript_and_segments_together(client, media_root):
    results = assert_conformant(client, GLOBAL_AND_SEGMENTS, [{"id": 1, "data": {"audio": local("phrase-3.wav")}}])
    kinds = sorted(r["type"] for r in results[0]["result"])
    assert kinds == ["labels", "textarea"]
    assert "start" not in next(r for r in results[0]["result"] if r["type"] == "textarea")["value"]
    assert cer(PHRASES[3], transcript(results[0])) < 0.3


def test_tasks_are_batched_into_one_transcribe_call(client, monkeypatch):
    model = client.runtime.resources["model"]
    original, calls = model.transcribe, []
    monkeypatch.setattr(model, "transcribe", lambda audio, **kw: calls.append(len(audio)) or original(audio, **kw))
    tasks = [{"id": i, "data": {"audio": local(f"phrase-{i % len(PHRASES)}.wav")}} for i in range(6)]
    assert_conformant(client, TEXT_CONFIG, tasks)
    assert calls == [6]


def test_unreadable_audio_gives_that_task_an_empty_result(client, media_root, caplog):
    (media_root / "broken.wav").write_bytes(b"RIFF not really audio")
    tasks = [
        {"id": 1, "data": {"audio": local("phrase-0.wav")}},
        {"id": 2, "data": {"audio": local("broken.wav")}},
        {"id": 3, "data": {"audio": local("missing.wav")}},
    ]
    results = assert_conformant(client, TEXT_CONFIG, tasks)
    assert cer(PHRASES[0], transcript(results[0])) < 0.3
    assert results[1]["result"] == [] and results[2]["result"] == []
    assert "task 2: no transcript" in caplog.text


def test_predict_budget_is_reported_instead_of_an_ls_timeout(make_client, monkeypatch, tiny_model, media_root, caplog):
    monkeypatch.setenv("NEMO_MODEL", str(tiny_model))
    monkeypatch.setenv("NEMO_PREDICT_BUDGET", "0")
    client = make_client(NemoASR, local_files_document_root=str(media_root))
    caplog.set_level(logging.ERROR)
    results = assert_conformant(client, TEXT_CONFIG, [{"id": 5, "data": {"audio": local("phrase-0.wav")}}])
    assert results[0]["result"] == []
    assert re.search(
        r"NEMO_PREDICT_BUDGET \(0 s\) spent after 0 chunk\(s\) of [\d.]+ s of audio: tasks \[5\] get no", caplog.text
    ), caplog.text


def test_budget_keeps_finished_tasks_and_names_the_others(make_client, monkeypatch, tiny_model, media_root, caplog):
    """A batch that took longer than what is left of the budget: no further batch starts."""
    monkeypatch.setenv("NEMO_MODEL", str(tiny_model))
    monkeypatch.setenv("NEMO_PREDICT_BUDGET", "4")
    monkeypatch.setenv("NEMO_BATCH_SIZE", "2")
    client = make_client(NemoASR, local_files_document_root=str(media_root))
    model = client.runtime.resources["model"]
    original = model.transcribe
    monkeypatch.setattr(model, "transcribe", lambda audio, **kw: time.sleep(4.5) or original(audio, **kw))
    tasks = [{"id": 10 + i, "data": {"audio": local(f"phrase-{i}.wav")}} for i in range(4)]
    results = assert_conformant(client, TEXT_CONFIG, tasks)
    assert [bool(r["result"]) for r in results] == [True, True, False, False]
    assert cer(PHRASES[1], transcript(results[1])) < 0.3
    assert "tasks [12, 13] get no transcript" in caplog.text


def test_recorded_style_request_with_label_studio_upload(make_client, monkeypatch, tiny_model, media_root):
    """An LS 1.23.2-shaped /setup + /predict, the audio an LS upload fetched with the token."""
    monkeypatch.setenv("NEMO_MODEL", str(tiny_model))
    wav = (media_root / "phrase-4.wav").read_bytes()
    with FakeLabelStudio(files={"/data/upload/3/ab12cd-yes.wav": wav}) as ls:
        client = make_client(NemoASR, label_studio_url=ls.url, label_studio_api_key=ls.legacy_token)
        setup = client.post(
            "/setup",
            json={
                "project": "3.1795797692",
                "schema": TEXT_CONFIG,
                "hostname": "http://localhost:8080",
                "access_token": "x",
                "extra_params": None,
            },
        )
        assert setup.json() == {"model_version": "nemo-0"}
        task = {
            "id": 41,
            "data": {"audio": "/data/upload/3/ab12cd-yes.wav"},
            "meta": {},
            "annotations": [],
            "predictions": [],
            "project": 3,
            "created_at": "2026-01-01T00:00:00Z",
            "is_labeled": False,
            "inner_id": 1,
            "total_annotations": 0,
            "cancelled_annotations": 0,
            "total_predictions": 0,
            "comment_count": 0,
            "unresolved_comment_count": 0,
            "last_comment_updated_at": None,
            "updated_by": [],
            "file_upload": "ab12cd-yes.wav",
            "comment_authors": [],
        }
        reply = client.post(
            "/predict",
            json={
                "tasks": [task],
                "project": "3.1795797692",
                "label_config": TEXT_CONFIG,
                "params": {"login": None, "password": None, "context": None},
            },
        )
        assert ls.auth_headers_seen("/data/upload/") == [f"Token {ls.legacy_token}"]
    assert reply.status_code == 200, reply.text
    prediction = reply.json()["results"][0]
    assert prediction["model_version"] == "nemo-0"
    assert cer(PHRASES[4], transcript(prediction)) < 0.3


def test_split_points_cut_in_silence_and_cover_everything():
    rate = 1000
    tone = np.sin(np.linspace(0, 400, 2500)).astype(np.float32)
    audio = np.concatenate([tone, np.zeros(300, np.float32), tone, np.zeros(300, np.float32), tone])
    cuts = split_points(audio, rate, chunk_seconds=3.0, search_seconds=1.0)
    assert cuts[0][0] == 0 and cuts[-1][1] == len(audio)
    assert all(a[1] == b[0] for a, b in zip(cuts, cuts[1:], strict=False))
    assert all(0 < end - start <= 3 * rate for start, end in cuts)
    assert 2500 <= cuts[0][1] < 2800, "first cut in the first pause"
    assert split_points(audio[:100], rate, 3.0) == [(0, 100)]


def test_config_without_audio_controls_is_refused(client):
    config = '<View><Text name="t" value="$t"/><TextArea name="x" toName="t"/></View>'
    reply = client.post("/predict", json={"tasks": [{"id": 1, "data": {"t": "x"}}], "label_config": config})
    assert reply.status_code == 422
    assert "TextArea (and/or Labels) on an Audio" in reply.json()["error"]


def test_a_missing_model_file_makes_health_say_why(make_client, monkeypatch, tmp_path):
    monkeypatch.setenv("NEMO_MODEL", str(tmp_path / "nope.nemo"))
    client = make_client(NemoASR)
    health = client.get("/health")
    assert health.status_code == 503
    assert "nope.nemo: no such .nemo file" in health.json()["reason"]


@pytest.fixture(scope="session")
def media_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    for i, phrase in enumerate(PHRASES):
        speak(phrase, root / f"phrase-{i}.wav", *VOICES[0])  # 22,050 Hz: resampled by the service
    return root


def test_tools_exist():
    assert shutil.which("espeak-ng") and shutil.which("sox"), "apt-get install espeak-ng sox (see .ci/run)"
