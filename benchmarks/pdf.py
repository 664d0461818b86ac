"""Reading speed of PDFs: text-layer pages per second (pypdfium2 with word boxes) and OCR pages per second.

    python -m benchmarks pdf [--text-pages 100] [--ocr-pages 5]

Both PDFs are drawn here with reportlab: the text PDF has full US-letter pages of 10-point prose
(about 45 lines, 3,500 characters a page); the scanned one has pages that are only a 300-dpi image
of such text (no text layer), so every page goes through Tesseract. The figure is the time of
`qa.reading.formats.load` (extraction, reading order, boxes), without embedding; CPU seconds (qa and the
tesseract processes) are printed too, since wall-clock time on a shared machine follows its load.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path

from .common import row, scratch

PROSE = ("The survey of the northern valleys recorded the height of every glacier and the date on which "
         "its meltwater first reached the farms below. Farmers reported that wells filled earlier each year, "
         "and the council built three new channels to carry the water to the river before the summer floods. ")
W, H = 612, 792


def _lines(chars_per_line: int = 95, lines: int = 45) -> list[str]:
    return textwrap.wrap(PROSE * 12, chars_per_line)[:lines]


def text_pdf(path: Path, pages: int) -> None:
    """`pages` pages of 10-point prose with a text layer."""
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=(W, H))
    for _ in range(pages):
        c.setFont("Helvetica", 10)
        for i, line in enumerate(_lines()):
            c.drawString(60, H - 60 - 15 * i, line)
        c.showPage()
    c.save()


def scanned_pdf(path: Path, pages: int) -> None:
    """`pages` pages that are only a 300-dpi image of prose (a scan)."""
    from PIL import Image, ImageDraw, ImageFont
    from reportlab.pdfgen import canvas

    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 40)
    image = Image.new("L", (W * 300 // 72, H * 300 // 72), 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(_lines(chars_per_line=95, lines=45)):
        draw.text((250, 250 + 62 * i), line, font=font, fill=0)
    png = path.with_suffix(".png")
    image.save(png)
    c = canvas.Canvas(str(path), pagesize=(W, H))
    for _ in range(pages):
        c.drawImage(str(png), 0, 0, width=W, height=H)
        c.showPage()
    c.save()


def _rate(path: Path, pages: int) -> tuple[float, float, int]:
    """Pages per wall-clock second, CPU seconds per page (this process and tesseract), characters read."""
    import resource

    from qa.reading.formats import load

    def cpu() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    started, cpu0 = time.perf_counter(), cpu()
    doc = load(path)
    seconds = time.perf_counter() - started
    return pages / seconds, (cpu() - cpu0) / pages, len(doc.text)


def main(argv: list[str] | None = None) -> list[str]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks pdf", description=__doc__.splitlines()[0])
    ap.add_argument("--text-pages", type=int, default=100, help="pages of the text-layer PDF")
    ap.add_argument("--ocr-pages", type=int, default=5, help="pages of the scanned PDF")
    args = ap.parse_args(argv)
    rows = []
    with scratch() as tmp:
        text_pdf(tmp / "text.pdf", args.text_pages)
        rate, cpu, chars = _rate(tmp / "text.pdf", args.text_pages)
        figure = (f"**{rate:.1f} pages/s** ({cpu * 1000:.0f} ms CPU/page; {args.text_pages} pages, "
                  f"{chars / args.text_pages:,.0f} chars/page)")
        print(f"text PDF: {figure}", file=sys.stderr)
        rows.append(row("PDF with text layer: text, reading order, word boxes", figure, "—"))
        scanned_pdf(tmp / "scan.pdf", args.ocr_pages)
        rate, cpu, chars = _rate(tmp / "scan.pdf", args.ocr_pages)
        figure = (f"**{rate:.2f} pages/s** ({1 / rate:.1f} s/page, {cpu:.1f} s CPU/page; {args.ocr_pages} pages "
                  f"at 300 dpi, {chars / args.ocr_pages:,.0f} chars/page)")
        print(f"scanned PDF (OCR): {figure}", file=sys.stderr)
        rows.append(row("scanned PDF: render + Tesseract OCR, word boxes", figure, "—"))
    return rows
