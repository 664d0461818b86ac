"""Saved conversations over HTTP: `conversation_id` on /v1/ask, GET/PATCH/DELETE /v1/conversations, against a real server."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

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
