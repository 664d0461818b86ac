"""The chat UI: fast tests of the HTML it renders; slow tests drive `qa serve` in headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qa.errors import ConfigError
from qa.serving.ui import (
    esc,
    exposure_warning,
    highlight,
    parse_auth,
    render_answer,
    render_ingest,
    render_panel,
    render_sources,
)
from qa.types import Answer, Citation, FileResult, Passage

from .conftest import CHROMIUM, CHROMIUM_ARGS, start_serve, stop_serve  # noqa: F401 (used by other tests)

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
EVIL = '<img src=x onerror=alert(1)><script>window.__pwned=1</script>'


def _citation(passage: str, span: str, n: int = 1, offset: int = 100, **kw: Any) -> Citation:
    a = passage.index(span)
    return Citation(id=n, source="/docs/report.txt", start=offset + a, end=offset + a + len(span), text=span,
                    score=0.7, passage_start=offset, passage_end=offset + len(passage), passage=passage, **kw)


# --- fast: rendering --------------------------------------------------------------------------------
def test_esc_neutralises_markup_and_templates() -> None:
    out = esc(EVIL + " ${x} {{y}} \"'")
    assert "<" not in out and ">" not in out and "{" not in out and "$" not in out and '"' not in out
    assert "&lt;script&gt;" in out


def test_answer_markers_link_their_passages_and_document_text_is_escaped() -> None:
    c = _citation(f"Before. It rained {EVIL} in Hanoi. After.", f"It rained {EVIL} in Hanoi.")
    ans = Answer("q", f"It rained {EVIL} in Hanoi [1]. See [7].", True, citations=(c,))
    out = render_answer(ans, turn=3)
    assert '<a class="qa-cite" href="#qa-src-3-1"' in out and ">[1]</a>" in out
    assert "See [7]" in out  # a bracket that is not one of the citations stays text
    assert "<script" not in out and "<img" not in out and "&lt;script&gt;" in out
    assert 'title="It rained &lt;img src=x onerror=alert(1)&gt;' in out


def test_right_to_left_text_is_laid_out_in_its_own_direction() -> None:
    """Arabic and Hebrew answers and passages were laid out left to right (the full stop and [n] at the wrong
    end), and an Arabic question scrambled the "for “...” · 0.4 s" line of the Sources panel."""
    text = "البتراء مدينة أثرية في الأردن."
    c = _citation(text, text)
    ans = Answer("أين تقع البتراء؟", "البتراء مدينة أثرية في الأردن [1].", True, citations=(c,), seconds=0.4)
    assert render_answer(ans, turn=1).startswith('<div class="qa-answer" dir="auto">')
    sources = render_sources(ans, turn=1)
    assert '<p class="qa-passage" dir="auto">' in sources and "for “<bdi>أين تقع البتراء؟</bdi>”" in sources


def test_sources_show_only_cited_passages_with_the_span_marked() -> None:
    passage = f"Intro {EVIL}. Putin will travel to Vietnam on June 19. Outro."
    c = _citation(passage, "Putin will travel to Vietnam on June 19.", location="page 2")
    unrelated = Passage("/docs/other.txt", 0, 9, "unrelated", 0.1)
    out = render_sources(Answer("Where?", "x [1].", True, citations=(c,), related=(unrelated,)), turn=1)
    assert '<mark>Putin will travel to Vietnam on June 19.</mark>' in out
    assert 'id="qa-src-1-1"' in out and "report.txt" in out and "page 2" in out
    assert "other.txt" not in out and "Related" not in out
    assert f">support {c.score:.2f}<" in out and ">match " not in out  # the sentence's support, not retrieval
    assert "<script" not in out and "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in out


def test_unverified_citations_are_flagged() -> None:
    c = _citation("Paris is big.", "Paris is big.", verified=False)
    ans = Answer("q", "Paris is big [1].", True, citations=(c,), verified_sentences=1, total_sentences=2)
    assert "qa-unverified" in render_answer(ans, 1) and "Not verified" in render_answer(ans, 1)
    out = render_sources(ans, 1)
    assert "not verified" in out and "1 of 2 generated sentences verified" in out


def test_highlight_falls_back_to_the_span_when_offsets_disagree() -> None:
    c = Citation(1, "/d.txt", 5, 9, "<b>", 0.5, passage_start=0, passage_end=3, passage="abc")
    assert highlight(c) == "<mark>&lt;b&gt;</mark>"


def test_not_found_is_styled_and_lists_related_not_cited() -> None:
    related = (Passage("/docs/a.txt", 0, 20, f"closest {EVIL}", 0.3),)
    ans = Answer("Who won?", "Not found in the documents.", False, related=related)
    assert "qa-notfound" in render_answer(ans, 2) and "related, not cited" in render_answer(ans, 2)
    out = render_sources(ans, 2)
    assert "Related, not cited" in out and "qa-related" in out and "<mark>" not in out and "<img" not in out
    assert ">match 0.30<" in out and ">support " not in out  # retrieval's match, not a sentence's support
    bare = Answer("Who won?", "Not found in the documents.", False)
    assert "related" not in render_answer(bare, 1) and "No passages" in render_sources(bare, 1)


def test_panel_marks_busy_and_empty_states() -> None:
    assert "qa-busy" in render_panel(["<section></section>"], busy=True)
    assert "qa-done" in render_panel([]) and "Ask a question" in render_panel([])


def test_ingest_results_escape_names_and_reasons() -> None:
    out = render_ingest([FileResult("/up/<b>.txt", "failed", reason="bad <i>"), FileResult("/up/a.md", "added", 3)])
    assert "&lt;b&gt;.txt" in out and "bad &lt;i&gt;" in out and "<b>" not in out
    assert 'class="qa-badge added"' in out and "3 chunks" in out and "replaced" not in out
    # An upload of a name already in the library replaces that document (another person's, perhaps): it says so.
    out = render_ingest([FileResult("/up/team_notes.md", "updated", 1)])
    assert "replaced the document of the same name · 1 chunk" in out


def test_dates_are_in_the_readers_time_zone_with_the_year_when_it_is_not_this_one() -> None:
    """The conversation list showed the server's local time and no year ("14 Mar 09:30" of which year?)."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from qa.serving.ui import local_time, reader_zone

    t = datetime(2024, 2, 29, 23, 30, tzinfo=UTC).timestamp()
    this_year, next_year = datetime(2024, 6, 1, tzinfo=UTC).timestamp(), datetime(2025, 6, 1, tzinfo=UTC).timestamp()
    assert local_time(t, ZoneInfo("UTC"), now=this_year) == "29 Feb 23:30"
    assert local_time(t, ZoneInfo("UTC"), now=next_year) == "29 Feb 2024 23:30"
    assert local_time(t, ZoneInfo("Pacific/Kiritimati"), now=this_year) == "1 Mar 13:30"  # UTC+14: the next day
    # The year is the reader's: at 21:00 on New Year's Eve in New York, UTC is already in the next year.
    eve = datetime(2025, 1, 1, 2, 0, tzinfo=UTC).timestamp()
    assert local_time(eve, ZoneInfo("America/New_York"), now=eve) == "31 Dec 21:00"
    assert local_time(eve, ZoneInfo("America/New_York"), now=eve + 4 * 3600) == "31 Dec 2024 21:00"

    class Request:
        def __init__(self, cookies: dict[str, str]) -> None:
            self.cookies = cookies

    assert reader_zone(Request({"qa_tz": "Pacific%2FKiritimati"})) == ZoneInfo("Pacific/Kiritimati")
    for cookies in ({}, {"qa_tz": ""}, {"qa_tz": "Not/AZone"}, {"qa_tz": "../../etc/passwd"}):
        assert reader_zone(Request(cookies)) is None  # the server's own time then
    assert reader_zone(None) is None


