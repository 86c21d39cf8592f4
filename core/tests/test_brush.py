"""brush.py: PROTOCOL.md §6 test vectors byte-exact, and round trips through label-studio-sdk's encoder/decoder."""

from __future__ import annotations

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle, encode_rle, mask2rle

from label_studio_ml.results.brush import mask_to_rle, rle_to_mask, rle_to_values, values_to_rle

VECTORS = [
    (np.full((2, 2), 255), [0, 0, 0, 16, 57, 27, 253, 255, 240]),
    (np.array([[0, 255], [255, 0]]), [0, 0, 0, 16, 57, 27, 252, 96, 19, 255, 198, 0]),
    (np.zeros((1, 2)), [0, 0, 0, 8, 57, 27, 252, 224, 0]),
    (np.zeros((1, 5)), [0, 0, 0, 20, 57, 27, 254, 19, 0, 0]),
    (np.zeros((200, 200)), [0, 2, 113, 0, 57, 27, 255, 255, 255, 0, 255, 255, 224, 29, 195, 252, 0]),
]


@pytest.mark.parametrize("mask, expected", VECTORS, ids=["2x2-full", "2x2-diagonal", "1x2", "1x5-aligned", "200x200"])
def test_protocol_vectors_byte_exact(mask: np.ndarray, expected: list[int]) -> None:
    assert mask_to_rle(mask) == expected
    assert np.array_equal(rle_to_mask(expected, *mask.shape), mask > 0)


def test_literal_run_vector_decodes() -> None:
    rle = [0, 0, 0, 3, 57, 27, 248, 64, 32, 64, 96]
    assert rle_to_values(rle).tolist() == [1, 2, 3]
    assert decode_rle(rle).tolist() == [1, 2, 3]  # the oracle agrees on the hand-made vector


def _random_mask(rng: np.random.Generator, height: int, width: int, density: float) -> np.ndarray:
    return np.where(rng.random((height, width)) < density, 255, 0).astype(np.uint8)


@pytest.mark.parametrize("height, width", [(1, 1), (3, 7), (17, 5), (33, 65), (64, 64), (1, 300), (129, 3)])
def test_round_trip_through_the_sdk_odd_sizes(height: int, width: int) -> None:
    rng = np.random.default_rng(height * 1000 + width)
    for density in (0.0, 0.05, 0.5, 0.97, 1.0):
        mask = _random_mask(rng, height, width, density)
        ours = mask_to_rle(mask)
        assert ours == mask2rle(mask), "byte-exact with the reference encoder"
        decoded = decode_rle(ours).reshape(height, width, 4)[:, :, 3]
        assert np.array_equal(decoded > 0, mask > 0)
        assert np.array_equal(rle_to_mask(mask2rle(mask), height, width), mask > 0)


def test_bool_and_01_masks_encode_as_255() -> None:
    mask = np.array([[True, False, True]])
    assert mask_to_rle(mask) == mask2rle(np.where(mask, 255, 0).astype(np.uint8))
    assert mask_to_rle(mask.astype(int)) == mask_to_rle(mask)


@pytest.mark.parametrize(
    "length",
    [65535, 65536, 65537, 65536 + 2, 65536 + 200, 65536 + 256, 65536 + 257, 2 * 65536, 2 * 65536 + 1, 3 * 65536 + 9],
)
def test_long_runs_byte_exact(length: int) -> None:
    values = np.concatenate([np.full(length, 255, dtype=np.uint8), [0, 7]]).astype(np.uint8)  # a long run, then two
    assert values_to_rle(values) == encode_rle(values)
    assert np.array_equal(rle_to_values(values_to_rle(values)), values)


def test_long_runs_inside_a_mask() -> None:
    # a 300 x 300 mask: a full band of 200 rows (a run of 240,000 values) then a few isolated pixels
    mask = np.zeros((300, 300), dtype=np.uint8)
    mask[:200] = 255
    mask[250, ::7] = 255
    mask[299, 299] = 255
    assert mask_to_rle(mask) == mask2rle(mask)
    assert np.array_equal(rle_to_mask(mask_to_rle(mask), 300, 300), mask > 0)
    # 16,385 full pixels: a run of 65,540 values, i.e. one 65,536 chunk and a remainder of 4
    line = np.full((1, 16385), 255, dtype=np.uint8)
    assert mask_to_rle(line) == mask2rle(line)


def test_decoder_reads_literal_runs_and_alpha_only() -> None:
    # hand-built stream: a literal run of 8 values (R, G, B, A for two pixels) with alpha 0 then 255
    values = [9, 9, 9, 0, 1, 2, 3, 255]
    bits = f"{len(values):032b}" + "00111" + "0010" + "0011" + "0111" + "1111"
    bits += "0" + "00" + f"{len(values) - 1:03b}" + "".join(f"{v:08b}" for v in values)
    bits += "0" * (8 - len(bits) % 8)
    rle = [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]
    assert rle_to_values(rle).tolist() == values == decode_rle(rle).tolist()
    assert rle_to_mask(rle, 1, 2).tolist() == [[False, True]]


def test_decoder_errors() -> None:
    with pytest.raises(ValueError, match="expected"):
        rle_to_mask(mask_to_rle(np.zeros((2, 2))), 3, 3)
    overflow = values_to_rle([5] * 10)
    overflow[3] = 4  # header says 4 values, the run holds 10
    with pytest.raises(ValueError, match="overflows"):
        rle_to_values(overflow)
    with pytest.raises(ValueError, match="2-D"):
        mask_to_rle(np.zeros((2, 2, 4)))


def test_large_ragged_mask_byte_exact() -> None:
    """~300,000 runs: the vectorised encoder against the reference on the worst case for run counts."""
    mask = _random_mask(np.random.default_rng(5), 600, 700, 0.5)
    assert mask_to_rle(mask) == mask2rle(mask)
