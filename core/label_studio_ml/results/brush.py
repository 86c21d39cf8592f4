"""Brush masks in Label Studio's RLE format (PROTOCOL.md §6), encoded byte-exact with the reference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_WORD_BITS = 8
_RUN_FIELD_BITS = (3, 4, 8, 16)
_MAX_CHUNK = 1 << 16


def _bits(values: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """The bit stream of ``values[i]`` written in ``widths[i]`` bits each (<= 32), MSB first, as 0/1 bytes."""
    as_bytes = values.astype(">u4").view(np.uint8).reshape(-1, 4)
    bits = np.unpackbits(as_bytes, axis=1)  # 32 bits a value, most significant first
    keep = np.arange(32)[None, :] >= (32 - widths)[:, None]  # each value's last `width` bits
    return bits[keep]


def _encode_values(values: np.ndarray) -> list[int]:
    """One record per run: a repeat flag, a 2-bit length-field index, the length - 1, then the value.
    Vectorised with numpy (a Python loop over runs took ~1 s for a ragged 1 MP mask)."""
    total = len(values)
    header = np.array([total, _WORD_BITS - 1, *(w - 1 for w in _RUN_FIELD_BITS)], dtype=np.int64)
    header_widths = np.array([32, 5, 4, 4, 4, 4])
    if total:
        starts = np.concatenate(([0], np.flatnonzero(values[1:] != values[:-1]) + 1))
        run_lengths = np.diff(np.append(starts, total))
        words = values[starts].astype(np.int64)
        # like the reference: a run longer than 256 goes out in 65,536-value chunks (16-bit field), its remainder too
        long_run = run_lengths > 256
        chunks = np.where(long_run, -(-run_lengths // _MAX_CHUNK), 1)
        run_of = np.repeat(np.arange(len(starts)), chunks)
        chunk_no = np.arange(len(run_of)) - np.repeat(np.cumsum(chunks) - chunks, chunks)
        lengths = np.minimum(run_lengths[run_of] - chunk_no * _MAX_CHUNK, _MAX_CHUNK)
        long_chunk = long_run[run_of]
        field_bits = np.array(_RUN_FIELD_BITS)
        index = np.where(long_chunk, 3, np.searchsorted(1 << field_bits, lengths - 1, side="right"))
        width = field_bits[index]
        repeat = ~((lengths == 1) & ~long_chunk)  # a lone value is a literal run of one: 0, 00, 000
        prefix = np.where(repeat, ((4 | index) << width) | (lengths - 1), 0)
        prefix_width = np.where(repeat, 3 + width, 6)
        record = (prefix << _WORD_BITS) | words[run_of]
        record_width = prefix_width + _WORD_BITS
        values_out = np.concatenate((header, record))
        widths_out = np.concatenate((header_widths, record_width))
    else:
        values_out, widths_out = header, header_widths
    stream = _bits(values_out, widths_out)
    padding = np.zeros(8 - len(stream) % 8, dtype=np.uint8)  # the reference pads a full byte when aligned
    return np.packbits(np.concatenate((stream, padding))).tolist()


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
            out[filled : filled + length] = reader.read(word_bits)
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
