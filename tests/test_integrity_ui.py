"""The chat UI over a damaged index: a banner says what is wrong, questions and uploads are refused."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from .test_integrity import damage_sqlite_header, files
from .test_ui import ARTIFACTS, _start, _stop

pytestmark = pytest.mark.slow


def test_damaged_index_shows_a_banner_and_refuses_questions_and_uploads(
        seeded_index: Path, tmp_path: Path, browser: Any) -> None:  # noqa: F811
    index = tmp_path / "index"
    shutil.copytree(seeded_index, index)
    damage_sqlite_header(index)
    before = files(index)
    proc, url = _start(index, tmp_path / "serve.log")
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        pg = ctx.new_page()
        pg.set_default_timeout(60_000)
        pg.goto(url)
        banner = pg.locator("#qa-banner .qa-damaged")
        banner.wait_for()
        text = banner.inner_text()
        assert "is damaged" in text and "qa ingest --rebuild" in text
        box = pg.locator("#qa-question textarea")
        box.fill("Where will Putin travel after North Korea?")
        box.press("Enter")
        pg.locator("#qa-chat .qa-error").wait_for()
        assert "is damaged" in pg.locator("#qa-chat .qa-error").inner_text()
        pg.locator("#qa-upload input[type=file]").set_input_files(
            files=[{"name": "new.txt", "mimeType": "text/plain", "buffer": b"The orchard has forty quince trees."}])
        pg.locator(".toast-body").filter(has_text="damaged").last.wait_for()
        assert "Traceback" not in pg.content()
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / "damaged-index-banner.png"))
    finally:
        ctx.close()
        _stop(proc)
    # Nothing was written to the index (the conversation store and the UI's key beside it are not part of it).
    skip = ("conversations.sqlite3", "ui-secret")
    assert files(index, skip) == {k: v for k, v in before.items() if not k.startswith(skip)}
    assert not (index / "uploads").exists()
