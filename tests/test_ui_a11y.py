"""Accessibility of the chat UI in headless Chromium: axe-core (bundled by axe-playwright-python, so it runs
offline) over the page in the states a reader sees it in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import ARTIFACTS, start_serve, stop_serve
from .test_ui import _ask, _open
from .test_ui_library import _three_documents

# Serious or critical violations inside Gradio's own components, which qa cannot reasonably fix: (axe rule, a CSS
# selector the element matches). Any other one fails the test, so a new one in qa's markup, CSS or labels is seen.
GRADIO = {
    ("nested-interactive", ".toast-header"): "a toast's header is a role=button that holds the toast's close button",
}
QUESTION = "Where will Putin travel after North Korea?"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`qa serve` over an index of three documents: its URL ending in /."""
    _, index = _three_documents(tmp_path_factory.mktemp("a11y"))
    proc, url = start_serve(index, index.parent / "serve.log")
    yield url + "/"
    stop_serve(proc)


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    ctx.close()


def violations(page: Any) -> list[str]:
    """The serious and critical violations axe finds on the page, less GRADIO's, and skipped heading levels
    (the sources panel's headings under the page's h1): one line each."""
    from axe_playwright_python.sync_playwright import Axe

    page.mouse.move(0, 0)  # no hover colours
    page.wait_for_timeout(400)  # transitions (the outline of a card) at rest
    found = []
    for v in Axe().run(page).response["violations"]:
        if v["impact"] not in ("serious", "critical") and v["id"] != "heading-order":
            continue
        known = [sel for rule, sel in GRADIO if rule == v["id"]]
        for node in v["nodes"]:
            target = node["target"][0]
            if known and page.evaluate("([t, known]) => { const e = document.querySelector(t);"
                                       " return !!e && known.some((s) => e.matches(s)); }", [target, known]):
                continue
            found.append(f"{v['id']} {target}: {node['html'][:150]} ({node['failureSummary'][:200]})")
    return found


def _library_page(browser: Any, library: str, width: int, height: int, scheme: str) -> tuple[Any, Any]:
    """A new browser context at this size and colour scheme, and its page on the UI with the three documents listed."""
    ctx = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    page.goto(library)
    page.wait_for_selector("#qa-question textarea")
    page.wait_for_function("document.querySelectorAll('#qa-doc-list label').length === 3")
    return ctx, page


@pytest.mark.slow
@pytest.mark.parametrize(("width", "height", "scheme"), [(1280, 860, "light"), (390, 844, "light"),
                                                         (1280, 860, "dark")])
def test_axe_finds_no_serious_violation_of_qas_own(library: str, browser: Any, width: int, height: int,
                                                   scheme: str) -> None:
    """Soft's indigo-500 and grey were under 4.5:1 (citation markers, the Ask button, labels, hints)."""
    ctx, page = _library_page(browser, library, width, height, scheme)
    try:
        _ask(page, QUESTION)
        page.locator("#qa-chat-list label").first.wait_for()
        # Everything the page can show at once: the settings, both confirmations.
        page.locator("#qa-settings").get_by_text("Settings").click()
        page.locator("#qa-doc-list label").first.click()
        page.locator("#qa-doc-remove").click()
        page.locator("#qa-chat-delete").click()
        page.wait_for_selector("#qa-doc-confirm", state="visible")
        page.wait_for_selector("#qa-chat-confirm", state="visible")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"a11y-{width}-{scheme}.png"), full_page=True)
        assert violations(page) == []
        # Gradio wrote a Group's elem_id on two nested elements: each confirmation's id was there twice.
        assert page.evaluate("""() => { const seen = new Set(), twice = [];
            document.querySelectorAll('[id]').forEach(e => { if (e.id && seen.has(e.id)) twice.push(e.id); seen.add(e.id); });
            return twice; }""") == []
    finally:
        ctx.close()


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_over_related_passages_and_a_warning(library: str, browser: Any, scheme: str) -> None:
    """The sources panel scrolls the long related passages of a "not found", and could not be scrolled without a
    mouse: nothing in it took the focus."""
    ctx, page = _library_page(browser, library, 1280, 860, scheme)
    try:
        _ask(page, "Which treaties did Putin sign in Pyongyang and what did they promise?")
        assert page.locator("#qa-chat .qa-notfound").count() == 1
        assert page.evaluate("(e) => e.scrollHeight > e.clientHeight", page.locator(".qa-sources").element_handle())
        page.locator("#qa-doc-reindex").click()  # nothing ticked: a warning
        page.locator(".toast-body").first.wait_for()
        assert violations(page) == []
    finally:
        ctx.close()


@pytest.mark.slow
def test_fields_without_a_visible_label_are_named_for_what_they_hold(library: str, page: Any) -> None:
    """The question box, the searches and the title field were all announced as "Textbox"."""
    _open(page, library)
    for name in ("Question", "Search conversations", "Title of the conversation", "Filter documents"):
        assert page.get_by_role("textbox", name=name, exact=True).count() == 1, name
    assert page.get_by_role("textbox", name="Textbox").count() == 0
    # The hidden text a screen reader reads out before the conversations said "Radio".
    assert page.locator("#qa-chat-list [data-testid=block-info]").text_content() == "Saved conversations"


