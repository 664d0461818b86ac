"""OCR with Tesseract: images and scanned PDF pages become text lines with word boxes.

The `tesseract` program is run directly (its TSV output has every word's box) with one OpenMP
thread: on the 2-core development machine under load, a page took 48 s with Tesseract's default
threads and 10 s with one (spinning threads fight for the cores).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .positions import Layout, Line, assemble

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# Pixels of an image read by OCR or drawn as a page image (an A0 page at 144 dpi has 32 million). A PDF's page
# size is whatever its file says: an 800-byte PDF with a 5,000-point page took 3.3 GB to OCR at 300 dpi, and a
# page image of an 8,000-point page 4 GB; bigger ones are drawn or read with fewer pixels per point.
MAX_PIXELS = 40_000_000
TESSERACT_FIX = ("OCR needs Tesseract, which is not installed; run: "
                 "apt-get install tesseract-ocr tesseract-ocr-eng")


def tesseract_missing() -> str | None:
    """The one-line fix when the tesseract program cannot be found, else None."""
    return None if shutil.which("tesseract") else TESSERACT_FIX


def _tesseract(image: Any, lang: str, dpi: int | None) -> dict[str, list[str]]:
    """Tesseract's TSV of a PIL image as columns: level, block_num, ..., left, top, width, height, conf, text."""
    from .formats import UnreadableFile

    data = io.BytesIO()
    image.convert("L").save(data, format="PPM")  # uncompressed greyscale: quick to write and to read
    env = {"OMP_THREAD_LIMIT": "1", **os.environ}
    try:
        resolution = ["--dpi", str(dpi)] if dpi else []  # else Tesseract guesses it from the text size
        done = subprocess.run(["tesseract", "stdin", "stdout", "-l", lang, *resolution, "tsv"], input=data.getvalue(),
                              capture_output=True, env=env, timeout=600)
    except FileNotFoundError:
        raise UnreadableFile(TESSERACT_FIX) from None
    except subprocess.TimeoutExpired:
        raise UnreadableFile("OCR of a page took over 10 minutes; stopped") from None
    if done.returncode != 0:
        why = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1][:200]
        raise UnreadableFile(f"tesseract failed ({why}); for another language install tesseract-ocr-<lang>")
    rows = [r.split("\t") for r in done.stdout.decode("utf-8", errors="replace").splitlines()]
    header = rows[0] if rows else []
    return {name: [r[i] if i < len(r) else "" for r in rows[1:]] for i, name in enumerate(header)}


def fitted(image: Any) -> tuple[Any, float]:
    """The image, made smaller if it has more than MAX_PIXELS, and how many of its pixels one of the result's
    spans (1.0: as it was)."""
    w, h = image.size
    if w * h <= MAX_PIXELS:
        return image, 1.0
    k = (w * h / MAX_PIXELS) ** 0.5
    small = image.resize((max(1, int(w / k)), max(1, int(h / k))))
    return small, w / small.width


def ocr_image(image: Any, scale: float = 1.0, lang: str = "eng", dpi: int | None = None) -> list[Line]:
    """Tesseract's lines of a PIL image; word boxes are pixels times `scale` (72/dpi gives PDF points)."""
    d = _tesseract(image, lang, dpi)
    lines: list[Line] = []
    current: tuple[int, int, int] | None = None
    paragraph: tuple[int, int] | None = None
    for i, word in enumerate(d["text"]):
        word = " ".join(word.split())
        if not word or d["level"][i] != "5" or float(d["conf"][i]) < 0:
            continue
        key = (int(d["block_num"][i]), int(d["par_num"][i]), int(d["line_num"][i]))
        x0, y0 = int(d["left"][i]) * scale, int(d["top"][i]) * scale
        x1, y1 = x0 + int(d["width"][i]) * scale, y0 + int(d["height"][i]) * scale
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

    from .formats import UnreadableFile

    missing = tesseract_missing()
    if missing:
        raise UnreadableFile(missing)
    pages: list[list[Line]] = []
    with Image.open(path) as im:
        frames = getattr(im, "n_frames", 1)
        for i, frame in enumerate(ImageSequence.Iterator(im)):
            dpi = (frame.info.get("dpi") or im.info.get("dpi") or (0,))[0]
            small, scale = fitted(frame)
            dpi = dpi / scale if dpi else dpi
            pages.append(ocr_image(frame.copy() if small is frame else small, scale, lang,
                                   int(dpi) if dpi and dpi >= 50 else None))
            if progress:
                progress((i + 1) / frames)
    return assemble(pages)
