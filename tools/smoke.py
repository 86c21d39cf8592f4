"""Smoke-test a service image through the Docker SDK: build, start, /health, a recorded /predict.

    python tools/smoke.py MODEL [--base-image IMAGE] [--no-build] [--no-cache]

The request comes from services/MODEL/smoke.json when present ({"label_config", "tasks",
"context", "expect_regions", "expect_texts", "files", "build_args"}: files are served over http on
loopback and `{media}` in task data is replaced by their base URL; every string of expect_texts must
appear in some region's value; build_args are added to the image build), else from the recorded LS
text-choices /predict.
Containers use host networking (works on engines without a bridge); everything is removed at the end.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

import docker
import requests

ROOT = Path(__file__).resolve().parents[1]
#: what every service image builds on (core/Dockerfile); the smoke build makes it first
CORE_IMAGE = "label-studio-ml/core:smoke"
RECORDED = ROOT / "core" / "label_studio_ml" / "testing" / "fixtures" / "ls-1.23.2-text-choices.jsonl"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request_for(model: str) -> dict:
    spec_path = ROOT / "services" / model / "smoke.json"
    if spec_path.exists():
        return json.loads(spec_path.read_text())
    lines = [json.loads(line) for line in RECORDED.read_text().splitlines() if line.strip()]
    body = next(r["body"] for r in lines if r["path"] == "/predict")
    return {"label_config": body["label_config"], "tasks": body["tasks"], "context": None}


def build(client, dockerfile: str, tag: str, build_args: dict, no_cache: bool, target: str | None = None) -> None:
    client.images.build(
        path=str(ROOT),
        dockerfile=dockerfile,
        tag=tag,
        target=target,
        buildargs=build_args,
        network_mode="host",
        rm=True,
        forcerm=True,
        nocache=no_cache,
    )


def serve_files(folder: Path) -> tuple[str, http.server.ThreadingHTTPServer]:
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--base-image", default=os.environ.get("BASE_IMAGE", "python:3.11-slim"))
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--no-cache", action="store_true", help="build every layer again (to time a fresh build)")
    args = parser.parse_args()
    if not (ROOT / "services" / args.model / "model.py").exists():
        print(f"unknown model {args.model}")
        return 2
    client = docker.from_env(timeout=600)
    tag = f"label-studio-ml/{args.model}:smoke"
    spec = request_for(args.model)
    started = time.monotonic()
    if not args.no_build:
        core_args = {"BASE_IMAGE": args.base_image}
        print(f"building {CORE_IMAGE} (BASE_IMAGE={args.base_image}) ...", flush=True)
        build(client, "core/Dockerfile", CORE_IMAGE, core_args, args.no_cache)
        build_args = {"CORE_IMAGE": CORE_IMAGE, **spec.get("build_args", {})}
        print(f"building {tag} ({', '.join(f'{k}={v}' for k, v in build_args.items())}) ...", flush=True)
        build(client, f"services/{args.model}/Dockerfile", tag, build_args, args.no_cache, target="production")
    build_seconds = time.monotonic() - started
    image = client.images.get(tag)
    port = free_port()
    files_server = None
    container = None
    try:
        if spec.get("files"):
            base_url, files_server = serve_files(ROOT / "services" / args.model / spec["files"])
            spec = json.loads(json.dumps(spec).replace("{media}", base_url))
        container = client.containers.run(
            tag, detach=True, network_mode="host", environment={"PORT": str(port), "LOG_LEVEL": "INFO"}
        )
        url = f"http://127.0.0.1:{port}"
        boot = time.monotonic()
        while True:
            try:
                health = requests.get(url + "/health", timeout=2)
                if health.status_code == 200:
                    break
            except requests.RequestException:
                pass
            container.reload()
            if container.status == "exited" or time.monotonic() - boot > 300:
                print(container.logs().decode(errors="replace")[-3000:])
                print(f"FAIL: {args.model} never became healthy")
                return 1
            time.sleep(0.5)
        healthy_after = time.monotonic() - boot
        setup = requests.post(
            url + "/setup", json={"project": "1.1700000000", "schema": spec["label_config"]}, timeout=10
        )
        setup.raise_for_status()
        version = setup.json()["model_version"]
        reply = requests.post(
            url + "/predict",
            timeout=120,
            json={
                "tasks": spec["tasks"],
                "project": "1.1700000000",
                "label_config": spec["label_config"],
                "params": {"login": None, "password": None, "context": spec.get("context")},
            },
        )
        results = (
            reply.json().get("results")
            if reply.headers.get("content-type", "").startswith("application/json")
            else None
        )
        ok = (
            reply.status_code == 200
            and isinstance(results, list)
            and len(results) == len(spec["tasks"])
            and all(r.get("model_version") == version for r in results)
        )
        if ok and spec.get("expect_regions"):
            ok = any(r["result"] for r in results)
        if ok and spec.get("expect_texts"):
            found = json.dumps([r["result"] for r in results], ensure_ascii=False)
            ok = all(json.dumps(text, ensure_ascii=False) in found for text in spec["expect_texts"])
        print(
            f"{args.model}: image {image.attrs['Size'] / 1e6:.0f} MB, build {build_seconds:.0f} s, "
            f"healthy after {healthy_after:.1f} s, /predict {reply.status_code} with "
            f"{sum(len(r['result']) for r in results or [])} region(s) for {len(spec['tasks'])} task(s)"
        )
        if not ok:
            print(container.logs().decode(errors="replace")[-3000:])
            print(f"FAIL: unexpected /predict reply: {reply.text[:500]}")
            return 1
        print(f"PASS: {args.model}")
        return 0
    finally:
        if container is not None:
            container.remove(force=True)
        if files_server is not None:
            files_server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
