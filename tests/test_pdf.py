"""Evidence on the page: PDF and OCR citations carry boxes within a few points of where the words were drawn."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from qa.reading.formats import load
from qa.types import Box, Citation

from . import pdfdocs

TOLERANCE = 4.0  # points (images: pixels) between a citation box and where its words were drawn


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A folder of generated PDFs, a scan, an image and a text file, with where every line was drawn."""
    docs = tmp_path_factory.mktemp("pdfdocs")
    drawn = {
        "facts.pdf": pdfdocs.facts_pdf(docs / "facts.pdf"),
        "columns.pdf": pdfdocs.columns_pdf(docs / "columns.pdf"),
        "ferry.pdf": pdfdocs.ferry_pdf(docs / "ferry.pdf"),
        "scanned.pdf": pdfdocs.scanned_pdf(docs / "scanned.pdf"),
        "note.png": pdfdocs.text_image(docs / "note.png", pdfdocs.NOTE, size=(1400, 500), at=(60, 80)),
    }
    (docs / "plain.txt").write_text("The village of Morrow has a blue water tower beside the school.\n")
    return docs, drawn


@pytest.fixture(scope="module")
def assistant(library: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory):
    from qa import Assistant

    a = Assistant(index_dir=tmp_path_factory.mktemp("pdf-index") / "index")
    report = a.ingest(library[0])
    assert report.count("failed") == 0, report.files
    return a


def _cite(assistant, question: str, words: str) -> Citation:
    ans = assistant.ask(question)
    assert ans.answered, ans.answer
    hits = [c for c in ans.citations if words in c.text]
    assert hits, [c.text for c in ans.citations]
    c = hits[0]
    assert assistant.document_text(c.source)[c.start:c.end] == c.text
    return c


def _near(box: Box, page: int, x0: float, baseline: float, x1: float, line_height: float = 20) -> bool:
    """The box covers one drawn line: same page, left and right edges within tolerance, baseline inside."""
    return (box.page == page and abs(box.x0 - x0) <= TOLERANCE and abs(box.x1 - x1) <= TOLERANCE
            and box.y0 - TOLERANCE <= baseline <= box.y1 + TOLERANCE and box.y1 - box.y0 < line_height)


def test_citation_boxes_lie_where_the_sentence_was_drawn(assistant, library) -> None:
    c = _cite(assistant, "When did the bridge at Alder Creek open?", "Alder Creek")
    text, x0, baseline, x1 = library[1]["facts.pdf"]["page1"][0]
    assert c.text == text and c.page == 1 and len(c.boxes) == 1
    assert _near(c.boxes[0], 1, x0, baseline, x1), (c.boxes, (x0, baseline, x1))
    # The other sentences are elsewhere on the page: a box that covered them would be wrong.
    c2 = _cite(assistant, "How many kinds of pears grow in the orchard behind the mill?", "pears")
    _, x0, baseline, x1 = library[1]["facts.pdf"]["page1"][1]
    assert len(c2.boxes) == 1 and _near(c2.boxes[0], 1, x0, baseline, x1), c2.boxes


def test_json_has_page_and_boxes_for_pdfs_only(assistant) -> None:
    ans = assistant.ask("When did the bridge at Alder Creek open?")
    cited = json.loads(json.dumps(ans.to_dict()))["citations"][0]
    assert cited["page"] == 1 and set(cited["boxes"][0]) == {"page", "x0", "y0", "x1", "y1"}
    plain = assistant.ask("What colour is the water tower in Morrow?").to_dict()["citations"][0]
    assert plain["source"].endswith("plain.txt") and "page" not in plain and "boxes" not in plain


def test_two_columns_read_column_by_column(assistant, library) -> None:
    docs, drawn = library[0], library[1]["columns.pdf"]
    text = load(docs / "columns.pdf").text
    for column in ("left", "right"):
        assert " ".join(t for t, *_ in drawn[column]) in text  # each column's sentences whole, in order
    assert "Journal of Worked Examples" not in text  # the running header, repeated on both pages
    c = _cite(assistant, "Why did nobody die when the great pit at Falun collapsed?", "killing a single miner")
    assert c.text == "Its great pit collapsed in 1687 without killing a single miner, because it was a " \
                     "holiday and nobody was working below."
    lines = drawn["right"][2:5]
    assert len(c.boxes) == 3
    for box, (_, x0, baseline, x1) in zip(c.boxes, lines):
        assert _near(box, 1, x0, baseline, x1), (box, x0, baseline, x1)


