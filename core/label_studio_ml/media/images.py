"""Images as LS displays them: EXIF orientation applied, sizes in displayed pixels (needs Pillow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import MediaError

#: refuse decompression bombs above this many pixels (a 10,000 x 10,000 image is 1e8)
MAX_PIXELS = 250_000_000


def open_image(path: str | Path, mode: str | None = "RGB") -> Any:
    """Open an image with EXIF orientation applied (the orientation LS shows annotators).

    Raises MediaError for files that are not images, truncated images and images too large.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(path) as raw:
            raw.load()
            image = ImageOps.exif_transpose(raw)
            if mode and image.mode != mode:
                image = image.convert(mode)
            return image.copy() if image is raw else image
    except UnidentifiedImageError:
        raise MediaError(f"{Path(path).name} is not an image Pillow can read") from None
    except Image.DecompressionBombError:
        raise MediaError(f"{Path(path).name} has more than {MAX_PIXELS} pixels") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"{Path(path).name} cannot be decoded: {exc}") from None


def context_regions(context: dict[str, Any] | None, *types: str) -> list[dict[str, Any]]:
    """The interactive context's result items of the given types (all when none given), tolerating
    the minimal or malformed contexts test clients send."""
    items = (context or {}).get("result") if isinstance(context, dict) else None
    if not isinstance(items, list):
        return []
    wanted = {t.lower() for t in types}
    return [
        item
        for item in items
        if isinstance(item, dict)
        and isinstance(item.get("value"), dict)
        and (not wanted or str(item.get("type", "")).lower() in wanted)
    ]
