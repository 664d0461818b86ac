"""PDF pages to text with every word's box (pypdfium2), in reading order; pages without text are OCR'd.

pdfium gives characters in content-stream order with their boxes. Lines are split at a column
gutter when the page has one, so two columns read left then right instead of interleaved; running
headers and footers (a margin line repeated on other pages, or a bare page number) are left out of
the text so that they never cut a sentence that continues on the next page.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from itertools import accumulate
from pathlib import Path
from typing import Any

from .positions import SENTENCE_END, Layout, Line

OCR_DPI = 300
MARGIN = 0.08  # top and bottom bands of the page where running headers and footers live
_PAGE_NUMBER = re.compile(r"^\W*(page\s*)?\d+(\s*(of|/)\s*\d+)?\W*$", re.IGNORECASE)
_WORD = re.compile(r"\S+")

# pdfium is not thread-safe, not even across documents: every call into it, here and in the page images
# of qa.reading.pages (drawn by the server while its writer reads an upload), holds this lock. Two page
# images drawn at once crashed the server (a segfault in libpdfium) or dropped letters from one.
PDFIUM = threading.RLock()

Char = tuple[str, float, float, float, float] | tuple[str, None, None, None, None]  # ch, x0, top, x1, bottom


def read_pdf(path: Path, progress: Callable[[float], None] | None = None,
             ocr_lang: str = "eng") -> tuple[str, tuple[int, ...], Layout, int]:
    """Text, page starts, word layout and the number of OCR'd pages of a PDF."""
    import pypdfium2 as pdfium

    from .positions import assemble

    with PDFIUM:
        pdf = pdfium.PdfDocument(str(path))
        n = len(pdf)
    try:
        # Per page its lines and the keys of its margin lines; characters are dropped page by page,
        # so a long PDF costs its words' boxes, not its characters'.
        pages: list[tuple[list[Line], dict[int, str]]] = []
        ocr_pages = 0
        missing = None
        for i in range(n):
            image = None
            with PDFIUM:  # page by page: the server's page images are drawn in between
                page = pdf[i]
                try:
                    left, bottom, right, top = page.get_cropbox()
                    chars = _order(_raw_lines(page.get_textpage(), left, top), right - left)
                    lines, margins = _lines(chars), _margins(chars, top - bottom)
                    if not lines and _has_images(page):
                        from .ocr import tesseract_missing

                        missing = missing or tesseract_missing()
                        if missing is None:  # a copy: pdfium's bitmap is freed here, under the lock
                            scale = render_scale(*page.get_size(), OCR_DPI / 72)
                            image = page.render(scale=scale).to_pil().copy()
                finally:
                    page.close()
            if image is not None:  # OCR takes seconds a page: outside the lock
                from .ocr import ocr_image

                lines, margins = ocr_image(image, 1 / scale, ocr_lang, round(72 * scale)), {}
                ocr_pages += 1
            pages.append((lines, margins))
            if progress:
                progress((i + 1) / n)
    finally:
        with PDFIUM:
            pdf.close()
    # Running headers and footers: margin lines repeated on other pages, and page numbers.
    seen = Counter(k for _, margins in pages for k in set(margins.values()))
    furniture = {k for k in seen if _PAGE_NUMBER.match(k.replace("#", "1")) or (len(pages) > 1 and seen[k] > 1)}
    text, starts, layout = assemble([[line for i, line in enumerate(lines) if margins.get(i) not in furniture]
                                     for lines, margins in pages])
    if not text.strip() and missing:
        from .formats import UnreadableFile

        raise UnreadableFile(missing)
    return text, starts, layout, ocr_pages


def render_scale(width: float, height: float, wanted: float) -> float:
    """Pixels per point to draw a page of this size (points) at: `wanted`, or fewer for a page so large that
    it would have more than `qa.reading.ocr.MAX_PIXELS`."""
    from .ocr import MAX_PIXELS

    return min(wanted, (MAX_PIXELS / max(width * height, 1.0)) ** 0.5)