def test_sentence_across_a_page_break_has_boxes_on_both_pages(assistant, library) -> None:
    c = _cite(assistant, "How long does the ferry crossing to Ulva take?", "twenty minutes")
    assert c.text == ("The ferry to the island of Ulva leaves at seven in the morning and the crossing "
                      "takes twenty minutes in calm weather.")
    assert c.page == 1 and {b.page for b in c.boxes} == {1, 2}
    drawn = library[1]["ferry.pdf"]
    _, x0, baseline, x1 = drawn["page1"][3]
    assert _near(c.boxes[1], 1, x0, baseline, x1)
    _, x0, baseline, _ = drawn["page2"][0]
    last = c.boxes[-1]
    assert last.page == 2 and abs(last.x0 - x0) <= TOLERANCE and last.y0 <= baseline <= last.y1
    assert "Page 1 of 2" not in assistant.document_text(c.source)


def test_scanned_pdf_is_read_by_ocr_with_boxes_over_the_words(assistant, library) -> None:
    c = _cite(assistant, "How many ships did the lighthouse keeper of Skerry Point count?", "ninety ships")
    assert c.source.endswith("scanned.pdf") and c.page == 1 and len(c.boxes) == 2
    for box, (_, x0, baseline, x1) in zip(c.boxes, library[1]["scanned.pdf"]["page1"]):
        assert _near(box, 1, x0, baseline, x1), (box, x0, baseline, x1)


def test_png_is_read_by_ocr_with_boxes_in_pixels(assistant, library) -> None:
    c = _cite(assistant, "What colour is the tram to Brennfeld painted?", "dark green")
    assert c.source.endswith("note.png") and c.page == 1 and len(c.boxes) == 2
    for box, (_, x0, baseline, x1) in zip(c.boxes, library[1]["note.png"]["page1"]):
        assert _near(box, 1, x0, baseline, x1, line_height=50), (box, x0, baseline, x1)  # 42 px type


def _yellow(image, box: tuple[float, float, float, float]) -> float:
    """Share of highlight-coloured pixels in a rectangle of the image."""
    region = image.crop(tuple(int(v) for v in box)).convert("RGB")
    px = list(region.get_flattened_data())
    return sum(1 for r, g, b in px if r > 180 and r - b > 60) / max(len(px), 1)


def test_page_image_highlights_the_cited_words_and_is_cached(assistant) -> None:
    from PIL import Image

    from qa.reading.pages import SCALE

    c = _cite(assistant, "How long does the ferry crossing to Ulva take?", "twenty minutes")
    png = assistant.page_image(c.source, 2, c.start, c.end)
    image = Image.open(io.BytesIO(png))
    assert image.size == (int(612 * SCALE), int(792 * SCALE))
    box = next(b for b in c.boxes if b.page == 2)
    inside = _yellow(image, (box.x0 * SCALE, box.y0 * SCALE, box.x1 * SCALE, box.y1 * SCALE))
    below = _yellow(image, (box.x0 * SCALE, (box.y1 + 6) * SCALE, box.x1 * SCALE, (box.y1 + 12) * SCALE))
    assert inside > 0.4 and below == 0, (inside, below)
    plain = Image.open(io.BytesIO(assistant.page_image(c.source, 2)))
    assert _yellow(plain, (box.x0 * SCALE, box.y0 * SCALE, box.x1 * SCALE, box.y1 * SCALE)) == 0
    cached = list((Path(assistant.settings.index_dir) / "pages").glob(f"*-2-{c.start}-{c.end}.png"))
    assert len(cached) == 1 and cached[0].read_bytes() == png
    img = _cite(assistant, "What colour is the tram to Brennfeld painted?", "dark green")
    shown = Image.open(io.BytesIO(assistant.page_image(img.source, 1, img.start, img.end)))
    assert shown.size == (1400, 500)
    b = img.boxes[0]
    assert _yellow(shown, (b.x0, b.y0, b.x1, b.y1)) > 0.4


