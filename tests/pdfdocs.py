"""PDFs and images drawn by the tests (reportlab, Pillow), with where each sentence was drawn.

Positions are in PDF points from the page's top-left corner (images: pixels), like `qa.types.Box`:
each entry is (text, x0, baseline, x1) for one drawn line.
"""

from __future__ import annotations

from pathlib import Path

W, H = 612.0, 792.0  # US letter, points
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
Drawn = dict[str, list[tuple[str, float, float, float]]]

FACTS = [(72, 700, "The bridge at Alder Creek opened in 1932."),
         (200, 500, "The orchard behind the mill grows forty kinds of pears."),
         (120, 300, "A museum of clocks stands next to the harbour.")]
LEFT = ["The northern glacier of Vatna retreated four", "hundred meters during the summer of 2019.",
        "Scientists blamed the warm winds that blew", "from the south for many weeks that year.",
        "Local farmers reported that their wells", "filled with meltwater earlier than usual."]
RIGHT = ["The copper mine at Falun produced most of", "the copper used in Europe in the 1600s.",
         "Its great pit collapsed in 1687 without", "killing a single miner, because it was a",
         "holiday and nobody was working below.", "The mine closed for good in 1992."]
PAGE1 = ["Ships have served the islands of the west for centuries, and the", "timetable changes with the seasons.",
         "In summer there are three sailings a day from the old pier. The ferry", "to the island of Ulva leaves at seven in the morning and the crossing"]
PAGE2 = ["takes twenty minutes in calm weather. Tickets are sold on board.",
         "Bicycles travel free of charge on every sailing."]
SCAN = ["The lighthouse keeper of Skerry Point", "counted ninety ships in the winter of 1911."]
NOTE = ["The old tram to Brennfeld is painted", "dark green and stops at the market square."]


def _lines(c, font: str, size: float, lines: list[tuple[float, float, str]], drawn: list) -> None:
    c.setFont(font, size)
    for x, baseline, text in lines:
        c.drawString(x, H - baseline, text)
        drawn.append((text, x, baseline, x + c.stringWidth(text, font, size)))


def facts_pdf(path: Path) -> Drawn:
    """One page, three sentences at known places."""
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=(W, H))
    drawn: list = []
    _lines(c, "Helvetica", 12, [(x, H - y, t) for x, y, t in FACTS], drawn)
    c.save()
    return {"page1": drawn}


def columns_pdf(path: Path) -> Drawn:
    """Two pages of two columns drawn line by line across both columns (content order interleaves
    them), a title spanning both, a running header and page numbers."""
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=(W, H))
    drawn: Drawn = {"left": [], "right": [], "furniture": []}
    for page in (1, 2):
        _lines(c, "Helvetica", 9, [(72, 40, "Journal of Worked Examples, Volume 3")], drawn["furniture"])
        if page == 1:
            _lines(c, "Helvetica-Bold", 14, [(150, 90, "Glaciers and Mines of the North")], [])
        for i, (left, right) in enumerate(zip(LEFT, RIGHT) if page == 1 else []):
            _lines(c, "Helvetica", 10, [(72, 130 + 14 * i, left)], drawn["left"])
            _lines(c, "Helvetica", 10, [(320, 130 + 14 * i, right)], drawn["right"])
        if page == 2:
            _lines(c, "Helvetica", 10, [(72, 130, "The second page has one short paragraph only.")], [])
        _lines(c, "Helvetica", 9, [(300, 760, str(page))], drawn["furniture"])
        c.showPage()
    c.save()
    return drawn


def ferry_pdf(path: Path) -> Drawn:
    """A sentence that starts at the foot of page 1 and ends at the top of page 2 (with page numbers)."""
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=(W, H))
    drawn: Drawn = {"page1": [], "page2": []}
    _lines(c, "Helvetica", 11, [(72, 660 + 14 * i, t) for i, t in enumerate(PAGE1)], drawn["page1"])
    _lines(c, "Helvetica", 9, [(290, 760, "Page 1 of 2")], [])
    c.showPage()
    _lines(c, "Helvetica", 11, [(72, 80 + 14 * i, t) for i, t in enumerate(PAGE2)], drawn["page2"])
    _lines(c, "Helvetica", 9, [(290, 760, "Page 2 of 2")], [])
    c.showPage()
    c.save()
    return drawn


def text_image(path: Path, lines: list[str], dpi: int = 300, size: tuple[int, int] | None = None,
               at: tuple[int, int] = (150, 300), px: int = 42) -> Drawn:
    """Lines of text rendered into an image (no text layer); positions in pixels of the image."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(FONT, px)
    image = Image.new("RGB", size or (int(W * dpi / 72), int(H * dpi / 72)), "white")
    draw = ImageDraw.Draw(image)
    drawn = []
    for i, text in enumerate(lines):
        x, y = at[0], at[1] + int(i * px * 1.5)
        draw.text((x, y), text, font=font, fill="black")
        x0, y0, x1, y1 = draw.textbbox((x, y), text, font=font)
        drawn.append((text, float(x0), float(y1), float(x1)))  # baseline ~ bottom of the ink
    image.save(path, dpi=(dpi, dpi))
    return {"page1": drawn}


def scanned_pdf(path: Path, lines: list[str] = SCAN, pages: int = 1) -> Drawn:
    """A PDF whose pages are only images of text (a scan: no text layer); positions in points."""
    from reportlab.pdfgen import canvas

    png = path.with_suffix(".scan.png")
    pixels = text_image(png, lines)
    c = canvas.Canvas(str(path), pagesize=(W, H))
    for _ in range(pages):
        c.drawImage(str(png), 0, 0, width=W, height=H)
        c.showPage()
    c.save()
    png.unlink()
    k = 72 / 300
    return {"page1": [(t, x0 * k, base * k, x1 * k) for t, x0, base, x1 in pixels["page1"]]}
