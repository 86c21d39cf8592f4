"""What the ``sdk`` extra (label-studio-sdk, for backends written for the upstream SDK) costs, and that
our own services do not pay it.

Prints, in one run:

* install size: the distributions ``label-studio-ml[sdk]`` adds to core's own (their installed files,
  from the environment this runs in, which must have the extra installed);
* start-up: a fresh process importing the server, building the app, serving /setup and /predict for a
  model that returns dicts (our services' shape), with the sdk installed and with it hidden (as if the
  extra were not installed), and an upstream-style model that reads ``self.label_interface`` and
  returns a ``ModelResponse``: median wall time to the first answer, and RSS then;
* optionally the same plain-model figure for another core checkout (``--baseline DIR``, e.g. the
  main branch's ``core/``), run interleaved with ours so machine noise hits both alike.

    python benchmarks/sdk_extra.py [--runs 7] [--baseline /path/to/other/core]

Goal (issue 20): services that never touch ``label_interface`` start as fast and as small with the
extra installed as without it (the sdk is never imported).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
from importlib import metadata
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import sys, time
    started = time.perf_counter()
    if HIDE_SDK:
        for name in ("label_studio_sdk", "pydantic"):
            sys.modules[name] = None  # what Python records for a module that is not installed
    from label_studio_ml import LabelStudioMLBase
    from label_studio_ml.server.app import create_app
    from label_studio_ml.config import Settings
    from starlette.testclient import TestClient

    CONFIG = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
              '<Choice value="Positive"/><Choice value="Negative"/></Choices></View>')
    ITEM = {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}

    class Plain(LabelStudioMLBase):
        def predict(self, tasks, context=None, **kwargs):
            return [{"result": [ITEM], "score": 0.9} for _ in tasks]

    class UpstreamStyle(LabelStudioMLBase):
        def setup(self):
            self.set("model_version", "0.0.1")

        def predict(self, tasks, context=None, **kwargs):
            from label_studio_ml.response import ModelResponse
            from_name, _, _ = self.label_interface.get_first_tag_occurence("Choices", "Text")
            control = self.label_interface.get_control(from_name)
            return ModelResponse(predictions=[{"result": [control.label(["Positive"])]} for _ in tasks])

    app = create_app(MODEL, Settings.from_dict({"model_dir": sys.argv[1]}), background_load=False)
    with TestClient(app) as client:
        assert client.post("/setup", json={"project": "1", "schema": CONFIG}).status_code == 200
        reply = client.post("/predict", json={"tasks": [{"id": 1, "data": {"text": "x"}}], "project": "1"})
        assert reply.status_code == 200 and reply.json()["results"][0]["result"], reply.text
        seconds = time.perf_counter() - started
    rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:")) / 1024
    loaded = sorted(m for m in ("label_studio_sdk", "pydantic") if sys.modules.get(m) is not None)
    print(json.dumps({"seconds": seconds, "rss_mb": rss, "loaded": loaded}))
""")


def run_once(model: str, hide_sdk: bool, core_src: str | None) -> dict:
    code = f"import json\nMODEL_NAME = {model!r}\nHIDE_SDK = {hide_sdk}\n" + SCRIPT.replace(
        "create_app(MODEL,", "create_app(globals()[MODEL_NAME],"
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if core_src:
        env["PYTHONPATH"] = core_src
    with tempfile.TemporaryDirectory() as model_dir:
        out = subprocess.run(
            [sys.executable, "-c", code, model_dir], capture_output=True, text=True, env=env, timeout=120
        )
    if out.returncode != 0:
        raise SystemExit(f"{model} (hide_sdk={hide_sdk}) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def closure(name: str) -> set[str]:
    """A distribution and everything it requires (no extras, markers of this interpreter)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if current in seen:
            continue
        try:
            dist = metadata.distribution(current)
        except metadata.PackageNotFoundError:
            continue
        seen.add(current)
        for requirement in dist.requires or []:
            spec, _, marker = requirement.partition(";")
            if "extra ==" in marker or "extra==" in marker:
                continue
            if marker.strip():
                from packaging.markers import Marker

                if not Marker(marker.strip()).evaluate():
                    continue
            todo.append(re.split(r"[\s<>=!~\[(]", spec.strip(), maxsplit=1)[0])
    return seen


def installed_bytes(dist_name: str) -> int:
    dist = metadata.distribution(dist_name)
    total = 0
    for file in dist.files or []:
        path = Path(dist.locate_file(file))
        if path.is_file():
            total += path.stat().st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline", help="another core source folder to compare the plain model with")
    args = parser.parse_args()

    core = closure("label-studio-ml")
    with_sdk = core | closure("label-studio-sdk")
    added = sorted(with_sdk - core)
    size = sum(installed_bytes(d) for d in added)
    biggest = sorted(added, key=installed_bytes, reverse=True)[:5]
    print(f"install size added by label-studio-ml[sdk]: {size / 2**20:.1f} MB in {len(added)} distributions")
    print("  largest: " + ", ".join(f"{d} {installed_bytes(d) / 2**20:.1f} MB" for d in biggest))
    core_size = sum(installed_bytes(d) for d in core)
    print(f"  (core with its dependencies: {core_size / 2**20:.1f} MB in {len(core)} distributions)")

    cases = [
        ("our service, sdk installed", "Plain", False, None),
        ("our service, sdk not installed", "Plain", True, None),
        ("upstream-style (label_interface + ModelResponse)", "UpstreamStyle", False, None),
    ]
    if args.baseline:
        cases.append((f"our service on {args.baseline}", "Plain", False, args.baseline))
    results: dict[str, list[dict]] = {label: [] for label, *_ in cases}
    run_once("Plain", False, None)  # warm the file cache
    for _ in range(args.runs):  # interleaved: noise from other processes hits every case alike
        for label, model, hide, src in cases:
            results[label].append(run_once(model, hide, src))
    print(f"\nstart to first /predict answer, fresh process, median of {args.runs} (RSS then):")
    medians = {}
    for label, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        rss = statistics.median(r["rss_mb"] for r in runs)
        medians[label] = (seconds, rss)
        print(f"  {label:<52} {1000 * seconds:7.0f} ms  {rss:6.1f} MB  imports: {runs[0]['loaded'] or 'neither'}")
    plain, hidden = medians[cases[0][0]], medians[cases[1][0]]
    upstream = medians[cases[2][0]]
    print(f"\nour service, sdk installed / not: time x{plain[0] / hidden[0]:.2f}, RSS {plain[1] - hidden[1]:+.1f} MB")
    print(
        f"upstream-style minus our service: {1000 * (upstream[0] - plain[0]):+.0f} ms, {upstream[1] - plain[1]:+.1f} MB"
        " (reading label_interface and importing ModelResponse, once per process)"
    )
    if args.baseline:
        base = medians[cases[3][0]]
        print(
            f"our service, this core / baseline core: time x{plain[0] / base[0]:.2f}, RSS {plain[1] - base[1]:+.1f} MB"
        )


if __name__ == "__main__":
    main()