def test_page_image_cache_keeps_to_its_size_dropping_the_least_recently_shown(assistant) -> None:
    """Page images are cached up to QA_PAGE_CACHE_MB: beyond it the least recently shown go; one shown
    again stays. With 0 nothing is kept, and every image is still served."""
    import os
    import time

    from qa import Assistant

    c = _cite(assistant, "How long does the ferry crossing to Ulva take?", "twenty minutes")
    pages = Path(assistant.settings.index_dir) / "pages"
    first, second, third = (assistant.page_image(c.source, 1), assistant.page_image(c.source, 2),
                            assistant.page_image(c.source, 2, c.start, c.end))
    limit = len(first) + len(second) + len(third) - 1  # the third image goes over it
    small = Assistant(index_dir=assistant.settings.index_dir, page_cache_mb=limit / (1 << 20))
    name = lambda *key: next(pages.glob("*-" + "-".join(map(str, key)) + ".png"), None)  # noqa: E731
    for p in pages.glob("*.png"):
        p.unlink()
    small.page_image(c.source, 1)
    os.utime(name(1), (time.time() - 30, time.time() - 30))
    small.page_image(c.source, 2)
    os.utime(name(2), (time.time() - 20, time.time() - 20))
    assert small.page_image(c.source, 1) == first  # served from the cache, and now the most recent
    assert name(1).stat().st_mtime > time.time() - 5
    assert small.page_image(c.source, 2, c.start, c.end) == third  # over the limit: page 2 goes first
    assert name(2) is None and name(2, c.start, c.end) is not None
    # pruned to 80% of the limit: page 1 stays if the two fit in it
    assert (name(1) is not None) == (len(first) + len(third) <= 0.8 * limit)
    assert sum(p.stat().st_size for p in pages.glob("*.png")) <= 0.8 * limit

    none = Assistant(index_dir=assistant.settings.index_dir, page_cache_mb=0)
    for p in pages.glob("*.png"):
        p.unlink()
    assert none.page_image(c.source, 1) == first and not list(pages.glob("*.png"))


def test_page_image_refuses_text_documents_and_missing_pages(assistant) -> None:
    from qa.errors import QAError

    plain = assistant.ask("What colour is the water tower in Morrow?").citations[0]
    with pytest.raises(QAError, match="not an indexed PDF or image"):
        assistant.page_image(plain.source, 1)
    ferry = _cite(assistant, "How long does the ferry crossing to Ulva take?", "twenty minutes")
    with pytest.raises(QAError, match="pages 1 to 2, not 3"):
        assistant.page_image(ferry.source, 3)


