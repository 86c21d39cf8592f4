"""The YOLO service against a real Label Studio: image boxes and a video tracking result stored as
predictions, from media uploaded to LS.

The service needs torch and ultralytics, which the e2e env does not install (about 6 GB): the backend runs
with the shared torch env's interpreter (``.tox/shared-torch``, made by ``tox -e yolo``, which `make test`
runs before e2e), or the one ``LSML_TORCH_PYTHON`` names. Without either the test is skipped, saying so.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from ls_server import ROOT
from test_label_studio import assert_predictions, connection_version, prediction_of

SHAPES = ROOT / "services" / "yolo" / "tests" / "shapes.py"
IMAGES = """<View><Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image" model_path="shapes-seg.pt" model_imgsz="64" model_score_threshold="0.3">
    <Label value="Round" predicted_values="circle"/><Label value="Square"/>
  </RectangleLabels></View>"""
VIDEO = """<View><Video name="video" value="$video"/>
  <VideoRectangle name="track" toName="video" model_path="shapes-seg.pt" model_imgsz="64"
                  model_score_threshold="0.3" model_tracker="bytetrack"/>
  <Labels name="kind" toName="video"><Label value="Round" predicted_values="circle"/><Label value="Square"/></Labels>
</View>"""


def torch_python() -> str:
    python = os.environ.get("LSML_TORCH_PYTHON") or str(ROOT / ".tox" / "shared-torch" / "bin" / "python")
    if not Path(python).is_file() or subprocess.run([python, "-c", "import ultralytics"]).returncode != 0:
        pytest.skip(f"no interpreter with ultralytics at {python}: run `tox -e yolo` first or set LSML_TORCH_PYTHON")
    return python


def test_yolo_boxes_and_video_tracks_through_label_studio(label_studio, backend, tmp_path):
    python = torch_python()
    models, media = tmp_path / "models", tmp_path / "media"
    offline = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "YOLO_CONFIG_DIR": str(tmp_path / "ultralytics")}
    subprocess.run([python, str(SHAPES), str(models), str(media)], check=True, env={**os.environ, **offline})
    server = backend("yolo", python=python, MODEL_DIR=str(models), DEVICE="cpu", **offline)
    ls = label_studio

    images = ls.create_project(IMAGES)
    ls.upload_files(images, {name: (media / name).read_bytes() for name in ("shapes0.png", "shapes1.png")})
    ml = ls.connect(images, server.url)
    ls.retrieve_predictions(images)
    version = connection_version(ls, ml["id"])
    assert version.startswith("yolo-")
    for task in assert_predictions(ls, images, IMAGES, version, expect_regions=True):
        assert task["data"]["image"].startswith("/data/upload/")
        labels = [r["value"]["rectanglelabels"][0] for r in prediction_of(task, version)["result"]]
        assert labels and set(labels) <= {"Round", "Square"}

    video = ls.create_project(VIDEO)
    ls.upload_files(video, {"clip.mp4": (media / "clip.mp4").read_bytes()})
    ml = ls.connect(video, server.url)
    ls.retrieve_predictions(video)
    (task,) = assert_predictions(ls, video, VIDEO, connection_version(ls, ml["id"]), expect_regions=True)
    tracks = prediction_of(task, connection_version(ls, ml["id"]))["result"]
    assert sorted(t["value"]["labels"][0] for t in tracks) == ["Round", "Square"]
    for track in tracks:
        assert track["type"] == "videorectangle" and track["value"]["framesCount"] == 24
        assert len(track["value"]["sequence"]) >= 21
    assert "Traceback" not in server.log_tail(400)
