"""Page images: a PDF page rendered (pypdfium2) or an image file, with cited words highlighted."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import QAError
from ..types import Box
from .ocr import fitted
from .pdf import PDFIUM, render_scale

SCALE = 2.0  # PDF pages render at 144 dpi: sharp on a laptop screen, ~300 KB a page
FILL = (255, 200, 0, 90)  # semi-transparent: the words stay readable under the highlight
EDGE = (220, 120, 0, 220)
PAD = 1.5  # points around each box
CROP_MARGIN = 0.05  # of the page width, kept around the highlighted words in a cropped image


def render_page(path: Path, page: int, boxes: Sequence[Box] = (), crop: bool = False) -> bytes:
    """PNG of page `page` (1-based) of a PDF or image file, with `boxes` on that page highlighted.

    `crop` keeps only the highlighted words and a margin around them (the sources panel's view).
    """
    from PIL import Image, ImageDraw

    if path.suffix.lower() == ".pdf":
        import pypdfium2 as pdfium

        with PDFIUM:  # pdfium is not thread-safe (see qa.reading.pdf.PDFIUM)
            pdf = pdfium.PdfDocument(str(path))
            try:
                if not 1 <= page <= len(pdf):
                    raise QAError(f"{path.name} has pages 1 to {len(pdf)}, not {page}.")
                pg = pdf[page - 1]
                factor = render_scale(*pg.get_size(), SCALE)  # fewer pixels for a huge page
                image = pg.render(scale=factor).to_pil().convert("RGBA")  # a copy: the bitmap is freed here
                pg.close()
            finally:
                pdf.close()
    else:
        with Image.open(path) as im:
            frames = getattr(im, "n_frames", 1)
            if not 1 <= page <= frames:
                raise QAError(f"{path.name} has pages 1 to {frames}, not {page}.")
            im.seek(page - 1)
            small, scale = fitted(im)
            image = small.convert("RGBA")
        factor = 1 / scale  # image boxes are in the file's pixels
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    here = [b for b in boxes if b.page == page]
    for b in here:
        draw.rectangle([(b.x0 - PAD) * factor, (b.y0 - PAD) * factor, (b.x1 + PAD) * factor,
                        (b.y1 + PAD) * factor], fill=FILL, outline=EDGE, width=max(1, int(factor)))
    out = io.BytesIO()
    result = Image.alpha_composite(image, overlay).convert("RGB")
    if crop and here:
        m = CROP_MARGIN * image.width
        # Across pages the crops share their x-range, so a span's pages show at one scale.
        result = result.crop((int(max(0, min(b.x0 for b in boxes) * factor - m)),
                              int(max(0, min(b.y0 for b in here) * factor - m)),
                              int(min(image.width, max(b.x1 for b in boxes) * factor + m)),
                              int(min(image.height, max(b.y1 for b in here) * factor + m))))
    result.save(out, format="PNG", optimize=False)
    return out.getvalue()


def prune_pages(folder: Path, limit: int) -> int:
    """Delete the least recently shown page images of `folder` until they fit in 80% of `limit` bytes,
    once they exceed it; returns how many went. Other processes may prune or render at the same time."""
    seen: list[tuple[float, int, str]] = []
    for entry in os.scandir(folder):
        if entry.name.endswith(".png"):
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            seen.append((st.st_mtime, st.st_size, entry.path))
    total = sum(size for _, size, _ in seen)
    if total <= limit:
        return 0
    gone = 0
    for _, size, path in sorted(seen):
        if total <= limit * 0.8:
            break
        try:
            os.unlink(path)
            gone += 1
        except FileNotFoundError:
            pass
        total -= size
    return gone