def test_without_tesseract_scans_fail_with_the_fix_and_the_rest_is_indexed(
        library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from qa import Assistant

    monkeypatch.setenv("PATH", str(tmp_path))  # no tesseract on the PATH
    report = Assistant(index_dir=tmp_path / "index").ingest(library[0])
    status = {Path(f.path).name: f for f in report.files}
    for name in ("scanned.pdf", "note.png"):
        assert status[name].status == "failed"
        assert status[name].reason == ("OCR needs Tesseract, which is not installed; run: "
                                       "apt-get install tesseract-ocr tesseract-ocr-eng")
    assert {status[n].status for n in ("facts.pdf", "columns.pdf", "ferry.pdf", "plain.txt")} == {"added"}


def test_progress_moves_page_by_page_within_a_file(tmp_path: Path) -> None:
    from qa import Assistant

    docs = tmp_path / "docs"
    docs.mkdir()
    pdfdocs.scanned_pdf(docs / "three.pdf", pages=3)
    seen: list[float] = []
    Assistant(index_dir=tmp_path / "index").ingest(docs, progress=lambda done, total, item: seen.append(done))
    within = [round(d, 2) for d in seen if 0 < d < 1]
    assert within[:3] == [0.33, 0.66, 0.99], seen


def test_changed_pdf_gets_new_boxes_and_removed_pdf_leaves_none(tmp_path: Path) -> None:
    from reportlab.pdfgen import canvas

    from qa import Assistant

    docs = tmp_path / "docs"
    docs.mkdir()
    pdfdocs.facts_pdf(docs / "facts.pdf")
    a = Assistant(index_dir=tmp_path / "index")
    a.ingest(docs)
    before = _cite(a, "When did the bridge at Alder Creek open?", "Alder Creek").boxes[0]
    c = canvas.Canvas(str(docs / "facts.pdf"), pagesize=(pdfdocs.W, pdfdocs.H))
    c.setFont("Helvetica", 12)
    c.drawString(300, pdfdocs.H - 400, pdfdocs.FACTS[0][2])
    c.save()
    assert a.ingest(docs).count("updated") == 1
    after = _cite(a, "When did the bridge at Alder Creek open?", "Alder Creek").boxes[0]
    assert abs(after.x0 - 300) <= TOLERANCE and after.y0 < 400 < after.y1 and after != before
    layouts = a.store().layouts
    assert len({m["digest"] for m in layouts.get(include=["metadatas"])["metadatas"]}) == 1
    (docs / "facts.pdf").unlink()
    a.ingest(docs)
    assert layouts.count() == 0


def test_pdf_indexed_without_boxes_is_read_again_once(tmp_path: Path) -> None:
    from qa import Assistant

    docs = tmp_path / "docs"
    docs.mkdir()
    pdfdocs.facts_pdf(docs / "facts.pdf")
    a = Assistant(index_dir=tmp_path / "index")
    a.ingest(docs)
    a.store().layouts.delete(where={"source": str(docs / "facts.pdf")})  # as an index from before positions
    assert a.ingest(docs).count("updated") == 1
    assert a.store().count() == 1  # its chunks replaced, not doubled
    c = _cite(a, "When did the bridge at Alder Creek open?", "Alder Creek")
    assert c.page == 1 and c.boxes
    assert a.ingest(docs).count("unchanged") == 1


def test_tables_and_short_lines_keep_their_order(tmp_path: Path) -> None:
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(tmp_path / "table.pdf"), pagesize=(pdfdocs.W, pdfdocs.H))
    c.setFont("Helvetica", 10)
    rows = [("Colour of the glaze", "deep red"), ("Weight of the vase", "three kilograms"),
            ("Height of the vase", "forty centimetres"), ("Name of the maker", "Orla Brandt"),
            ("Year it was made", "1931"), ("Town of the workshop", "Bergen"), ("Price at auction", "twelve crowns")]
    for i, (key, value) in enumerate(rows):  # a key-value table: a wide gap, not two columns of text
        c.drawString(72, 700 - 16 * i, key)
        c.drawString(360, 700 - 16 * i, value)
    c.showPage()
    c.setFont("Helvetica", 10)
    verse = ["Short lines of a poem", "keep the order", "in which they stand,", "one under another,",
             "even when", "none of them is long."]
    for i, line in enumerate(verse):
        c.drawString(72, 500 - 14 * i, line)
    c.save()
    text = load(tmp_path / "table.pdf").text
    for key, value in rows:
        assert f"{key} {value}" in text  # each row read across
    assert " ".join(verse) in text


RACE = r'''
import hashlib, sys, threading
from pathlib import Path
from typing import Any

import pypdfium2

from qa.reading.pages import render_page
from qa.reading.pdf import read_pdf
from qa.types import Box

pdfs = [Path(p) for p in sys.argv[1:]]
boxes = [Box(page=1, x0=72, y0=100, x1=300, y1=130), Box(page=2, x0=72, y0=60, x1=300, y1=120)]
jobs = [(p, n, crop) for p in pdfs for n in range(1, len(pypdfium2.PdfDocument(str(p))) + 1) for crop in (False, True)]
want = {j: hashlib.sha256(render_page(j[0], j[1], boxes, crop=j[2])).hexdigest() for j in jobs}
text = {p: read_pdf(p)[0] for p in pdfs}
bad = []

def draw(k):
    for r in range(12):
        j = jobs[(k + r) % len(jobs)]
        if hashlib.sha256(render_page(j[0], j[1], boxes, crop=j[2])).hexdigest() != want[j]:
            bad.append(j)

def read():
    for r in range(6):
        bad.extend(("read", p) for p in pdfs if read_pdf(p)[0] != text[p])

threads = [threading.Thread(target=draw, args=(k,)) for k in range(6)] + [threading.Thread(target=read)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(len(bad))
'''


def test_page_images_drawn_at_once_while_a_pdf_is_read_come_out_whole(library: tuple[Path, dict]) -> None:
    """The server draws page images on several threads while its writer reads an upload: pdfium is not
    thread-safe, and without one lock around it images lost letters (and the server could segfault)."""
    import subprocess
    import sys

    docs, _ = library
    run = subprocess.run([sys.executable, "-c", RACE, str(docs / "ferry.pdf"), str(docs / "facts.pdf"),
                          str(docs / "columns.pdf")], capture_output=True, text=True, timeout=600,
                         cwd=Path(__file__).resolve().parent.parent)
    assert run.returncode == 0, run.stderr[-2000:]  # a segfault is -11
    assert run.stdout.split()[-1] == "0", "images or texts differed from those drawn one at a time"