def test_open_host_without_login_warns() -> None:
    assert "WARNING" in exposure_warning("0.0.0.0", None) and "--auth" in exposure_warning("0.0.0.0", None)
    assert exposure_warning("127.0.0.1", None) == "" and exposure_warning("0.0.0.0", ("a", "b")) == ""


def test_parse_auth() -> None:
    assert parse_auth(None) is None and parse_auth("") is None
    assert parse_auth("ann:pa:ss") == ("ann", "pa:ss")
    with pytest.raises(ConfigError, match="user:password"):
        parse_auth("nopassword")


def test_build_app_without_an_index(tmp_path: Path) -> None:
    from qa import Assistant
    from qa.serving.ui import answer_modes, build_app

    app = build_app(Assistant(index_dir=tmp_path / "none"))
    ids = {getattr(b, "elem_id", None) for b in app.blocks.values()}
    assert {"qa-chat", "qa-question", "qa-sources", "qa-upload", "qa-topk", "qa-mode"} <= ids
    assert "extractive" in answer_modes()


# --- slow: the real server in a real browser ----------------------------------------------------------
def _start(index: Path, log: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    proc, url = start_serve(index, log, *extra)
    return proc, url + "/"


_stop = stop_serve


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    """A fresh page that records any JavaScript dialog (none may ever open)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    pg.dialogs = []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    ARTIFACTS.mkdir(exist_ok=True)
    yield pg
    ctx.close()


def _open(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#qa-question textarea")


def _ask(page: Any, question: str) -> Any:
    """Type a question, press Enter, wait until its answer has finished streaming; the answer element."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    turn = page.locator(".qa-sources .qa-turn").count() + 1
    asked = page.locator("#qa-chat .qa-question").count()
    box = page.locator("#qa-question textarea")
    box.fill(question)
    for _ in range(3):
        box.press("Enter")
        try:  # Gradio drops a submit while the previous event is still completing; the text stays, so resend
            page.wait_for_function(f"document.querySelectorAll('#qa-chat .qa-question').length > {asked}",
                                   timeout=5_000)
            break
        except PlaywrightTimeout:
            continue
    try:
        page.wait_for_selector(f".qa-sources.qa-done #qa-turn-{turn}")
    except PlaywrightTimeout:
        page.screenshot(path=str(ARTIFACTS / "failed-ask.png"), full_page=True)
        raise
    return page.locator("#qa-chat .qa-answer").last


def _documents(page: Any) -> int:
    page.wait_for_function("document.querySelector('#qa-status').innerText.includes('document')")
    return int(page.locator("#qa-status b").first.inner_text())


def _upload(page: Any, name: str, text: str, expect: str = "added") -> Any:
    """Drop one text file on the upload area; wait for its per-file result showing `expect`."""
    page.locator("#qa-upload input[type=file]").set_input_files(
        files=[{"name": name, "mimeType": "text/plain", "buffer": text.encode()}])
    page.locator("#qa-ingest li").filter(has_text=expect).wait_for()
    return page.locator("#qa-ingest")


@pytest.mark.slow
def test_answer_streams_with_citations_and_sources(server: tuple[str, Path], page: Any) -> None:
    _open(page, server[0])
    answer = _ask(page, "Where will Putin travel after North Korea?")
    assert "Vietnam" in answer.inner_text()
    marker = answer.locator("a.qa-cite").first
    assert marker.inner_text() == "[1]"
    assert "Vietnam" in page.locator("#qa-sources .qa-turn mark").first.inner_text()
    assert "putin-north-korea-letter.txt" in page.locator("#qa-sources .qa-file").first.inner_text()
    marker.hover()
    page.wait_for_selector("#qa-src-1-1.qa-hover")
    assert "Vietnam" in (marker.get_attribute("title") or "")
    marker.click()
    page.wait_for_selector("#qa-src-1-1.qa-target")
    assert "document" in page.locator("#qa-status").inner_text()
    page.screenshot(path=str(ARTIFACTS / "answer-with-sources.png"), full_page=True)


@pytest.mark.slow
def test_follow_up_uses_the_conversation(server: tuple[str, Path], page: Any) -> None:
    _open(page, server[0])
    assert "Miller" in _ask(page, "Who is Matthew Miller?").inner_text()
    text = _ask(page, "What did he reiterate?").inner_text()
    assert "11,000 containers" in text
    # A marker of the first turn shows that turn's sources again.
    page.locator("#qa-chat a.qa-cite[href^='#qa-src-1-']").first.click()
    page.wait_for_selector("#qa-turn-1 .qa-src.qa-target")
    assert page.locator("#qa-turn-1").is_visible() and not page.locator("#qa-turn-2").is_visible()


@pytest.mark.slow
def test_not_found_is_marked_and_shows_related_passages(server: tuple[str, Path], page: Any) -> None:
    _open(page, server[0])
    answer = _ask(page, "Who won the 2018 World Cup?")
    assert "Not found in the documents" in answer.inner_text()
    assert "qa-notfound" in (answer.get_attribute("class") or "")
    panel = page.locator("#qa-sources .qa-turn-notfound")
    assert "Related, not cited" in panel.inner_text() and panel.locator(".qa-related").count() >= 1
    assert panel.locator("mark").count() == 0 and panel.locator(".qa-related").count() == 5  # QA_TOP_K
    page.screenshot(path=str(ARTIFACTS / "not-found.png"), full_page=True)
    # Settings: fewer passages retrieved.
    page.locator("#qa-settings").get_by_text("Settings").click()
    for _ in range(10):  # the slider mounts as the accordion opens and may reset a value set too early
        page.locator("#qa-topk input[type=range]").fill("2")
        page.wait_for_timeout(300)
        if page.locator("#qa-topk input[type=number]").input_value() == "2":
            break
    _ask(page, "Who won the 2018 World Cup?")
    assert page.locator("#qa-turn-2 .qa-related").count() == 2


@pytest.mark.slow
def test_upload_adds_a_document_that_answers(server: tuple[str, Path], page: Any) -> None:
    url, index = server
    _open(page, url)
    before = _documents(page)
    fact = "The lighthouse keeper of Port Quillon feeds his parrot Bartholomew mango every morning."
    results = _upload(page, "lighthouse-notes.txt", f"Harbour notes.\n\n{fact}\n")
    assert "added" in results.inner_text() and "lighthouse-notes.txt" in results.inner_text()
    assert (index / "uploads" / "lighthouse-notes.txt").read_text().strip().endswith(fact)
    page.wait_for_function(f"document.querySelector('#qa-status').innerText.includes('{before + 1} documents')")
    page.screenshot(path=str(ARTIFACTS / "upload-result.png"), full_page=True)
    assert "Bartholomew" in _ask(page, "What is the name of the lighthouse keeper's parrot?").inner_text()
    again = _upload(page, "lighthouse-notes.txt", f"Harbour notes.\n\n{fact}\n", expect="unchanged")
    assert "unchanged" in again.inner_text()
    bad = _upload(page, "tool.exe", "MZ", expect="failed")
    assert "unsupported file type .exe" in bad.inner_text() and not (index / "uploads" / "tool.exe").exists()


@pytest.mark.slow
def test_document_markup_renders_as_inert_text(server: tuple[str, Path], page: Any) -> None:
    _open(page, server[0])
    doc = (f"Customs bulletin {EVIL}.\n\nThe customs seal of Velmora harbour is stamped with {EVIL} a green heron "
           "emblem. ![x](javascript:alert(2)) ${window.__pwned=2} {{constructor.constructor('alert(3)')()}}\n")
    results = _upload(page, "<img src=x onerror=alert(4)>.txt", doc)
    assert "added" in results.inner_text() and "onerror" in results.inner_text()
    answer = _ask(page, "What emblem is the customs seal of Velmora harbour stamped with?")
    assert "heron" in answer.inner_text()
    passage = page.locator("#qa-sources .qa-turn .qa-passage").first.inner_text()
    assert "<script>window.__pwned=1</script>" in passage and "<img src=x onerror=alert(1)>" in passage
    assert "<script>" in answer.inner_text()
    assert page.locator("#qa-chat img, #qa-sources img, #qa-ingest img, #qa-chat script, #qa-sources script").count() == 0
    page.wait_for_timeout(500)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.dialogs == []
    page.screenshot(path=str(ARTIFACTS / "inert-markup.png"), full_page=True)


@pytest.mark.slow
def test_a_question_sent_after_scrolling_up_is_shown_with_its_answer(server: tuple[str, Path], page: Any) -> None:
    """Once the reader had scrolled the chat up (to click an earlier marker), new answers stayed out of view
    while the Sources panel showed the new turn."""
    _open(page, server[0])
    for q in ("Who is Matthew Miller?", "Who denied the arms transfers?", "Who is Victor Cha?",
              "Where will Putin travel after North Korea?", "What did China and Russia contend?",
              "What did Putin write in his letter?"):
        _ask(page, q)
    room = page.evaluate("(() => { const w = document.querySelector('#qa-chat .bubble-wrap');"
                         " return w.scrollHeight - w.clientHeight; })()")
    assert room > 600, room  # the chat holds more than it shows
    page.locator("#qa-chat .bubble-wrap").hover()
    for _ in range(10):  # the reader scrolls up with the wheel and clicks a marker of the first turn
        page.mouse.wheel(0, -400)
    page.wait_for_timeout(500)
    page.locator('#qa-chat a.qa-cite[href="#qa-src-1-1"]').click()
    answer = _ask(page, "When did Putin last visit North Korea?")
    page.wait_for_timeout(500)
    shown = page.evaluate("""(a) => { const w = document.querySelector('#qa-chat .bubble-wrap').getBoundingClientRect();
                                      const r = a.getBoundingClientRect();
                                      return r.bottom > w.top && r.top < w.bottom; }""", answer.element_handle())
    assert shown, "the new answer is out of the chat's view"


@pytest.mark.slow
def test_secondary_text_is_readable(server: tuple[str, Path], page: Any) -> None:
    """The passages, the status line and the "for “question”" line were grey on grey at about 2.4:1."""
    _open(page, server[0])
    _ask(page, "Who is Matthew Miller?")
    ratios = page.evaluate("""() => {
      const lum = (c) => { const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map(v => v / 255)
        .map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
      const bg = (el) => { for (; el; el = el.parentElement) { const c = getComputedStyle(el).backgroundColor;
        if (c && !c.startsWith('rgba(0, 0, 0, 0)') && c !== 'transparent') return c; } return 'rgb(255, 255, 255)'; };
      const ratio = (el) => { const a = lum(getComputedStyle(el).color), b = lum(bg(el));
        return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05); };
      return ['#qa-sources .qa-passage', '#qa-sources .qa-q', '#qa-status .qa-status']
        .map(s => [s, ratio(document.querySelector(s))]); }""")
    for selector, ratio in ratios:
        assert ratio >= 4.5, (selector, ratio)


@pytest.mark.slow
def test_tab_from_the_question_reaches_the_conversations_before_the_documents(server: tuple[str, Path],
                                                                             page: Any) -> None:
    """The conversation list was moved below the question box by CSS only: Tab skipped it to the right column."""
    _open(page, server[0])
    page.locator("#qa-question textarea").focus()
    seen = []
    for _ in range(12):
        page.keyboard.press("Tab")
        seen.append(page.evaluate("""() => { const e = document.activeElement.closest(
            '#qa-chats, #qa-sources, #qa-docs, #qa-doc-list, #qa-settings, #qa-ask'); return e ? e.id : ''; }"""))
    assert "qa-chats" in seen, seen
    later = [i for i, x in enumerate(seen) if x in ("qa-sources", "qa-docs", "qa-doc-list")]
    assert not later or seen.index("qa-chats") < later[0], seen


def _saved_settings(page: Any) -> str | None:
    """What the page keeps in the browser's storage for its settings (encrypted by Gradio)."""
    return page.evaluate("() => localStorage.getItem('qa-settings')")


def _wait_saved(page: Any, before: str | None) -> None:
    """Wait until the browser has stored the changed settings: a fixed pause was too short on a loaded machine."""
    page.wait_for_function("(b) => localStorage.getItem('qa-settings') !== b", arg=before)


@pytest.mark.slow
def test_settings_survive_a_reload(server: tuple[str, Path], page: Any) -> None:
    """Top-k went back to 5 (and the answer mode to the default) at every reload."""
    _open(page, server[0])
    page.locator("#qa-settings").get_by_text("Settings").click()
    before = _saved_settings(page)
    number = page.locator("#qa-topk input[type=number]")
    number.fill("9")
    number.press("Enter")
    _wait_saved(page, before)
    page.reload()
    page.wait_for_selector("#qa-question textarea")
    page.locator("#qa-settings").get_by_text("Settings").click()
    page.wait_for_function("document.querySelector('#qa-topk input[type=number]')?.value === '9'")
    assert "Putin" in _ask(page, "Where will Putin travel after North Korea?").inner_text()


@pytest.mark.slow
def test_settings_survive_a_restart_of_the_server(seeded_index: Path, tmp_path: Path, page: Any) -> None:
    """The page's saved settings are encrypted with a key Gradio drew anew at every start: after a restart
    (an upgrade, a reboot) each reader's top-k, answer mode, scope and open conversation were gone."""
    index = tmp_path / "index"
    shutil.copytree(seeded_index, index)
    proc, url = start_serve(index, tmp_path / "serve1.log")
    try:
        _open(page, url + "/")
        page.locator("#qa-settings").get_by_text("Settings").click()
        before = _saved_settings(page)
        number = page.locator("#qa-topk input[type=number]")
        number.fill("8")
        number.press("Enter")
        _wait_saved(page, before)
    finally:
        stop_serve(proc)
    assert (index / "ui-secret").stat().st_mode & 0o077 == 0  # only qa's user may read the key
    proc, url = start_serve(index, tmp_path / "serve2.log", port=int(url.rsplit(":", 1)[1]))  # same origin
    try:
        page.reload()
        page.wait_for_selector("#qa-question textarea")
        page.locator("#qa-settings").get_by_text("Settings").click()
        page.wait_for_function("document.querySelector('#qa-topk input[type=number]')?.value === '8'")
    finally:
        stop_serve(proc)


@pytest.mark.slow
def test_choosing_openai_without_a_key_warns_at_once(server: tuple[str, Path], page: Any) -> None:
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("QA_OPENAI_API_KEY") or os.environ.get("QA_OPENAI_BASE_URL"):
        pytest.skip("this machine has an OpenAI key or server: the mode works")
    _open(page, server[0])
    page.locator("#qa-settings").get_by_text("Settings").click()
    page.locator("#qa-mode").get_by_text("openai", exact=True).click()
    page.locator(".toast-body").filter(has_text="needs a key").first.wait_for()


@pytest.mark.slow
@pytest.mark.parametrize("size", [(1280, 860), (390, 844)])
def test_the_question_box_is_on_the_first_screen(server: tuple[str, Path], page: Any, size: tuple[int, int]) -> None:
    """A visit, on a laptop window or a phone, shows where to type without scrolling, however many saved
    conversations the list holds."""
    page.set_viewport_size({"width": size[0], "height": size[1]})
    _open(page, server[0])
    for q in ("Who is Victor Cha?", "Who denied the arms transfers?", "Where will Putin travel after North Korea?"):
        _ask(page, q)
        page.locator("#qa-chat-new").click()
        page.wait_for_function("document.querySelectorAll('#qa-chat .qa-question').length === 0")
    page.reload()
    page.wait_for_selector("#qa-question textarea")
    page.wait_for_function("document.querySelectorAll('#qa-chat-list label').length >= 3")
    page.wait_for_timeout(500)
    for part in ("#qa-question textarea", "#qa-ask"):
        box = page.locator(part).bounding_box()
        assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= size[1], (part, box)


@pytest.mark.slow
def test_phone_width_layout_and_marker_scrolls_to_its_passage(server: tuple[str, Path], page: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    _open(page, server[0])
    answer = _ask(page, "Where will Putin travel after North Korea?")
    page.evaluate("window.scrollTo(0, 0)")
    answer.locator("a.qa-cite").first.click()
    page.wait_for_selector("#qa-src-1-1.qa-target")
    page.wait_for_function("""() => { const r = document.querySelector('#qa-src-1-1').getBoundingClientRect();
                                      return r.top >= 0 && r.bottom <= window.innerHeight; }""")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "phone-390.png"), full_page=True)


