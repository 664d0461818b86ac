"""OCR with Tesseract (pytesseract): images and scanned PDF pages become text lines with word boxes."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .positions import Layout, Line, assemble

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
TESSERACT_FIX = ("OCR needs Tesseract, which is not installed; run: "
                 "apt-get install tesseract-ocr tesseract-ocr-eng")


def tesseract_missing() -> str | None:
    """The one-line fix when the tesseract program cannot be found, else None."""
    return None if shutil.which("tesseract") else TESSERACT_FIX


def ocr_image(image: Any, scale: float = 1.0, lang: str = "eng") -> list[Line]:
    """Tesseract's lines of a PIL image; word boxes are pixels times `scale` (72/dpi gives PDF points)."""
    import pytesseract

    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    d = pytesseract.image_to_data(image, lang=lang, output_type=pytesseract.Output.DICT)
    lines: list[Line] = []
    current: tuple[int, int, int] | None = None
    paragraph: tuple[int, int] | None = None
    for i, word in enumerate(d["text"]):
        word = " ".join(word.split())
        if not word or float(d["conf"][i]) < 0:
            continue
        key = (d["block_num"][i], d["par_num"][i], d["line_num"][i])
        x0, y0 = d["left"][i] * scale, d["top"][i] * scale
        x1, y1 = x0 + d["width"][i] * scale, y0 + d["height"][i] * scale
        if key != current:
            # Lines of one paragraph continue its sentences; a new paragraph or block starts a line.
            sep = " " if paragraph == key[:2] else "\n"
            lines.append(Line("", [], sep))
            current, paragraph = key, key[:2]
        line = lines[-1]
        start = len(line.text) + (1 if line.text else 0)
        line.text = f"{line.text} {word}" if line.text else word
        line.words.append((start, start + len(word), round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2)))
    return lines


def read_image(path: Path, progress: Callable[[float], None] | None = None,
               lang: str = "eng") -> tuple[str, tuple[int, ...], Layout]:
    """Text, page starts and word layout of an image file (each frame of a TIFF is a page)."""
    from PIL import Image, ImageSequence

    from .reading import UnreadableFile

    missing = tesseract_missing()
    if missing:
        raise UnreadableFile(missing)
    pages: list[list[Line]] = []
    with Image.open(path) as im:
        frames = getattr(im, "n_frames", 1)
        for i, frame in enumerate(ImageSequence.Iterator(im)):
            pages.append(ocr_image(frame.copy(), 1.0, lang))
            if progress:
                progress((i + 1) / frames)
    return assemble(pages)