GIANT = 6000.0  # points a side (83 inches): a PDF says how big its pages are


def _giant_pdfs(folder: Path) -> dict[str, tuple[float, float]]:
    """A scan and a text PDF with one GIANT page each; where their first word was drawn (x0, baseline), points."""
    from reportlab.pdfgen import canvas

    png = folder / "strip.png"
    pixels = pdfdocs.text_image(png, pdfdocs.SCAN[:1], size=(2400, 150), at=(40, 30), px=60)["page1"][0]
    k = GIANT / 2400  # the strip is drawn across the page's top: 2.5 points a pixel
    c = canvas.Canvas(str(folder / "giant-scan.pdf"), pagesize=(GIANT, GIANT))
    c.drawImage(str(png), 0, GIANT - 150 * k, width=GIANT, height=150 * k)
    c.save()
    c = canvas.Canvas(str(folder / "giant-text.pdf"), pagesize=(GIANT, GIANT))
    c.setFont("Helvetica", 48)
    c.drawString(300, GIANT - 400, "The granary at Vell holds rye from the valley.")
    c.save()
    png.unlink()
    return {"giant-scan.pdf": (pixels[1] * k, pixels[2] * k), "giant-text.pdf": (300, 400)}


def test_a_giant_page_is_read_and_drawn_with_fewer_pixels_its_words_in_place(tmp_path: Path, monkeypatch) -> None:
    """A 6,000-point page OCR'd at 300 dpi is 625 million pixels (an 800-byte PDF took 3.3 GB), and drawn as a
    page image at 144 dpi 144 million (an 8,000-point one took 4 GB): such pages get fewer pixels per point."""
    import pypdfium2 as pdfium
    from PIL import Image

    from qa import Assistant
    from qa.reading.ocr import MAX_PIXELS
    from qa.reading.pages import render_page

    drawn: list[int] = []
    render = pdfium.PdfPage.render

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        bitmap = render(self, *args, **kwargs)
        drawn.append(bitmap.width * bitmap.height)
        return bitmap

    monkeypatch.setattr(pdfium.PdfPage, "render", counted)
    where = _giant_pdfs(tmp_path)
    a = Assistant(index_dir=tmp_path / "index")
    assert a.ingest(tmp_path).count("added") == 2
    most = MAX_PIXELS * 1.001  # pdfium rounds a bitmap's sides up
    assert drawn and max(drawn) <= most  # the scan's OCR
    for name, words, (x0, baseline) in [("giant-scan.pdf", "lighthouse keeper", where["giant-scan.pdf"]),
                                        ("giant-text.pdf", "granary at Vell", where["giant-text.pdf"])]:
        source = str(tmp_path / name)
        ans = a.ask(f"What about the {words}?", sources=[source])
        c = next(c for c in ans.citations if words in c.text)
        box = c.boxes[0]
        assert abs(box.x0 - x0) <= 12 and box.y0 - 12 <= baseline <= box.y1 + 12, (name, box, x0, baseline)
        image = Image.open(io.BytesIO(a.page_image(source, 1, c.start, c.end)))
        assert image.width * image.height <= most and abs(image.width - image.height) <= 1
        f = image.width / GIANT
        assert _yellow(image, (box.x0 * f, box.y0 * f, box.x1 * f, box.y1 * f)) > 0.4
    assert max(drawn) <= most
    # An image file over MAX_PIXELS is drawn smaller too, its boxes (in the file's pixels) scaled with it.
    big = tmp_path / "poster.png"
    Image.new("RGB", (9000, 6000), "white").save(big)
    shown = Image.open(io.BytesIO(render_page(big, 1, [Box(1, 4500, 3000, 5400, 3300)])))
    f = shown.width / 9000
    assert shown.width * shown.height <= MAX_PIXELS and abs(shown.height - 6000 * f) <= 1
    assert _yellow(shown, (4500 * f, 3000 * f, 5400 * f, 3300 * f)) > 0.9
