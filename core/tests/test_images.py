"""open_image on the files users really send: not images, truncated, tiny, huge, decompression bombs."""

import io
import struct
import zlib

import pytest
from PIL import Image

from label_studio_ml.errors import MediaError
from label_studio_ml.media.images import MAX_PIXELS, open_image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def with_png_size(data: bytes, width: int, height: int) -> bytes:
    """The same PNG with its header claiming another size (IHDR follows the 8-byte signature)."""
    ihdr = data[12:16] + struct.pack(">II", width, height) + data[24:29]
    return data[:8] + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]


def test_not_an_image_is_a_media_error_naming_the_file(tmp_path):
    path = tmp_path / "notes.png"
    path.write_bytes(b"these are meeting notes, not pixels\n" * 10)
    with pytest.raises(MediaError, match="notes.png is not an image"):
        open_image(path)


def test_truncated_image_is_a_media_error(tmp_path):
    whole = png_bytes(Image.effect_noise((300, 200), 64).convert("RGB"))
    path = tmp_path / "cut.png"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(MediaError, match="cut.png cannot be decoded"):
        open_image(path)


def test_one_pixel_image_opens(tmp_path):
    path = tmp_path / "dot.png"
    path.write_bytes(png_bytes(Image.new("L", (1, 1), 7)))
    image = open_image(path)
    assert image.size == (1, 1) and image.mode == "RGB" and image.getpixel((0, 0)) == (7, 7, 7)


def test_ten_thousand_square_image_opens(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_bytes(Image.new("1", (10_000, 10_000), 1)))
    image = open_image(path, mode=None)
    assert image.size == (10_000, 10_000)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    side = int((2 * MAX_PIXELS) ** 0.5) + 1  # Pillow refuses above twice its limit, warns between
    path = tmp_path / "bomb.png"
    path.write_bytes(with_png_size(png_bytes(Image.new("1", (8, 8))), side, side))
    with pytest.raises(MediaError, match=f"bomb.png has more than {MAX_PIXELS} pixels"):
        open_image(path)
