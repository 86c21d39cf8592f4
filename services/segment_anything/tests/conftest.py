import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the service folder: `import model`


@pytest.fixture(scope="session")
def sam_dir(tmp_path_factory) -> Path:
    """A tiny SAM (random weights) saved as a checkpoint folder, loaded by the service as SAM_MODEL."""
    import torch
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    torch.manual_seed(0)
    hidden = 32
    config = SamConfig(
        vision_config={
            "hidden_size": hidden,
            "output_channels": hidden,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 8,
            "window_size": 4,
            "global_attn_indexes": [1],
            "mlp_dim": 64,
            "num_pos_feats": hidden // 2,
        },  # half the prompt encoder's hidden size
        prompt_encoder_config={"hidden_size": hidden, "image_size": 64, "patch_size": 8, "mask_input_channels": 4},
        mask_decoder_config={
            "hidden_size": hidden,
            "mlp_dim": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": hidden,
        },
    )
    path = tmp_path_factory.mktemp("tiny-sam")
    SamModel(config).save_pretrained(path)
    processor = SamProcessor(SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64}))
    processor.save_pretrained(path)
    return path


@pytest.fixture
def sam_env(sam_dir, monkeypatch):
    monkeypatch.setenv("SAM_MODEL", str(sam_dir))
    monkeypatch.setenv("DEVICE", "cpu")  # the oracle in the tests runs on the CPU too
    return sam_dir
