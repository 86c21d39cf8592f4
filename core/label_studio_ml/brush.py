"""Brush masks in Label Studio's RLE format (PROTOCOL.md §6), encoded byte-exact with the reference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_WORD_BITS = 8
_RUN_FIELD_BITS = (3, 4, 8, 16)
_MAX_CHUNK = 1 << 16


class _BitWriter:
    def __init__(self) -> None:
        self.bits: list[str] = []

    def write(self, value: int, width: int) -> None:
        self.bits.append(format(value, f"0{width}b"))

    def to_bytes(self) -> list[int]:
        stream = "".join(self.bits)
        stream += "0" * (8 - len(stream) % 8)  # the reference pads a full byte when aligned
        return [int(stream[i:i + 8], 2) for i in range(0, len(stream), 8)]


def _encode_values(values: np.ndarray) -> list[int]:
    writer = _BitWriter()
    writer.write(len(values), 32)
    writer.write(_WORD_BITS - 1, 5)
    for width in _RUN_FIELD_BITS:
        writer.write(width - 1, 4)
    # run boundaries where the value changes
    if len(values):
        change = np.flatnonzero(np.diff(values)) + 1
        starts = np.concatenate(([0], change))
        ends = np.concatenate((change, [len(values)]))
    else:
        starts = ends = np.array([], dtype=int)
    for start, end in zip(starts.tolist(), ends.tolist()):
        word = int(values[start])
        remaining = end - start
        while remaining > 0:
            length = min(remaining, _MAX_CHUNK)
            remaining -= length
            if length == 1:
                writer.write(0, 1)
                writer.write(0, 2)
                writer.write(0, 3)
            else:
                index = next(i for i, w in enumerate(_RUN_FIELD_BITS) if length - 1 < (1 << w))
                writer.write(1, 1)
                writer.write(index, 2)
                writer.write(length - 1, _RUN_FIELD_BITS[index])
            writer.write(word, _WORD_BITS)
    return writer.to_bytes()


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """Encode an H x W mask (bool or 0/255) as LS brush RLE bytes."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    pixels = np.where(mask > 0, 255, 0).astype(np.uint8)
    return _encode_values(np.repeat(pixels.reshape(-1), 4))


def values_to_rle(values: Sequence[int]) -> list[int]:
    return _encode_values(np.asarray(values, dtype=np.uint8))


class _BitReader:
    def __init__(self, data: Sequence[int]) -> None:
        self.data = bytes(data)
        self.pos = 0

    def read(self, width: int) -> int:
        value = 0
        for _ in range(width):
            byte = self.data[self.pos >> 3]
            value = (value << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value


def rle_to_values(rle: Sequence[int]) -> np.ndarray:
    """Decode RLE bytes into the flat value array (both run kinds)."""
    reader = _BitReader(rle)
    total = reader.read(32)
    word_bits = reader.read(5) + 1
    field_bits = [reader.read(4) + 1 for _ in range(4)]
    out = np.empty(total, dtype=np.uint8)
    filled = 0
    while filled < total:
        repeat = reader.read(1)
        length = reader.read(field_bits[reader.read(2)]) + 1
        if filled + length > total:
            raise ValueError("RLE run overflows the declared length")
        if repeat:
            out[filled:filled + length] = reader.read(word_bits)
        else:
            for i in range(length):
                out[filled + i] = reader.read(word_bits)
        filled += length
    return out


def rle_to_mask(rle: Sequence[int], height: int, width: int) -> np.ndarray:
    """Decode RLE into an H x W boolean mask (alpha channel)."""
    values = rle_to_values(rle)
    if values.size != height * width * 4:
        raise ValueError(f"RLE holds {values.size} values, expected {height * width * 4}")
    return values.reshape(height, width, 4)[:, :, 3] > 0