@pytest.mark.slow
def test_citation_markers_are_named_sources(library: str, page: Any) -> None:
    """render_answer names a marker "Source 1", but Gradio's sanitizer drops aria-label: it was read as "[1]"."""
    _open(page, library)
    _ask(page, QUESTION)
    chat = page.locator("#qa-chat")
    assert chat.get_by_role("link", name="Source 1", exact=True).count() == 1
    assert chat.get_by_role("link", name="[1]").count() == 0
    page.reload()  # the conversation as stored, rendered again
    page.wait_for_selector(".qa-sources.qa-done #qa-turn-1")
    assert chat.get_by_role("link", name="Source 1", exact=True).count() == 1


def _focused(page: Any) -> str:
    """What has the keyboard's focus: its accessible name (or id) and the id of the element it is in."""
    return page.evaluate("""() => { const e = document.activeElement;
        return `${e.getAttribute('aria-label') || e.id || e.tagName} in #${e.closest('[id]')?.id}`; }""")


@pytest.mark.slow
def test_the_keyboard_alone_asks_opens_a_citation_and_comes_back(library: str, page: Any) -> None:
    """Enter on a marker scrolled to its passage but left the focus on the marker (the page's click handler
    prevents the link's own jump): Tab went on through the answer, and a screen reader did not read the passage."""
    _open(page, library)
    assert _focused(page) == "TEXTAREA in #qa-question"  # the question box has the focus from the start
    page.keyboard.type(QUESTION)
    page.keyboard.press("Enter")
    page.wait_for_selector(".qa-sources.qa-done #qa-turn-1")
    for _ in range(6):  # back from the question box to the answer's first marker
        page.keyboard.press("Shift+Tab")
        if _focused(page) == "Source 1 in #qa-chat":
            break
    assert _focused(page) == "Source 1 in #qa-chat"
    page.keyboard.press("Enter")
    page.wait_for_function("document.activeElement?.id === 'qa-src-1-1'")
    assert "Vietnam" in page.evaluate("document.activeElement.innerText")  # what a screen reader reads next
    page.keyboard.press("Escape")
    assert _focused(page) == "Source 1 in #qa-chat"
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_function("document.activeElement?.id === 'qa-src-1-2'")


@pytest.mark.slow
def test_enter_opens_a_conversation_of_the_list(library: str, page: Any) -> None:
    """The conversations are radio buttons, which take Space or a click: Enter on one did nothing."""
    _open(page, library)
    first, second = "Who is Victor Cha?", "Who denied the arms transfers?"
    _ask(page, first)
    page.locator("#qa-chat-new").click()
    page.wait_for_function("document.querySelectorAll('#qa-chat .qa-question').length === 0")
    _ask(page, second)
    page.locator("#qa-chat-list label").filter(has_text=second).wait_for()  # the list is drawn anew after an answer
    page.locator("#qa-chat-new").focus()
    for _ in range(10):  # Tab along the list to the first conversation
        page.keyboard.press("Tab")
        if first in page.evaluate("document.activeElement.closest('label')?.innerText || ''"):
            break
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.querySelector('#qa-chat .qa-question')?.innerText === {first!r}")
    page.wait_for_function("document.activeElement?.checked")  # the focus stays on it, now the open one


@pytest.mark.slow
def test_the_keyboard_alone_deletes_a_conversation_from_the_trash_button(library: str, page: Any) -> None:
    """Enter on the chat's trash button lost the focus (Gradio empties the chat, the button with it): the question
    "Delete …?" was 30 Tabs away from the top of the page, and Escape did not cancel it (nor the library's)."""
    question = "Who is Matthew Miller?"
    _open(page, library)
    _ask(page, question)
    page.locator("#qa-question textarea").focus()
    for _ in range(8):
        page.keyboard.press("Shift+Tab")
        if _focused(page) == "Delete conversation in #qa-chat":
            break
    page.keyboard.press("Enter")
    page.wait_for_function("document.activeElement?.id === 'qa-chat-no'")  # Cancel, in the question
    page.keyboard.press("Escape")
    page.locator("#qa-chat-yes").wait_for(state="hidden")
    page.wait_for_function("document.activeElement?.getAttribute('aria-label') === 'Delete conversation'")
    assert page.locator("#qa-chat .qa-question").all_inner_texts() == [question]  # cancelled
    page.keyboard.press("Enter")
    page.wait_for_function("document.activeElement?.id === 'qa-chat-no'")
    page.keyboard.press("Shift+Tab")
    assert _focused(page) == "qa-chat-yes in #qa-chat-yes"
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelectorAll('#qa-chat .qa-question').length === 0")
    page.locator("#qa-chat-list label").filter(has_text=question).wait_for(state="detached")
    assert _focused(page) == "TEXTAREA in #qa-question"  # ready for the next question
    # The library's Remove… asks too: Escape is Cancel there as well.
    page.locator("#qa-doc-list input").first.focus()
    page.keyboard.press("Space")
    page.locator("#qa-doc-remove").focus()
    page.keyboard.press("Enter")
    page.locator("#qa-doc-yes").wait_for()
    page.keyboard.press("Tab")
    assert _focused(page) == "qa-doc-yes in #qa-doc-yes"
    page.keyboard.press("Escape")
    page.locator("#qa-doc-yes").wait_for(state="hidden")
    assert _focused(page) == "qa-doc-remove in #qa-doc-remove"
    assert page.locator("#qa-doc-list label").count() == 3
