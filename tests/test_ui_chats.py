"""Saved conversations in the chat UI: fast tests of stored-turn rendering; browser tests of reload, users, staleness."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qa.conversations import Turn
from qa.serving.ui import render_sources
from qa.serving.ui_chats import stored_answer, stored_sources
from qa.types import Answer, Citation

from .test_ui import ARTIFACTS, _ask, _open, _start, _stop, _upload


def _turn(stale: dict[int, str]) -> Turn:
    passage = "Intro. The ferry Lindholm sails to Skarvik at dawn. Outro."
    span = "The ferry Lindholm sails to Skarvik at dawn."
    a = passage.index(span)
    c = Citation(1, "/docs/harbour.txt", 100 + a, 100 + a + len(span), span, 0.8, passage_start=100,
                 passage_end=100 + len(passage), passage=passage)
    return Turn(2, Answer("Where does the ferry sail?", f"{span} [1].", True, citations=(c,)), 0.0, stale=stale)


# --- fast: a stored turn renders like a live one, unless its document changed ----------------------------------
def test_stored_turn_renders_like_the_live_answer() -> None:
    t = _turn({})
    assert stored_sources(t) == render_sources(t.answer, 2) and "<mark>The ferry" in stored_sources(t)
    assert 'href="#qa-src-2-1"' in stored_answer(t) and "qa-stale" not in stored_answer(t)


def test_a_reopened_pdf_citation_shows_its_page_as_the_live_answer_did() -> None:
    """The page image of a PDF citation was shown while answering and gone after a reload or reopening."""
    from dataclasses import replace

    from qa.types import Box

    t = _turn({})
    pdf = replace(t.answer.citations[0], source="/docs/harbour.pdf", page=3, boxes=(Box(3, 10, 20, 200, 32),))
    t = replace(t, answer=replace(t.answer, citations=(pdf,)))

    def page_url(source: str, page: int, start: int, end: int, crop: bool = False) -> str:
        return f"/page/{page}?crop={int(crop)}"

    shown = stored_sources(t, page_url)
    assert shown == render_sources(t.answer, 2, page_url) and 'src="/page/3?crop=1"' in shown
    assert "/page/" not in stored_sources(replace(t, stale={1: "changed"}), page_url)  # its page may differ now


def test_a_conversation_is_listed_with_its_date_in_the_readers_time_zone() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from qa.serving.ui_chats import list_label

    t = datetime(2019, 7, 1, 12, 0, tzinfo=UTC).timestamp()
    assert list_label("Who is Victor Cha?", t, ZoneInfo("America/New_York")) == "Who is Victor Cha? · 1 Jul 2019 08:00"


@pytest.mark.parametrize(("why", "note"), [("changed", "has changed since"), ("removed", "has been removed")])
def test_stale_citation_says_so_instead_of_highlighting(why: str, note: str) -> None:
    t = _turn({1: why})
    src, ans = stored_sources(t), stored_answer(t)
    assert 'class="qa-src qa-stale" id="qa-src-2-1"' in src and note in src and "<mark>" not in src
    assert "Cited then (chars" in src and "The ferry Lindholm sails to Skarvik at dawn." in src
    assert 'class="qa-cite qa-stale" href="#qa-src-2-1"' in ans and note in ans


def test_a_turn_without_its_complete_answer_says_so() -> None:
    from dataclasses import replace

    t = _turn({})
    writing = replace(t, answer=Answer(t.question, "", False), state="answering")
    assert "still being written" in stored_answer(writing) and "qa-answering" in stored_answer(writing)
    assert "still being written" in stored_sources(writing) and 'id="qa-turn-2"' in stored_sources(writing)
    cut = replace(t, state="interrupted")  # what was written is shown, then that it was interrupted
    assert stored_answer(cut).startswith(stored_answer(t)) and "Interrupted: this answer was not completed" in \
        stored_answer(cut)
    assert stored_sources(cut) == stored_sources(t)
    empty = replace(writing, state="interrupted")
    assert "Interrupted" in stored_answer(empty) and "Interrupted" in stored_sources(empty)


# --- slow: the real server in a real browser --------------------------------------------------------------------
@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    ARTIFACTS.mkdir(exist_ok=True)
    yield pg
    ctx.close()


def _questions(page: Any) -> list[str]:
    return page.locator("#qa-chat .qa-question").all_inner_texts()


def _reload(page: Any, turns: int) -> None:
    page.reload()
    page.wait_for_selector("#qa-question textarea")
    page.wait_for_function(f"document.querySelectorAll('#qa-chat .qa-question').length === {turns}")
    page.wait_for_selector(f".qa-sources.qa-done #qa-turn-{turns}")


def _login(browser: Any, url: str, user: str, password: str) -> Any:
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(url)
    pg.locator("input[type=text]").first.fill(user)
    pg.locator("input[type=password]").fill(password)
    pg.keyboard.press("Enter")
    pg.wait_for_selector("#qa-question textarea")
    return pg


@pytest.mark.slow
def test_reload_brings_back_turns_sources_and_context(server: tuple[str, Path], page: Any) -> None:
    _open(page, server[0])
    assert "Vietnam" in _ask(page, "Where will Putin travel after North Korea?").inner_text()
    assert "State Department" in _ask(page, "Who is Matthew Miller?").inner_text()
    page.locator("#qa-chat-list label").filter(has_text="Where will Putin travel").wait_for()
    _reload(page, 2)
    assert _questions(page) == ["Where will Putin travel after North Korea?", "Who is Matthew Miller?"]
    answers = page.locator("#qa-chat .qa-answer")
    assert "Vietnam" in answers.nth(0).inner_text() and "State Department" in answers.nth(1).inner_text()
    # The first turn's marker still shows its passage, highlighted, in the restored sources panel.
    page.locator("#qa-chat a.qa-cite[href^='#qa-src-1-']").first.click()
    page.wait_for_selector("#qa-turn-1 .qa-src.qa-target")
    assert "Vietnam" in page.locator("#qa-turn-1 mark").first.inner_text()
    assert "putin-north-korea-letter.txt" in page.locator("#qa-turn-1 .qa-file").first.inner_text()
    # A follow-up after the reload is understood from the stored conversation.
    assert "11,000 containers" in _ask(page, "What did he reiterate?").inner_text()
    assert page.locator("#qa-chat-list label").filter(has_text="Where will Putin travel").count() == 1
    page.screenshot(path=str(ARTIFACTS / "chats-after-reload.png"), full_page=True)
    # The export downloads Markdown naming every citation with its exact text.
    with page.expect_download() as dl:
        page.locator("#qa-chat-export").click()
    md = Path(dl.value.path()).read_text(encoding="utf-8")
    assert md.startswith("# Where will Putin travel after North Korea?") and "## 3. What did he reiterate?" in md
    for mark in page.locator("#qa-sources mark").all_inner_texts():
        assert mark in md


@pytest.mark.slow
def test_new_rename_search_delete(server: tuple[str, Path], page: Any) -> None:
    _open(page, server[0])
    _ask(page, "Who is Victor Cha?")
    page.locator("#qa-chat-list label").filter(has_text="Who is Victor Cha?").wait_for()
    page.locator("#qa-chat-title input").fill("Korea analyst Zebra")
    page.locator("#qa-chat-rename").click()
    page.locator("#qa-chat-list label").filter(has_text="Korea analyst").wait_for()
    page.locator("#qa-chat-new").click()
    page.wait_for_function("document.querySelectorAll('#qa-chat .qa-question').length === 0")
    _ask(page, "Who denied the arms transfers?")
    page.locator("#qa-chat-list label").filter(has_text="Who denied").wait_for()
    page.locator("#qa-chat-search input").fill("zebra")
    page.wait_for_function("""() => { const l = [...document.querySelectorAll('#qa-chat-list label')];
        return l.length === 1 && l[0].innerText.includes('Korea analyst'); }""")
    page.locator("#qa-chat-list label").filter(has_text="Korea analyst").click()
    page.wait_for_function("document.querySelector('#qa-chat .qa-question')?.innerText === 'Who is Victor Cha?'")
    page.locator("#qa-chat-delete").click()  # asked first, in the page
    page.locator("#qa-chat-question").filter(has_text="Korea analyst Zebra").wait_for()
    page.locator("#qa-chat-no").click()
    page.locator("#qa-chat-yes").wait_for(state="hidden")
    assert _questions(page) == ["Who is Victor Cha?"]  # cancelled: still there
    page.locator("#qa-chat-delete").click()
    page.locator("#qa-chat-yes").click()
    page.wait_for_function("document.querySelectorAll('#qa-chat .qa-question').length === 0")
    page.locator("#qa-chat-yes").wait_for(state="hidden")
    page.locator("#qa-chat-search input").fill("")
    page.wait_for_function("""() => [...document.querySelectorAll('#qa-chat-list label')]
        .some((l) => l.innerText.includes('Who denied'))""")
    assert page.locator("#qa-chat-list label").filter(has_text="Korea analyst").count() == 0
    page.reload()  # the deleted conversation does not come back
    page.wait_for_selector("#qa-question textarea")
    page.wait_for_timeout(1500)
    assert _questions(page) == []


@pytest.mark.slow
def test_changed_document_marks_the_old_citation(server: tuple[str, Path], page: Any) -> None:
    _open(page, server[0])
    fact = "The ferry Lindholm sails from Port Quillon to Skarvik every dawn."
    _upload(page, "ferry-notes.txt", f"Ferry notes.\n\n{fact}\n")
    assert "Skarvik" in _ask(page, "Where does the ferry Lindholm sail to?").inner_text()
    _upload(page, "ferry-notes.txt", "Ferry notes, revised.\n\nThe ferry service was discontinued.\n",
            expect="updated")
    _reload(page, 1)
    marker = page.locator("#qa-chat a.qa-cite").first
    assert "qa-stale" in (marker.get_attribute("class") or "")
    assert "has changed since" in (marker.get_attribute("title") or "")
    card = page.locator("#qa-turn-1 .qa-src.qa-stale").first
    assert "has changed since" in card.inner_text() and fact in card.inner_text()
    assert page.locator("#qa-turn-1 mark").count() == 0  # no highlight of text that is no longer there
    page.screenshot(path=str(ARTIFACTS / "chats-stale-citation.png"), full_page=True)


@pytest.mark.slow
def test_two_users_see_only_their_own_conversations(seeded_index: Path, browser: Any,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = tmp_path / "index"
    shutil.copytree(seeded_index, index)
    users = tmp_path / "users"
    users.write_text("carol:pw3\n")
    monkeypatch.setenv("QA_AUTH", "alice:pw1,bob:pw2")
    monkeypatch.setenv("QA_USERS_FILE", str(users))
    proc, url = _start(index, tmp_path / "serve.log")
    try:
        alice = _login(browser, url, "alice", "pw1")
        _ask(alice, "Where will Putin travel after North Korea?")
        alice.locator("#qa-chat-list label").filter(has_text="Where will Putin").wait_for()
        stolen = alice.evaluate("localStorage.getItem('qa-open-conversation')")
        assert stolen
        bob = _login(browser, url, "bob", "pw2")
        _ask(bob, "Who is Victor Cha?")
        bob.locator("#qa-chat-list label").filter(has_text="Who is Victor Cha?").wait_for()
        assert bob.locator("#qa-chat-list label").all_inner_texts()[0].startswith("Who is Victor Cha?")
        assert bob.locator("#qa-chat-list label").count() == 1
        # Bob's page replays alice's saved conversation id: it opens nothing of hers.
        bob.evaluate(f"localStorage.setItem('qa-open-conversation', {stolen!r})")
        bob.reload()
        bob.wait_for_selector("#qa-question textarea")
        bob.locator("#qa-chat-list label").filter(has_text="Who is Victor Cha?").wait_for()
        bob.wait_for_timeout(1500)
        assert "Putin" not in bob.locator("#qa-chat").inner_text() and _questions(bob) == []
        assert "Putin" not in bob.locator("#qa-sources").inner_text()
        # Alice, from another browser, finds her conversation in her list and opens it with its sources.
        again = _login(browser, url, "alice", "pw1")
        item = again.locator("#qa-chat-list label").filter(has_text="Where will Putin")
        item.wait_for()
        assert again.locator("#qa-chat-list label").count() == 1
        item.click()
        again.wait_for_selector(".qa-sources.qa-done #qa-turn-1 mark")
        assert "Vietnam" in again.locator("#qa-turn-1 mark").first.inner_text()
        carol = _login(browser, url, "carol", "pw3")  # a user of the users file
        carol.wait_for_timeout(1500)
        assert carol.locator("#qa-chat-list label").count() == 0
        for pg in (alice, bob, again, carol):
            pg.context.close()
    finally:
        _stop(proc)
    assert os.path.exists(index / "conversations.sqlite3")


@pytest.mark.slow
def test_corrupt_store_shows_a_banner_and_still_answers(seeded_index: Path, page: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    index = tmp_path / "index"
    shutil.copytree(seeded_index, index)
    bad = tmp_path / "conversations.sqlite3"
    bad.write_bytes(b"not a database at all\n" * 200)
    monkeypatch.setenv("QA_CONVERSATIONS_PATH", str(bad))
    proc, url = _start(index, tmp_path / "serve.log")
    try:
        _open(page, url)
        banner = page.locator("#qa-chats-banner .qa-chats-off")
        banner.wait_for()
        assert f"Conversations are off: {bad} cannot be used (file is not a database)" in banner.inner_text()
        assert "still answered" in banner.inner_text()
        assert "Vietnam" in _ask(page, "Where will Putin travel after North Korea?").inner_text()
        assert "Traceback" not in page.content() and page.locator("#qa-chat .qa-error").count() == 0
        page.screenshot(path=str(ARTIFACTS / "chats-store-off.png"), full_page=True)
    finally:
        _stop(proc)
    assert bad.read_bytes().startswith(b"not a database")  # left as it was, for the user to look at


@pytest.mark.slow
def test_asking_in_a_conversation_deleted_in_another_tab_says_so(server: tuple[str, Path], page: Any) -> None:
    """Tab B still shows a conversation tab A deleted: its next question starts a new one, and says so."""
    _open(page, server[0])
    _ask(page, "Who is Victor Cha?")
    page.locator("#qa-chat-list label").filter(has_text="Who is Victor Cha?").wait_for()
    page.wait_for_timeout(1500)  # the open conversation is remembered in the browser after the answer
    other = page.context.new_page()
    other.set_default_timeout(60_000)
    _open(other, server[0])
    other.wait_for_function("document.querySelector('#qa-chat .qa-question')?.innerText === 'Who is Victor Cha?'")
    page.locator("#qa-chat-delete").click()
    page.locator("#qa-chat-yes").click()
    page.wait_for_function("document.querySelectorAll('#qa-chat .qa-question').length === 0")
    _ask(other, "What did he urge Washington to do?")
    other.locator(".toast-body").filter(has_text="deleted (in another window)").first.wait_for()


class _SlowModel:
    """An OpenAI-compatible chat endpoint on loopback that takes `delay` seconds before each streamed reply."""

    def __init__(self, delay: float) -> None:
        import json
        import threading
        import time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(delay)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for delta, finish in (({"role": "assistant", "content": "Nothing to add [1]."}, None), ({}, "stop")):
                    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "slow",
                             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


def _serve_a_slow_model(seeded_index: Path, tmp_path: Path, delay: float) -> tuple[Path, Any, Any, str]:
    """`qa serve` over a copy of the seeded index, answering with a model that takes `delay` seconds:
    (index, model, process, url)."""
    from .conftest import start_serve

    index = tmp_path / "index"
    shutil.copytree(seeded_index, index)
    model = _SlowModel(delay=delay)
    proc, url = start_serve(index, tmp_path / "serve.log", env={"QA_LLM": "openai", "QA_OPENAI_BASE_URL": model.url,
                                                                "OPENAI_API_KEY": "sk-test", "QA_OPENAI_MODEL": "slow"})
    return index, model, proc, url


@pytest.mark.slow
def test_opening_another_conversation_leaves_the_answer_being_written_to_its_own(seeded_index: Path, page: Any,
                                                                                tmp_path: Path) -> None:
    """A slow answer in one conversation took the page back to it when it ended, after the user had opened
    another; the question asked meanwhile in the one open was dropped or stored in the other. The page stops
    following that answer; the server finishes it and stores it in its own conversation."""
    from qa.conversations import ConversationStore

    index, model, proc, url = _serve_a_slow_model(seeded_index, tmp_path, delay=6)
    try:
        _open(page, url + "/")
        _ask(page, "Who is Matthew Miller?")  # conversation X, saved
        page.locator("#qa-chat-list label").filter(has_text="Who is Matthew Miller?").wait_for()
        page.locator("#qa-chat-new").click()
        page.wait_for_function("document.querySelectorAll('#qa-chat .qa-question').length === 0")
        page.wait_for_timeout(1000)
        remembered = page.evaluate("localStorage.getItem('qa-open-conversation')")
        box = page.locator("#qa-question textarea")
        box.fill("Who denied the arms transfers?")  # conversation Y, still being answered ...
        box.press("Enter")
        page.wait_for_function("document.querySelectorAll('#qa-chat .qa-question').length === 1")
        # (Y is stored, and the page told so, a moment after the question shows: a reader is no quicker.)
        page.wait_for_function(f"localStorage.getItem('qa-open-conversation') !== {remembered!r}")
        page.locator("#qa-chat-list label").filter(has_text="Who is Matthew Miller?").click()  # ... when X opens
        page.wait_for_timeout(8_000)  # past the moment Y's answer would have come back
        assert _questions(page) == ["Who is Matthew Miller?"]
        assert "Pyongyang" in _ask(page, "Who denied the arms transfers?").inner_text()  # asked in X, now
        store = ConversationStore(index / "conversations.sqlite3")
        convs = {c.title: c.id for c in store.list("")}
        assert set(convs) == {"Who is Matthew Miller?", "Who denied the arms transfers?"}
        assert [t.question for t, _ in store.turns(convs["Who is Matthew Miller?"])] == [
            "Who is Matthew Miller?", "Who denied the arms transfers?"]
        assert [(t.question, t.state) for t, _ in store.turns(convs["Who denied the arms transfers?"])] == [
            ("Who denied the arms transfers?", "done")]  # Y, in Y, with its answer
    finally:
        _stop(proc)
        model.close()


@pytest.mark.slow
def test_a_reload_while_the_answer_is_written_keeps_the_question_and_brings_the_answer(
        seeded_index: Path, page: Any, tmp_path: Path) -> None:
    """The conversation was stored only when its answer ended: a reload while it was written lost the question."""
    from qa.conversations import ConversationStore

    index, model, proc, url = _serve_a_slow_model(seeded_index, tmp_path, delay=8)
    try:
        _open(page, url + "/")
        page.wait_for_timeout(1000)  # the page has remembered "no conversation open"
        remembered = page.evaluate("localStorage.getItem('qa-open-conversation')")
        box = page.locator("#qa-question textarea")
        box.fill("Who denied the arms transfers?")
        box.press("Enter")
        page.wait_for_function("document.querySelectorAll('#qa-chat .qa-question').length === 1")
        # The page learns the conversation the question is stored in before its answer comes.
        page.wait_for_function(f"localStorage.getItem('qa-open-conversation') !== {remembered!r}")
        page.reload()
        page.wait_for_selector("#qa-question textarea")
        page.wait_for_function("document.querySelector('#qa-chat .qa-question')?.innerText === "
                               "'Who denied the arms transfers?'")
        pending = page.locator("#qa-chat .qa-answering")
        assert "still being written" in pending.inner_text()
        page.locator("#qa-chat-list label").filter(has_text="Who denied the arms transfers?").wait_for()
        page.screenshot(path=str(ARTIFACTS / "chats-answer-being-written.png"), full_page=True)
        # The answer, finished by the server after the page went away, comes in without another reload.
        pending.wait_for(state="detached", timeout=60_000)
        answer = page.locator("#qa-chat .qa-answer").first.inner_text()
        assert answer.strip() and "still being written" not in answer and "Interrupted" not in answer
        page.wait_for_selector(".qa-sources.qa-done #qa-turn-1")
        store = ConversationStore(index / "conversations.sqlite3")
        [conv] = store.list("")
        [(turn, _)] = store.turns(conv.id)
        assert (turn.question, turn.state, turn.answer.answer) == ("Who denied the arms transfers?", "done", answer)
        _reload(page, 1)  # and it stays
        assert page.locator("#qa-chat .qa-answer").first.inner_text() == answer
    finally:
        _stop(proc)
        model.close()


@pytest.mark.slow
def test_dates_are_shown_in_the_browsers_time_zone(seeded_index: Path, browser: Any, tmp_path: Path) -> None:
    """The conversation list gave the server's local time without a year; the library the catalogue's UTC."""
    import json
    import sqlite3
    import urllib.request
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from qa.conversations import ConversationStore
    from qa.serving.ui import local_time

    from .conftest import start_serve

    index = tmp_path / "index"
    shutil.copytree(seeded_index, index)
    store = ConversationStore(index / "conversations.sqlite3")
    store.add_turn("leap-day", "", Answer("What happened on leap day?", "Not found in the documents.", False), {})
    with sqlite3.connect(store.path) as db:  # last changed 2024-02-29 23:30 UTC: 1 March, 13:30 at UTC+14
        db.execute("UPDATE conversations SET updated = ? WHERE id = 'leap-day'",
                   (datetime(2024, 2, 29, 23, 30, tzinfo=UTC).timestamp(),))
    zone = ZoneInfo("Pacific/Kiritimati")
    proc, url = start_serve(index, tmp_path / "serve.log", env={"TZ": "UTC"})
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, timezone_id="Pacific/Kiritimati")
    try:
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        _open(page, url + "/")
        old = page.locator("#qa-chat-list label").filter(has_text="What happened on leap day?")
        old.wait_for()
        assert old.inner_text().strip() == "What happened on leap day? · 1 Mar 2024 13:30"
        _ask(page, "Who is Victor Cha?")
        new = page.locator("#qa-chat-list label").filter(has_text="Who is Victor Cha?")
        new.wait_for()
        [info] = [c for c in store.list("") if c.title == "Who is Victor Cha?"]
        shown = new.inner_text().strip()
        assert shown == f"Who is Victor Cha? · {local_time(info.updated, zone)}"
        assert str(datetime.now(zone).year) not in shown  # this year's dates go without it
        with urllib.request.urlopen(url + "/v1/documents") as r:
            [doc] = json.load(r)["documents"]
        added = datetime.fromisoformat(doc["added"].replace("Z", "+00:00")).timestamp()
        row = page.locator("#qa-doc-list label").first.inner_text()
        assert row.endswith(f"added {local_time(added, zone)}"), row
        page.screenshot(path=str(ARTIFACTS / "dates-in-the-readers-zone.png"), full_page=True)
    finally:
        ctx.close()
        _stop(proc)


@pytest.mark.slow
def test_the_chats_trash_button_deletes_the_conversation_after_asking(server: tuple[str, Path], page: Any) -> None:
    """The trash icon over the chat only closed the conversation, which a reader takes for deleting it: it
    was still in the list, and came back."""
    question = "What did the trash button of the chat do?"
    _open(page, server[0])
    _ask(page, question)
    listed = page.locator("#qa-chat-list label").filter(has_text=question)
    listed.wait_for()
    trash = page.get_by_role("button", name="Delete conversation", exact=True)  # it was named "Clear"
    assert trash.get_attribute("title") == "Delete conversation"  # its tooltip too
    trash.click()
    page.locator("#qa-chat-question").filter(has_text=question).wait_for()  # asked first, in the page
    assert "cannot be undone" in page.locator("#qa-chat-question").inner_text()
    page.wait_for_function(f"document.querySelector('#qa-chat .qa-question')?.innerText === {question!r}")
    page.screenshot(path=str(ARTIFACTS / "chats-trash-asks-first.png"), full_page=True)
    page.locator("#qa-chat-no").click()  # cancelled: the conversation stays, open
    page.locator("#qa-chat-yes").wait_for(state="hidden")
    assert _questions(page) == [question] and listed.count() == 1
    trash.click()
    page.locator("#qa-chat-yes").click()
    page.wait_for_function("document.querySelectorAll('#qa-chat .qa-question').length === 0")
    page.locator("#qa-chat-yes").wait_for(state="hidden")
    listed.wait_for(state="detached")
    page.reload()  # deleted, not just closed
    page.wait_for_selector("#qa-question textarea")
    page.wait_for_timeout(1500)
    assert _questions(page) == [] and listed.count() == 0
    # In a new conversation with nothing saved, the trash empties the page, as before: there is nothing to delete.
    page.locator("#qa-chat-new").click()
    assert page.locator("#qa-chat-yes").is_hidden()