@pytest.mark.slow
@pytest.mark.slow
def test_a_failed_question_does_not_leave_a_conversation_that_was_never_saved(browser: Any, seeded_index: Path,
                                                                             tmp_path: Path) -> None:
    """A model server that cannot be reached fails the first question of a new conversation, which is then not
    saved; the second question was told "This conversation was deleted (in another window)"."""
    import shutil

    from .conftest import free_port

    index = tmp_path / "index"
    shutil.copytree(seeded_index, index)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    proc, url = start_serve(index, tmp_path / "serve.log", env={"QA_LLM": "openai", "QA_OPENAI_BASE_URL": dead,
                                                                "OPENAI_API_KEY": "sk-test"})
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        pg = ctx.new_page()
        pg.set_default_timeout(60_000)
        _open(pg, url + "/")
        box = pg.locator("#qa-question textarea")
        for n, question in enumerate(["Who is Matthew Miller?", "Who denied the arms transfers?"], 1):
            box.fill(question)
            box.press("Enter")
            pg.wait_for_function(f"document.querySelectorAll('#qa-chat .qa-error').length >= {n}")
        assert "Cannot reach" in pg.locator("#qa-chat .qa-error").last.inner_text()
        assert pg.locator(".toast-body").filter(has_text="was deleted").count() == 0
    finally:
        ctx.close()
        stop_serve(proc)


