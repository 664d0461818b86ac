"""The Library panel: its filter and labels, and in headless Chromium against a real `qa serve`."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qa.serving.ui_library import MAX_SHOWN, label, matching, summary
from qa.types import Document

from .conftest import ARTIFACTS, ROOT, SEED_FILE
from .test_ui import _ask, _open, _start, _stop, page  # noqa: F401 (a fixture)

QUESTION = "Where will Putin travel after North Korea?"
FERRY = "The night ferry Nordlys sails from Tromsø to Svalbard every Tuesday at nine."


def test_filter_and_labels() -> None:
    from zoneinfo import ZoneInfo

    docs = [Document(f"/d/note{i}.txt", title=f"Note {i}", type="txt", chunks=1, added="2019-11-29T09:30:00Z")
            for i in range(1000)] + [Document("/d/ferry.md", title="Timetables", type="md", chunks=3)]
    # When it was added, in the reader's time zone (the UTC of the catalogue was shown as if it were local).
    assert label(docs[0], zone=ZoneInfo("UTC")) == "note0.txt · txt · 1 chunk · added 29 Nov 2019 09:30"
    assert label(docs[0], zone=ZoneInfo("Asia/Tokyo")) == "note0.txt · txt · 1 chunk · added 29 Nov 2019 18:30"
    assert label(docs[-1]) == "ferry.md · md · 3 chunks · added unknown"
    # Two documents of one name (a folder's and an upload) are told apart by their folder.
    from dataclasses import replace

    from qa.serving.ui_library import twins

    two = [replace(docs[-1], source="/docs/ferry.md"), replace(docs[-1], source="/index/uploads/ferry.md")]
    assert [label(d, twins(two)).split(" · ")[0] for d in two] == ["docs/ferry.md", "uploads/ferry.md"]
    assert [d.source for d in matching(docs, "TIMETABLES")] == ["/d/ferry.md"]
    assert len(matching(docs, "note 99")) == 19  # every word matches: note99, note199..note899, note990..note999
    assert summary(1001, 1001, "") == f"1001 documents; showing the first {MAX_SHOWN}, type to narrow the list"
    assert summary(1, 1001, "md") == "1 of 1001 documents match"


def _items(pg: Any) -> list[str]:
    return [t.split(" · ")[0] for t in pg.locator("#qa-doc-list label").all_inner_texts()]


def _three_documents(tmp_path: Path) -> tuple[Path, Path]:
    """A folder of three documents (putin.txt, ferry.txt, owls.md) and an index of it: (folder, index)."""
    docs, index = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    shutil.copy(SEED_FILE, docs / "putin.txt")
    (docs / "ferry.txt").write_text(FERRY)
    (docs / "owls.md").write_text("# Arctic birds\n\nSnowy owls hunt lemmings on the open tundra.\n")
    subprocess.run([sys.executable, "-m", "qa", "ingest", str(docs)], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "QA_INDEX_DIR": str(index)})
    return docs, index


@pytest.mark.slow
def test_panel_lists_scopes_and_removes(tmp_path: Path, page: Any) -> None:  # noqa: F811
    docs, index = _three_documents(tmp_path)
    proc, url = _start(index, tmp_path / "serve.log")
    try:
        _open(page, url)
        page.wait_for_function("document.querySelectorAll('#qa-doc-list label').length === 3")
        assert _items(page) == ["ferry.txt", "owls.md", "putin.txt"]
        row = page.locator("#qa-doc-list label").filter(has_text="owls.md").inner_text()
        import re

        assert re.fullmatch(r"owls\.md · md · 1 chunk · added \d{1,2} [A-Z][a-z]{2}( \d{4})? \d\d:\d\d", row.strip())
        assert "3 documents" in page.locator("#qa-doc-count").inner_text()

        page.locator("#qa-doc-filter textarea, #qa-doc-filter input").first.fill("ferry")
        page.wait_for_function("document.querySelectorAll('#qa-doc-list label').length === 1")
        assert _items(page) == ["ferry.txt"]
        page.locator("#qa-doc-list label").filter(has_text="ferry.txt").click()
        page.locator("#qa-doc-only").click()
        page.wait_for_function("document.querySelector('#qa-scope').innerText.includes('ferry.txt')")

        answer = _ask(page, QUESTION)  # the best passage is outside the scope
        assert "qa-notfound" in answer.get_attribute("class") and "Vietnam" not in answer.inner_text()
        related = page.locator("#qa-turn-1 .qa-file").all_inner_texts()
        assert related and set(related) == {"ferry.txt"}
        answer = _ask(page, "When does the night ferry Nordlys sail to Svalbard?")
        assert "Tuesday" in answer.inner_text()
        assert set(page.locator("#qa-turn-2 .qa-file").all_inner_texts()) == {"ferry.txt"}

        # Remove asks first; Cancel keeps the document.
        page.locator("#qa-doc-remove").click()
        page.wait_for_selector("#qa-doc-confirm", state="visible")
        assert "ferry.txt" in page.locator("#qa-doc-question").inner_text()
        page.locator("#qa-doc-no").click()
        page.wait_for_selector("#qa-doc-confirm", state="hidden")
        page.locator("#qa-doc-filter textarea, #qa-doc-filter input").first.fill("")
        page.wait_for_function("document.querySelectorAll('#qa-doc-list label').length === 3")

        page.locator("#qa-doc-remove").click()
        page.locator("#qa-doc-yes").click()
        page.wait_for_function("document.querySelectorAll('#qa-doc-list label').length === 2")
        assert _items(page) == ["owls.md", "putin.txt"]
        assert "removed 1 document" in page.locator("#qa-doc-result").inner_text()
        page.wait_for_function("document.querySelector('#qa-status').innerText.includes('2 documents')")
        assert "ferry.txt" not in page.locator("#qa-scope").inner_text()  # the scope lost it: all documents
        assert (docs / "ferry.txt").exists()  # the user's file stays
        answer = _ask(page, QUESTION)
        assert "Vietnam" in answer.inner_text()
        answer = _ask(page, "When does the night ferry Nordlys sail to Svalbard?")
        assert "Tuesday" not in answer.inner_text()
        assert "ferry.txt" not in " ".join(page.locator("#qa-turn-4 .qa-file").all_inner_texts())
        # Re-index reads a changed file again.
        (docs / "owls.md").write_text("# Arctic birds\n\nSnowy owls hunt voles in the forest in winter.\n")
        page.locator("#qa-doc-list label").filter(has_text="owls.md").click()
        page.locator("#qa-doc-reindex").click()
        page.locator("#qa-doc-result li").filter(has_text="updated").wait_for()
        assert "voles" in _ask(page, "What do snowy owls hunt in winter?").inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "library-panel.png"), full_page=True)
    finally:
        _stop(proc)


@pytest.mark.slow
def test_the_ask_only_scope_comes_back_after_a_reload_less_removed_documents(tmp_path: Path,
                                                                             page: Any) -> None:  # noqa: F811
    """Top-k and the answer mode survived a reload; the "Ask only" documents did not."""
    import urllib.parse
    import urllib.request

    docs, index = _three_documents(tmp_path)
    proc, url = _start(index, tmp_path / "serve.log")

    def scope() -> list[str]:
        return page.locator("#qa-scope .token").all_inner_texts()

    try:
        _open(page, url)
        page.wait_for_function("document.querySelectorAll('#qa-doc-list label').length === 3")
        for name in ("ferry.txt", "owls.md"):
            page.locator("#qa-doc-list label").filter(has_text=name).click()
            page.wait_for_timeout(500)  # each tick is an event of its own; a reader is no quicker
        page.locator("#qa-doc-only").click()
        page.wait_for_function("document.querySelectorAll('#qa-scope .token').length === 2")
        page.wait_for_timeout(1000)  # kept in the browser
        page.reload()
        page.wait_for_selector("#qa-question textarea")
        page.wait_for_function("document.querySelectorAll('#qa-scope .token').length === 2")
        assert sorted(t.strip() for t in scope()) == ["ferry.txt", "owls.md"]
        answer = _ask(page, QUESTION)  # asked only of those two: Putin's letter is out of scope
        assert "qa-notfound" in answer.get_attribute("class") and "Vietnam" not in answer.inner_text()
        # owls.md is removed (here through the API, as another window or program would): the next visit keeps
        # the rest of the scope, without an error.
        source = urllib.parse.quote(str(docs / "owls.md"), safe="")
        with urllib.request.urlopen(urllib.request.Request(f"{url}v1/documents/{source}", method="DELETE")) as r:
            assert r.status == 200
        page.reload()
        page.wait_for_selector("#qa-question textarea")
        page.wait_for_function("document.querySelectorAll('#qa-doc-list label').length === 2")
        page.wait_for_function("document.querySelectorAll('#qa-scope .token').length === 1")
        assert [t.strip() for t in scope()] == ["ferry.txt"]
        assert "Tuesday" in _ask(page, "When does the night ferry Nordlys sail to Svalbard?").inner_text()
        assert page.locator(".toast-body").count() == 0
        page.reload()  # and what was dropped stays dropped
        page.wait_for_selector("#qa-question textarea")
        page.wait_for_function("document.querySelectorAll('#qa-scope .token').length === 1")
        assert [t.strip() for t in scope()] == ["ferry.txt"]
    finally:
        _stop(proc)


@contextlib.contextmanager
def _three_listed(tmp_path: Path, view: Any) -> Iterator[None]:
    """`qa serve` over three documents, open in `view` with the three listed, stopped afterwards."""
    _, index = _three_documents(tmp_path)
    proc, url = _start(index, tmp_path / "serve.log")
    try:
        _open(view, url)
        view.wait_for_function("document.querySelectorAll('#qa-doc-list label').length === 3")
        view.wait_for_timeout(500)
        yield
    finally:
        _stop(proc)


def _tick_quickly(view: Any, first: str, second: str, ask_only: bool = False) -> None:
    """Tick two documents' boxes milliseconds apart (and press "Ask only these" with the second), as fast hands
    or keys do."""
    view.evaluate("""([first, second, askOnly]) => {
        const box = (name) => [...document.querySelectorAll('#qa-doc-list label')]
            .find((l) => l.innerText.includes(name)).querySelector('input');
        box(first).click();
        setTimeout(() => { box(second).click(); if (askOnly) document.getElementById('qa-doc-only').click(); }, 0);
    }""", [first, second, ask_only])


@pytest.mark.slow
def test_two_ticks_milliseconds_apart_are_both_kept(tmp_path: Path, page: Any) -> None:  # noqa: F811
    """Gradio drops an event triggered while the previous one of its kind still runs: of two quick ticks the second
    stayed shown but was not selected, and "Ask only these" asked only the first document."""
    with _three_listed(tmp_path, page):
        _tick_quickly(page, "ferry.txt", "owls.md")
        page.wait_for_timeout(1000)
        # A filter redraws the list from what is selected: both ticks are still there when it is cleared.
        query = page.locator("#qa-doc-filter textarea, #qa-doc-filter input").first
        query.fill("putin")
        page.wait_for_function("document.querySelectorAll('#qa-doc-list label').length === 1")
        query.fill("")
        page.wait_for_function("document.querySelectorAll('#qa-doc-list label').length === 3")
        page.wait_for_timeout(500)
        ticked = page.locator("#qa-doc-list label").filter(has=page.locator("input:checked"))
        assert sorted(t.split(" · ")[0] for t in ticked.all_inner_texts()) == ["ferry.txt", "owls.md"]
        page.locator("#qa-doc-only").click()
        page.wait_for_function("document.querySelectorAll('#qa-scope .token').length > 0")
        page.wait_for_timeout(500)
        assert sorted(t.strip() for t in page.locator("#qa-scope .token").all_inner_texts()) == ["ferry.txt", "owls.md"]
        answer = _ask(page, QUESTION)  # the scope sent with it holds both: their passages are the related ones
        assert "qa-notfound" in answer.get_attribute("class")
        assert set(page.locator("#qa-turn-1 .qa-file").all_inner_texts()) == {"ferry.txt", "owls.md"}


@pytest.mark.slow
def test_ask_only_right_after_the_ticks_asks_them_all(tmp_path: Path, page: Any) -> None:  # noqa: F811
    """The buttons acted on the ticks recorded so far: pressed while a tick's event still ran (two ticks, then
    "Ask only these" at once, as a keyboard does it with Space, Tab, Enter), they left the last tick out."""
    with _three_listed(tmp_path, page):
        _tick_quickly(page, "ferry.txt", "owls.md", ask_only=True)
        page.wait_for_function("document.querySelectorAll('#qa-scope .token').length > 0")
        page.wait_for_timeout(500)
        assert sorted(t.strip() for t in page.locator("#qa-scope .token").all_inner_texts()) == ["ferry.txt", "owls.md"]
        # Remove… right after a tick names it too.
        page.evaluate("""() => { [...document.querySelectorAll('#qa-doc-list label')].find((l) => l.innerText
                                   .includes('putin.txt')).querySelector('input').click();
                                 document.getElementById('qa-doc-remove').click(); }""")
        page.locator("#qa-doc-question").filter(has_text="putin.txt").wait_for()
        assert "3 documents" in page.locator("#qa-doc-question").inner_text()