def _has_images(page: Any) -> bool:
    import pypdfium2.raw as pdfium_c

    return any(True for _ in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,), max_depth=3))


def _raw_lines(textpage: Any, left: float, top: float) -> list[list[Char]]:
    """pdfium's characters split at its line breaks, boxes in points from the page's top-left."""
    import ctypes

    import pypdfium2.raw as pdfium_c

    raw = textpage.raw
    n = textpage.count_chars()
    rect = pdfium_c.FS_RECTF()
    ref = ctypes.byref(rect)
    buffer = ctypes.create_string_buffer(2 * (n + 1))
    pdfium_c.FPDFText_GetText(raw, 0, n, ctypes.cast(buffer, ctypes.POINTER(ctypes.c_ushort)))
    text = buffer.raw[:2 * n].decode("utf-16-le", errors="replace")
    if len(text) != n:  # characters outside the BMP take two UTF-16 units: read one by one
        text = "".join(chr(pdfium_c.FPDFText_GetUnicode(raw, i)) for i in range(n))
    lines: list[list[Char]] = [[]]
    space = (" ", None, None, None, None)
    for i, ch in enumerate(text):
        if ch in "\r\n":
            if lines[-1]:
                lines.append([])
            continue
        cp = ord(ch)
        if cp < 32 and cp not in (2, 9):
            continue
        if cp == 2:
            ch = "-"  # pdfium's mark for a hyphen that breaks a word at the end of a line
        elif 0xD800 <= cp <= 0xDFFF:
            ch = "\ufffd"
        if not ch.strip():  # spaces, also those pdfium generates between words: no box
            lines[-1].append(space)
            continue
        pdfium_c.FPDFText_GetLooseCharBox(raw, i, ref)  # page space: y grows upwards
        lines[-1].append((ch, rect.left - left, top - rect.top, rect.right - left, top - rect.bottom))
    return [line for line in lines if any(c[1] is not None for c in line)]


def _extent(line: list[Char]) -> tuple[float, float, float, float]:
    boxed = [c for c in line if c[1] is not None]
    return (min([c[1] for c in boxed]), min([c[2] for c in boxed]),  # type: ignore[type-var]
            max([c[3] for c in boxed]), max([c[4] for c in boxed]))  # type: ignore[type-var]


