"""Saved conversations over HTTP: `conversation_id` on /v1/ask, GET/PATCH/DELETE /v1/conversations, against a real server."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from qa.conversations import ConversationStore, new_id, quoted_citations
from qa.types import Answer

from .test_server import KEY, api, start, stop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(seeded_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`qa serve --api-key KEY` with a UI login (alice), so the API is a user of its own: (URL, index)."""
    index = tmp_path_factory.mktemp("api-chats") / "index"
    shutil.copytree(seeded_index, index)
    proc, url = start(index, index.parent / "serve.log", "--api-key", KEY, env={"QA_AUTH": "alice:pw1,bob:pw2"})
    yield url, index
    stop(proc)


def _ask(url: str, question: str, cid: str, stream: bool = False) -> dict:
    r = api(url, "POST", "/v1/ask", json={"question": question, "conversation_id": cid, "stream": stream})
    assert r.status_code == 200, r.text
    if not stream:
        return r.json()
    events = [block.split("\n") for block in r.text.strip().split("\n\n")]
    final = [json.loads(lines[1][len("data: "):]) for lines in events if lines[0] == "event: answer"]
    assert len(final) == 1
    return final[0]


def test_ask_in_a_conversation_then_read_and_export_it(served: tuple[str, Path]) -> None:
    url, _ = served
    first = _ask(url, "Who is Matthew Miller?", "new")
    cid = first["conversation_id"]
    assert "State Department" in first["answer"] and len(cid) >= 24
    follow = _ask(url, "What did he reiterate?", cid, stream=True)  # the stored question is the context
    assert follow["conversation_id"] == cid and "11,000 containers" in follow["answer"]
    listed = api(url, "GET", "/v1/conversations").json()["conversations"]
    assert [(c["id"], c["title"], c["turns"]) for c in listed] == [(cid, "Who is Matthew Miller?", 2)]
    assert api(url, "GET", "/v1/conversations", params={"q": "reiterate"}).json()["conversations"][0]["id"] == cid
    got = api(url, "GET", f"/v1/conversations/{cid}").json()
    assert got["title"] == "Who is Matthew Miller?" and [t["n"] for t in got["turns"]] == [1, 2]
    for turn, answer in zip(got["turns"], (first, follow)):  # the same JSON /v1/ask gave (Answer.to_dict)
        assert turn["answer"] == {k: v for k, v in answer.items() if k != "conversation_id"}
        assert turn["stale"] == {} and turn["backend"] == "extractive" and turn["state"] == "done"
    md = api(url, "GET", f"/v1/conversations/{cid}", params={"format": "markdown"})
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    quoted = quoted_citations(md.text)
    cited = [c for a in (first, follow) for c in a["citations"]]
    assert [text for _, text in quoted] == [c["text"] for c in cited] and cited
    renamed = api(url, "PATCH", f"/v1/conversations/{cid}", json={"title": "  Miller   on arms "}).json()
    assert renamed["title"] == "Miller on arms" and renamed["turns"] == 2
    assert api(url, "GET", "/v1/conversations").json()["conversations"][0]["title"] == "Miller on arms"
    assert api(url, "PATCH", f"/v1/conversations/{cid}", json={"title": " "}).status_code == 422
    assert api(url, "POST", "/v1/ask", json={"question": " ", "conversation_id": "new"}).status_code == 422
    assert len(api(url, "GET", "/v1/conversations").json()["conversations"]) == 1  # the empty one not saved
    assert api(url, "DELETE", f"/v1/conversations/{cid}").json() == {"deleted": cid}
    gone = api(url, "GET", f"/v1/conversations/{cid}")
    assert gone.status_code == 404 and "GET /v1/conversations" in gone.json()["error"]["message"]
    assert api(url, "GET", "/v1/conversations", key=None).status_code == 401  # the API key still guards it


def test_a_logins_conversation_is_not_found_through_the_api(served: tuple[str, Path]) -> None:
    url, index = served
    store = ConversationStore(index / "conversations.sqlite3")  # as the UI stores alice's turns
    alices = new_id()
    store.add_turn(alices, "alice", Answer("Alice's secret question?", "Secret answer.", False), {})
    missing = new_id()
    replies = {
        "read": (api(url, "GET", f"/v1/conversations/{alices}"), api(url, "GET", f"/v1/conversations/{missing}")),
        "export": (api(url, "GET", f"/v1/conversations/{alices}", params={"format": "markdown"}),
                   api(url, "GET", f"/v1/conversations/{missing}", params={"format": "markdown"})),
        "ask": (api(url, "POST", "/v1/ask", json={"question": "Who is Victor Cha?", "conversation_id": alices}),
                api(url, "POST", "/v1/ask", json={"question": "Who is Victor Cha?", "conversation_id": missing})),
        "rename": (api(url, "PATCH", f"/v1/conversations/{alices}", json={"title": "mine now"}),
                   api(url, "PATCH", f"/v1/conversations/{missing}", json={"title": "mine now"})),
        "delete": (api(url, "DELETE", f"/v1/conversations/{alices}"),
                   api(url, "DELETE", f"/v1/conversations/{missing}")),
    }
    for what, (hers, nobodys) in replies.items():
        assert hers.status_code == nobodys.status_code == 404, what
        assert hers.json()["error"]["message"].replace(alices, "ID") == \
            nobodys.json()["error"]["message"].replace(missing, "ID"), what
    assert all(c["id"] != alices for c in api(url, "GET", "/v1/conversations").json()["conversations"])
    assert [t.question for t, _ in store.turns(alices)] == ["Alice's secret question?"]  # not deleted