def test_login_and_missing_index_error(browser: Any, tmp_path: Path) -> None:
    proc, url = _start(tmp_path / "empty-index", tmp_path / "serve.log", "--auth", "ann:s3cret")
    try:
        with urllib.request.urlopen(url + "config") as r:
            pytest.fail(f"config served without login: {r.status}")
    except urllib.error.HTTPError as e:
        assert e.code in (401, 403)
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        pg = ctx.new_page()
        pg.set_default_timeout(60_000)
        pg.goto(url)
        pg.locator("input[type=text]").first.fill("ann")
        pg.locator("input[type=password]").fill("s3cret")
        pg.keyboard.press("Enter")
        pg.wait_for_selector("#qa-question textarea")
        assert "No index yet" in pg.locator("#qa-status").inner_text()
        box = pg.locator("#qa-question textarea")
        box.fill("Anything there?")
        box.press("Enter")
        pg.locator(".toast-body").filter(has_text="No index").first.wait_for()
        assert "No index" in pg.locator("#qa-chat .qa-error").inner_text()  # the chat stays usable
        assert "Traceback" not in pg.content() and "add files under Documents" in pg.content()
        pg.screenshot(path=str(ARTIFACTS / "no-index-error.png"))
        # The first upload creates the index, and questions work from then on.
        _upload(pg, "first.md", "# Orchard\n\nThe orchard behind the mill grows forty quince trees.\n")
        assert "1 document" in pg.locator("#qa-status").inner_text()
        assert (tmp_path / "empty-index" / "uploads" / "first.md").exists()
        assert "quince" in _ask(pg, "How many quince trees grow in the orchard?").inner_text()
    finally:
        ctx.close()
        _stop(proc)