def _covered(line: list[Char]) -> list[tuple[float, float]]:
    """The x-intervals a line's ink covers, word gaps filled (a gutter is wider than a word gap)."""
    boxes = sorted((c[1], c[3]) for c in line if c[1] is not None)
    x0, top, x1, bottom = _extent(line)
    gap = 0.8 * (bottom - top)
    out = [list(boxes[0])]
    for a, b in boxes[1:]:
        if a - out[-1][1] < gap:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _gutter(lines: list[list[Char]], covers: list[list[tuple[float, float]]], width: float) -> float | None:
    """The x of the gap between two text columns, or None for a one-column page."""
    if len(lines) < 6 or width <= 0:
        return None
    lo, hi = int(0.2 * width), int(0.8 * width)
    steps = [0] * (hi - lo + 1)  # +1 where an interval starts, -1 after it ends: one point per bin
    for intervals in covers:
        for a, b in intervals:
            a_, b_ = max(lo, int(a)), min(hi, int(b) + 1)
            if a_ < b_:
                steps[a_ - lo] += 1
                steps[b_ - lo] -= 1
    count = list(accumulate(steps[:-1]))
    limit = max(1, int(0.2 * len(lines)))
    best, run_start = (0, 0), None
    for x, c in enumerate([*count, limit + 1]):
        if c <= limit and run_start is None:
            run_start = x
        elif c > limit and run_start is not None:
            if x - run_start > best[1] - best[0]:
                best = (run_start, x)
            run_start = None
    # A gutter is a narrow gap with text on both sides; a wide one (a table's key and value columns,
    # a half-empty page) is not read column by column.
    if not 6 <= best[1] - best[0] <= 0.12 * width or best[0] == 0 or best[1] >= len(count):
        return None
    g0, g1 = best[0] + lo, best[1] + lo
    gx = (g0 + g1) / 2
    lefts = [max(b for _, b in iv if b <= gx) for iv in covers if any(b <= gx for _, b in iv)]
    rights = [min(a for a, _ in iv if a >= gx) for iv in covers if any(a >= gx for a, _ in iv)]
    if len(lefts) < 3 or len(rights) < 3:
        return None
    # Real columns run up to the gutter on both sides; a table's short cells do not.
    lefts.sort()
    rights.sort()
    if lefts[len(lefts) // 2] < g0 - 0.12 * width or rights[len(rights) // 2] > g1 + 0.12 * width:
        return None
    return gx


def _order(lines: list[list[Char]], width: float) -> list[list[Char]]:
    """Lines in reading order: on a two-column page, each band's left column, then its right column."""
    covers = [_covered(line) for line in lines] if len(lines) >= 6 else []
    gx = _gutter(lines, covers, width)
    if gx is None:
        return lines
    spanning: list[list[Char]] = []
    halves: list[tuple[int, list[Char]]] = []  # (0 left | 1 right, chars)
    for line, cover in zip(lines, covers):
        if any(a < gx < b for a, b in cover):
            spanning.append(line)
            continue
        left: list[Char] = []
        right: list[Char] = []
        side = left
        for c in line:
            if c[1] is not None:
                side = left if (c[1] + c[3]) / 2 < gx else right  # type: ignore[operator]
            side.append(c)
        halves.extend((k, part) for k, part in ((0, left), (1, right)) if any(c[1] is not None for c in part))
    spanning.sort(key=lambda line: _extent(line)[1])
    tops = [_extent(line)[1] for line in spanning]
    bands: list[list[tuple[int, float, list[Char]]]] = [[] for _ in range(len(spanning) + 1)]
    for k, part in halves:
        top = _extent(part)[1]
        bands[sum(1 for t in tops if t < top)].append((k, top, part))
    out: list[list[Char]] = []
    for b, band in enumerate(bands):
        out.extend(part for _, _, part in sorted(band, key=lambda x: (x[0], x[1])))
        if b < len(spanning):
            out.append(spanning[b])
    return out


def _key(line: list[Char]) -> str:
    return re.sub(r"\d+", "#", " ".join("".join(c[0] for c in line).split()).lower())


def _margins(lines: list[list[Char]], height: float) -> dict[int, str]:
    """Lines in the top or bottom band of the page (where headers and footers live): index -> key."""
    out = {}
    for i, line in enumerate(lines):
        _, top, _, bottom = _extent(line)
        if bottom <= MARGIN * height or top >= (1 - MARGIN) * height:
            out[i] = _key(line)
    return out


def _lines(lines: list[list[Char]]) -> list[Line]:
    """A page's ordered character lines as text lines with word boxes, joined as running text or paragraphs."""
    out: list[Line] = []
    prev: tuple[tuple[float, float, float, float], str] | None = None
    for chars in lines:
        text = "".join(c[0] for c in chars)
        a, b = len(text) - len(text.lstrip()), len(text.rstrip())
        chars, text = chars[a:b], text[a:b]
        words = []
        for m in _WORD.finditer(text):
            boxed = [c for c in chars[m.start():m.end()] if c[1] is not None]
            if boxed:
                words.append((m.start(), m.end(), *_extent(boxed)))
        ext = _extent(chars)
        sep = "\n"
        if prev is not None:
            (_, ptop, _, pbottom), ptext = prev
            height = pbottom - ptop
            gap = ext[1] - pbottom
            # The next line of the same paragraph, or the top of the next column: the sentence flows on.
            if -0.5 * height < gap < 0.8 * height or ext[1] < ptop - height:
                hyphenated = ptext.endswith("-") and ptext[-2:-1].isalpha() and text[:1].islower()
                sep = "" if hyphenated else " "
            elif not ptext.endswith(SENTENCE_END) and gap < 1.5 * height:
                sep = " "
        out.append(Line(text, words, sep))
        prev = (ext, text)
    return out