def test_a_login_over_http_basic_acts_as_that_login(served: tuple[str, Path]) -> None:
    """A program working for a person calls the API with that person's login and sees, continues and lists
    that person's conversations, as the UI does; the API key's identity and the other logins do not."""
    import base64

    url, index = served

    def basic(user: str, password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    store = ConversationStore(index / "conversations.sqlite3")  # a conversation alice started in the UI
    hers = new_id()
    store.add_turn(hers, "alice", Answer("Who is Matthew Miller?", "A spokesperson.", False), {})
    alice = basic("alice", "pw1")
    listed = api(url, "GET", "/v1/conversations", key=None, headers=alice)
    assert listed.status_code == 200 and hers in [c["id"] for c in listed.json()["conversations"]]
    follow = api(url, "POST", "/v1/ask", key=None, headers=alice,
                 json={"question": "What did he reiterate?", "conversation_id": hers})
    assert follow.status_code == 200 and "11,000 containers" in follow.json()["answer"]
    assert [t.question for t, _ in store.turns(hers)] == ["Who is Matthew Miller?", "What did he reiterate?"]
    for other in ({}, basic("bob", "pw2")):  # the key's own identity, another login
        assert api(url, "GET", f"/v1/conversations/{hers}", headers=other).status_code == 404
    wrong = api(url, "GET", "/v1/conversations", key=None, headers=basic("alice", "nope"))
    assert wrong.status_code == 401 and "Wrong user or password" in wrong.json()["error"]["message"]
    assert api(url, "GET", "/v1/status", key=None).status_code == 401  # neither key nor login


class _Counted:
    """The extractive composer made slow: each of `steps` cited sentences takes `delay` s, during which it
    counts as running; `peak` is the most that ever ran at once."""

    generative = False

    def __init__(self, inner: Any, steps: int, delay: float) -> None:
        self.inner, self.steps, self.delay = inner, steps, delay
        self.running = self.peak = 0
        self.lock = threading.Lock()

    def stream(self, question: str, passages: list[Any], background: Any = ()) -> Iterator[Any]:
        first = next(iter(self.inner.stream(question, passages, background)))
        for _ in range(self.steps):
            with self.lock:
                self.running += 1
                self.peak = max(self.peak, self.running)
            time.sleep(self.delay)
            with self.lock:
                self.running -= 1
            yield first


@contextmanager
def _serving_in_process(assistant: Any) -> Iterator[str]:
    """`create_app(assistant)` served by uvicorn in a thread of this process (as `qa serve` runs it): its URL.
    In-process, so that a test can watch the engine's parts while clients come and go."""
    import uvicorn

    from qa.serving.server import create_app

    from .conftest import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(assistant, lazy_ui=True, host="127.0.0.1"), host="127.0.0.1",
                                           port=port, log_level="warning", http="h11"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def _leave_after_the_first_part(url: str, question: str) -> None:
    """Ask in a new conversation with `stream`, read the first part of the answer, and go away."""
    import httpx

    with httpx.stream("POST", url + "/v1/ask", timeout=60,
                      json={"question": question, "conversation_id": "new", "stream": True}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("event: partial"):
                return


def _stored_turns(index: Path, count: int, timeout: float) -> list[Any]:
    """The stored turns of every conversation, once `count` of them are complete (or after `timeout` s)."""
    store = ConversationStore(index / "conversations.sqlite3")
    deadline = time.monotonic() + timeout
    while True:
        turns = [t for c in store.list("") for t, _ in store.turns(c.id)]
        if (len(turns) == count and all(t.state == "done" for t in turns)) or time.monotonic() > deadline:
            return turns
        time.sleep(0.2)


def test_an_answer_its_client_leaves_goes_on_at_once(seeded: Any) -> None:
    """A client that left a streamed answer in a conversation left it standing still, the question stored as
    "answering": Starlette drops the stream without closing it, and it was closed (and the answer handed to
    the background) only whenever the garbage collector next ran: on an idle server, minutes later. Here the
    collector is off, so that the answer goes on without it or not at all."""
    import gc

    seeded._composer = _Counted(seeded.composer(), steps=3, delay=0.3)
    with _serving_in_process(seeded) as url:
        gc.disable()
        try:
            _leave_after_the_first_part(url, "Where will Putin travel after North Korea?")
            turns = _stored_turns(seeded.settings.index_dir, 1, timeout=20)
        finally:
            gc.enable()
        assert [t.state for t in turns] == ["done"] and turns[0].answer.answered


def test_answers_finished_after_their_client_left_wait_their_turn(seeded: Any) -> None:
    """An answer in a conversation whose client left was finished in a background thread outside the one
    CPU-bound answer at a time of `qa serve` (qa.serving.writer.metered): two such and a live question ran
    the model at once."""
    import httpx

    question = "Where will Putin travel after North Korea?"
    counted = _Counted(seeded.composer(), steps=5, delay=0.4)
    seeded._composer = counted
    with _serving_in_process(seeded) as url:
        leavers = [threading.Thread(target=_leave_after_the_first_part, args=(url, question)) for _ in range(2)]
        for t in leavers:
            t.start()
        time.sleep(0.5)  # both asked; the live question comes while they are answered
        live = httpx.post(url + "/v1/ask", json={"question": question}, timeout=120)
        assert live.status_code == 200 and live.json()["answered"]
        for t in leavers:
            t.join(60)
        turns = _stored_turns(seeded.settings.index_dir, 2, timeout=60)
        assert [t.state for t in turns] == ["done", "done"] and all(t.answer.answered for t in turns)
    assert counted.peak == 1
