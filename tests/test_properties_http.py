"""No request crashes the HTTP API: Hypothesis over `/v1/ask`, `/v1/chat/completions` and other routes.

The real app (`qa.serving.server.create_app` over a copy of the seeded index) in process through Starlette's
TestClient. Invariants: never a 500; every /v1 answer is JSON (an error is `{"error": {"message",
"type"}}` with a 4xx); an answered question's citations are exact spans.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qa import Assistant

from .test_properties import QUESTIONS

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)
ASK_FIELDS = {"question": QUESTIONS | JSON_VALUES, "top_k": st.integers(-5, 80) | JSON_VALUES,
              "history": st.lists(QUESTIONS, max_size=3) | JSON_VALUES, "stream": st.booleans() | JSON_VALUES,
              "sources": st.lists(st.text(max_size=30), max_size=3) | JSON_VALUES,
              "conversation_id": st.sampled_from(["new", "nope", ""]) | JSON_VALUES}
ASK_BODIES = st.fixed_dictionaries({}, optional={**ASK_FIELDS, "surprise": JSON_VALUES})
MESSAGES = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool", "x"]),
                                           "content": QUESTIONS | JSON_VALUES}), max_size=4)
CHAT_BODIES = st.fixed_dictionaries({}, optional={"model": st.sampled_from(["qa", "gpt-4o"]) | JSON_VALUES,
                                                  "messages": MESSAGES | JSON_VALUES,
                                                  "stream": st.booleans() | JSON_VALUES,
                                                  "temperature": JSON_VALUES})


@pytest.fixture(scope="module")
def client(seeded_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from fastapi.testclient import TestClient

    from qa.serving.server import create_app

    index = tmp_path_factory.mktemp("props-http") / "index"
    shutil.copytree(seeded_index, index)
    a = Assistant(index_dir=index)
    with TestClient(create_app(a), raise_server_exceptions=False) as c:
        c.assistant = a  # type: ignore[attr-defined]
        yield c


def post(client, path: str, body: object):
    """POST a JSON body as a client library would send it: ASCII with \\u escapes (lone surrogates too)."""
    return client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


def check_response(client, r) -> None:
    assert r.status_code != 500 and r.status_code < 500 or r.status_code == 503, r.text[:300]
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
        assert events
        for data in events:
            if data != "[DONE]":
                json.loads(data)
        return
    body = r.json()
    if r.status_code >= 400:
        assert set(body["error"]) >= {"message", "type"} and body["error"]["message"]
        assert "Traceback" not in body["error"]["message"]
    elif "citations" in body:
        for c in body["citations"]:
            assert client.assistant.document_text(c["source"])[c["start"]:c["end"]] == c["text"]


@given(body=ASK_BODIES)
def test_any_ask_request_is_answered_or_refused_with_a_json_4xx(client, body) -> None:
    check_response(client, post(client, "/v1/ask", body))


@given(q=QUESTIONS)
def test_any_question_over_http_gets_an_answer(client, q) -> None:
    r = post(client, "/v1/ask", {"question": q})
    check_response(client, r)
    assert r.status_code in (200, 422)  # 422: over the length limit (the same limit as the CLI and UI)


@given(body=CHAT_BODIES)
def test_any_chat_completion_request_is_answered_or_refused_with_a_json_4xx(client, body) -> None:
    check_response(client, post(client, "/v1/chat/completions", body))


@given(raw=st.binary(max_size=200), path=st.sampled_from(["/v1/ask", "/v1/chat/completions", "/v1/documents"]))
def test_any_bytes_as_a_body_are_refused_with_a_json_4xx(client, raw, path) -> None:
    r = client.post(path, content=raw, headers={"content-type": "application/json"})
    check_response(client, r)


@given(path=st.text(st.characters(codec="utf-8", exclude_characters="?#"), max_size=40),
       method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]))
def test_any_path_under_v1_is_json(client, path, method) -> None:
    from urllib.parse import quote

    r = client.request(method, "/v1/" + quote(path))
    check_response(client, r)
