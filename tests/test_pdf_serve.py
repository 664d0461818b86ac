"""PDF evidence over HTTP and in the UI: page images with the cited words highlighted, in a real browser."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from qa.serving.ui import render_sources
from qa.types import Answer, Box, Citation

from . import pdfdocs
from .conftest import ARTIFACTS
from .test_server import KEY, api, start, stop

FERRY = "How long does the ferry crossing to Ulva take?"


def test_pdf_card_shows_its_page_and_other_formats_keep_the_text() -> None:
    text = "The ferry leaves at seven."
    pdf = Citation(1, "/docs/a b.pdf", 10, 36, text, 0.9, 0, 40, f"Intro. {text} More.", "page 2",
                   page=2, boxes=(Box(2, 72, 80, 300, 92), Box(3, 72, 70, 200, 82)))
    txt = Citation(2, "/docs/notes.txt", 0, 26, text, 0.8, 0, 26, text)
    html = render_sources(Answer("q", "a [1] [2]", True, (pdf, txt)), 1,
                          lambda s, p, a=None, b=None, crop=False: f"/img/{quote(s, safe='')}/{p}?crop={int(crop)}&x=1")
    card_pdf, card_txt = html.split('<article')[1:]
    assert card_pdf.count("<img ") == 2  # a crop of each page the span is on
    assert 'src="/img/%2Fdocs%2Fa%20b.pdf/2?crop=1&amp;x=1"' in card_pdf and "/3?crop=1" in card_pdf
    assert 'href="/img/%2Fdocs%2Fa%20b.pdf/2?crop=0&amp;x=1"' in card_pdf  # click: the whole page
    assert "<mark>" in card_pdf and "<img" not in card_txt and "<mark>" in card_txt
    assert "<img" not in render_sources(Answer("q", "a [1]", True, (pdf,)), 1)  # no server: text only


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`qa serve --api-key KEY` over an index of generated PDFs: (base URL, docs folder)."""
    from qa import Assistant

    root = tmp_path_factory.mktemp("pdf-serve")
    docs = root / "docs"
    docs.mkdir()
    pdfdocs.ferry_pdf(docs / "ferry.pdf")
    pdfdocs.columns_pdf(docs / "columns.pdf")
    (docs / "plain.txt").write_text("The village of Morrow has a blue water tower beside the school.\n")
    Assistant(index_dir=root / "index").ingest(docs)
    proc, url = start(root / "index", root / "serve.log", "--api-key", KEY)
    yield url, docs
    stop(proc)


def _yellow(png: bytes) -> float:
    from PIL import Image

    px = list(Image.open(io.BytesIO(png)).convert("RGB").get_flattened_data())
    return sum(1 for r, g, b in px if r > 180 and r - b > 60) / len(px)


@pytest.mark.slow
def test_page_route_serves_the_highlighted_page(served: tuple[str, Path]) -> None:
    url, docs = served
    c = api(url, "POST", "/v1/ask", json={"question": FERRY}).json()["citations"][0]
    assert c["page"] == 1 and {b["page"] for b in c["boxes"]} == {1, 2}
    path = f"/v1/documents/{quote(c['source'], safe='')}/pages/2.png"
    r = api(url, "GET", path, params={"start": c["start"], "end": c["end"]})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and _yellow(r.content) > 0.001
    plain = api(url, "GET", path)
    assert plain.status_code == 200 and _yellow(plain.content) == 0
    crop = api(url, "GET", path, params={"start": c["start"], "end": c["end"], "crop": 1})
    assert crop.status_code == 200 and len(crop.content) < len(r.content) and _yellow(crop.content) > 0.05
    assert api(url, "GET", path, key=None).status_code == 401
    assert api(url, "GET", path, key=None, params={"sig": "0" * 32}).status_code == 401
    missing = api(url, "GET", f"/v1/documents/{quote(str(docs / 'plain.txt'), safe='')}/pages/1.png")
    assert missing.status_code == 404 and "not an indexed PDF or image" in missing.json()["error"]["message"]
    assert api(url, "GET", path.replace("/2.png", "/9.png")).status_code == 404
    secret = api(url, "GET", f"/v1/documents/{quote('/etc/passwd', safe='')}/pages/1.png")
    assert secret.status_code == 404


@pytest.mark.slow
def test_sources_panel_shows_the_highlighted_page(served: tuple[str, Path], browser: Any) -> None:
    import httpx

    from .test_ui import _ask, _open

    url, _ = served
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    try:
        _open(page, url + "/")
        assert "twenty minutes" in _ask(page, FERRY).inner_text()
        card = page.locator("#qa-sources .qa-turn").last.locator(".qa-src").first
        images = card.locator(".qa-page img")
        assert images.count() == 2  # the sentence runs from page 1 onto page 2
        page.wait_for_function("[...document.querySelectorAll('#qa-sources .qa-turn:last-child .qa-page img')]"
                               ".every(i => i.complete && i.naturalWidth > 0)")
        card.scroll_into_view_if_needed()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "pdf-highlighted-page.png"), full_page=True)
        card.screenshot(path=str(ARTIFACTS / "pdf-highlighted-card.png"))
        # The browser fetched the crops without the API key (signed URLs); each shows the highlight.
        for i in range(2):
            src = images.nth(i).get_attribute("src") or ""
            assert "crop=1" in src and "sig=" in src
            assert _yellow(httpx.get(url + src, timeout=60).content) > 0.05
        for n in (1, 2):  # each crop opens its own page (both opened the first)
            with page.expect_popup() as popup:
                card.locator(".qa-page").nth(n - 1).click()
            full = popup.value
            full.wait_for_load_state()
            assert f"/pages/{n}.png" in full.url and "crop" not in full.url
            assert full.evaluate("document.images[0].naturalWidth") == 1224  # the whole page at 144 dpi
            full.screenshot(path=str(ARTIFACTS / f"pdf-full-page-{n}.png"))
            full.close()
        # Reopened (a reload), the conversation shows the pages again.
        page.reload()
        page.wait_for_selector("#qa-sources .qa-turn .qa-page img")
        assert page.locator("#qa-sources .qa-turn").last.locator(".qa-src").first.locator(".qa-page img").count() == 2
    finally:
        ctx.close()
