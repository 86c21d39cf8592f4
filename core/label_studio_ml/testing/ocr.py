"""Synthetic text pages with known words and word boxes, and the metrics OCR tests and benchmarks
report: character error rate and box placement error in pixels (needs Pillow)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

DEJAVU = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

WORDS = (
    "label studio reads every page while annotators draw boxes around words and lines "
    "models suggest regions quickly then people correct the text before export the quick "
    "brown fox jumps over lazy dogs near river banks during bright summer mornings invoice "
    "number total amount due date customer address payment received thank you"
).split()


@dataclass
class Word:
    text: str
    box: tuple[int, int, int, int]  # ink box in pixels: left, top, right (exclusive), bottom (exclusive)
    line: int


@dataclass
class Page:
    image: Any  # a Pillow RGB image
    words: list[Word] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        grouped: dict[int, list[str]] = {}
        for word in self.words:
            grouped.setdefault(word.line, []).append(word.text)
        return [" ".join(grouped[k]) for k in sorted(grouped)]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def line_box(self, line: int) -> tuple[int, int, int, int]:
        boxes = [w.box for w in self.words if w.line == line]
        return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def render_page(
    lines: Sequence[str],
    font_size: int = 28,
    margin: int = 40,
    line_spacing: float = 1.8,
    width: int | None = None,
    font_path: str = DEJAVU,
) -> Page:
    """Black text on white, one line per string; each word's ink box is measured from its pixels."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(font_path, font_size)
    space = font.getlength(" ")
    widths = [font.getlength(line) for line in lines]
    needed = int(max(widths, default=0) + 2 * margin)
    if width is not None and width < needed:
        raise ValueError(f"a line needs {needed} px, more than width={width}")
    width = width or needed
    step = int(font_size * line_spacing)
    height = int(2 * margin + step * max(len(lines), 1))
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    page = Page(image)
    for number, line in enumerate(lines):
        x, y = float(margin), float(margin + number * step)
        for text in line.split():
            draw.text((x, y), text, fill="black", font=font)
            mask = Image.new("L", (width, height), 0)
            ImageDraw.Draw(mask).text((x, y), text, fill=255, font=font)
            ink = mask.getbbox()
            if ink is not None:
                page.words.append(Word(text, ink, number))
            x += font.getlength(text) + space
    return page


def random_lines(rng: random.Random, count: int, words_per_line: tuple[int, int] = (3, 7)) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(*words_per_line))) for _ in range(count)]


def levenshtein(a: Sequence[Any], b: Sequence[Any]) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate: edit distance over the reference length (whitespace runs count as one space)."""
    ref, hyp = " ".join(reference.split()), " ".join(hypothesis.split())
    return levenshtein(ref, hyp) / max(len(ref), 1)


def percent_box_to_pixels(value: dict[str, float], width: int, height: int) -> tuple[float, float, float, float]:
    """An LS rectangle (x, y, width, height in percent) or polygon (points) as a pixel box."""
    if "points" in value:
        xs = [p[0] * width / 100.0 for p in value["points"]]
        ys = [p[1] * height / 100.0 for p in value["points"]]
        return min(xs), min(ys), max(xs), max(ys)
    left, top = value["x"] * width / 100.0, value["y"] * height / 100.0
    return left, top, left + value["width"] * width / 100.0, top + value["height"] * height / 100.0


def box_error(found: Sequence[float], truth: Sequence[float]) -> float:
    """The largest distance in pixels between corresponding edges of two boxes."""
    return max(abs(float(a) - float(b)) for a, b in zip(found, truth, strict=True))


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    left, top, right, bottom = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, right - left) * max(0.0, bottom - top)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_words(
    page: Page,
    found: list[tuple[str, tuple[float, float, float, float]]],
) -> list[tuple[Word, str, float]]:
    """Pair each rendered word with the found box overlapping it most: (word, found text, box error).
    Words no found box overlaps are left out (count them as misses)."""
    pairs = []
    for word in page.words:
        best = max(found, key=lambda f: iou(f[1], word.box), default=None)
        if best is not None and iou(best[1], word.box) > 0:
            pairs.append((word, best[0], box_error(best[1], word.box)))
    return pairs
