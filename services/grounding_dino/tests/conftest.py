import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the service folder: `import model`

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "a", "cat", "dog", "car", "black", "person", "tree"]


@pytest.fixture(scope="session")
def dino_dir(tmp_path_factory) -> Path:
    """A tiny Grounding DINO (random weights) with a small-vocabulary BERT tokenizer, saved as a checkpoint."""
    import torch
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    torch.manual_seed(0)
    backbone = SwinConfig(
        image_size=64,
        window_size=4,
        embed_dim=8,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        out_features=["stage2", "stage3", "stage4"],
    )
    text = BertConfig(
        vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
    )
    config = GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=12,
        num_feature_levels=4,
        encoder_n_points=2,
        decoder_n_points=2,
    )
    path = tmp_path_factory.mktemp("tiny-grounding-dino")
    GroundingDinoForObjectDetection(config).save_pretrained(path)
    # transformers 5: the tokenizer takes the vocabulary itself (a vocab_file is silently ignored)
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(WORDS)}, do_lower_case=True)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path


@pytest.fixture
def dino_env(dino_dir, monkeypatch):
    monkeypatch.setenv("GROUNDING_DINO_MODEL", str(dino_dir))
    monkeypatch.setenv("DEVICE", "cpu")  # the oracle in the tests runs on the CPU too
    monkeypatch.delenv("BOX_THRESHOLD", raising=False)
    monkeypatch.delenv("TEXT_THRESHOLD", raising=False)
    return dino_dir
