"""Generative backends end to end: a real OpenAI-compatible server (qa.llm_server with the bundled
SmolLM2) on 127.0.0.1, and the same model in-process. Every citation must be an exact span.

SmolLM2-135M is weak: it never writes [n] markers and sometimes invents facts, so these tests ask
what it answers reliably and check the guarantees (exact, verified citations; clear errors), not
its prose. Note: llama.cpp's server answers with its one model whatever model name is asked for,
so a wrong QA_OPENAI_MODEL is only caught by servers that check it (OpenAI answers HTTP 404).
The server and the in-process model are fixtures in conftest.py; test_security.py runs the CLI and
`qa serve` against the server (keys never shown) and plants prompt injections for both backends.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from qa import Assistant, BackendError, Settings
from qa.llm import OpenAIModel
from qa.prompts import NOT_FOUND

from .conftest import API_KEY, SEED_FILE, free_port

DOC = SEED_FILE.read_text(encoding="utf-8")


@pytest.fixture()
def remote(seeded, llm_server: str) -> Assistant:
    """The seeded index answered through the server."""
    return Assistant(seeded.settings, llm="openai", openai_base_url=llm_server, openai_api_key=API_KEY,
                     openai_model="smollm2", llm_timeout=300)


def _variant(a: Assistant, **change) -> Assistant:
    """The same assistant with other settings, sharing the loaded embedding model (loading is slow)."""
    b = Assistant(a.settings, **change)
    b._embedder = a.embedder
    return b


def _assert_exact(ans) -> None:
    assert ans.citations
    for c in ans.citations:
        assert DOC[c.start:c.end] == c.text
        assert c.passage[c.start - c.passage_start:c.end - c.passage_start] == c.text
    assert [c.id for c in ans.citations] == list(range(1, len(ans.citations) + 1))
    for c in ans.citations:
        assert f"[{c.id}]" in ans.answer


# --- backend choice -------------------------------------------------------------------------------
def test_default_backend_is_openai_only_with_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().llm == "extractive"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-abc")
    assert Settings().llm == "openai"
    monkeypatch.setenv("QA_LLM", "local")
    assert Settings().llm == "local"


def test_missing_key_is_one_clear_error(seeded) -> None:
    with pytest.raises(BackendError, match="needs an API key: set OPENAI_API_KEY"):
        Assistant(seeded.settings, llm="openai").ask("Who is Putin's adviser on foreign policy?")


def test_rate_limit_and_other_http_errors_map_to_messages() -> None:
    import httpx
    import openai

    key = "sk-very-secret-123"
    model = OpenAIModel("gpt-4o-mini", key, None)
    req = httpx.Request("POST", "https://api.openai.com/v1/chat/completions")
    limited = openai.RateLimitError("Rate limit reached", response=httpx.Response(429, request=req), body=None)
    assert "rate-limiting" in str(model.error(limited)) and "429" in str(model.error(limited))
    leaky = openai.InternalServerError(f"bad key {key}", response=httpx.Response(500, request=req), body=None)
    msg = str(model.error(leaky))
    assert "HTTP 500" in msg and key not in msg


# --- the openai backend against servers that misbehave --------------------------------------------
ADVISER = "Who is Putin's adviser on foreign policy?"
# The second sentence is one the passage supports, as far as it goes: cut off, it must not be shown.
REPLY = "Yuri Ushakov is the adviser to Putin on foreign policy [1]. The agreement would not be aimed against"


HALLUCINATION = "The capital of France is Paris [1]."
NOT_OPENAI = {  # a 200 that is not a chat completion: (body, content type)
    "html": ("<html><body><h1>Welcome to nginx!</h1></body></html>", "text/html"),
    "garbage": ("\x00\x01 garbage !!! not json", "text/plain"),
    "other-json": ('{"status": "ok", "result": "Yuri Ushakov"}', "application/json"),
}


class _Misbehaving(BaseHTTPRequestHandler):
    """A chat completions endpoint that answers REPLY as its path's first part says: /<mode>/v1/..."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, body: str, kind: str = "application/json") -> None:
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _event(self, content: str | None, finish: str | None = None) -> None:
        delta = {} if content is None else {"content": content}
        chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "fake",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.flush()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        mode = self.path.split("/")[1]
        if mode == "hang":
            time.sleep(4)
        if mode in NOT_OPENAI:
            return self._send(*NOT_OPENAI[mode])
        if mode == "ignores-stream":
            return self._send(json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "fake", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": REPLY + " us."}, "finish_reason": "stop"}]}))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        if mode == "not-json":
            self.wfile.write(b"data: not json at all\n\n")
            return
        words = {"empty": [], "hallucinates": HALLUCINATION.split(" ")}.get(mode, REPLY.split(" "))
        for i, word in enumerate(words):
            if mode == "breaks-off" and i == 5:
                return  # the server died: the connection closes without a finish_reason
            self._event(word if i == 0 else " " + word)
        self._event(None, "length" if mode == "length" else "stop")
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture(scope="module")
def misbehaving() -> Iterator[str]:
    """The misbehaving server on a free loopback port; yields its root URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Misbehaving)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _fake(seeded, misbehaving: str, mode: str, **change) -> Assistant:
    return Assistant(seeded.settings, llm="openai", openai_base_url=f"{misbehaving}/{mode}/v1",
                     openai_api_key="x", **change)


def test_a_reply_cut_at_max_tokens_loses_its_unfinished_sentence(seeded, misbehaving: str) -> None:
    whole = _fake(seeded, misbehaving, "stop").ask(ADVISER)  # the same words, said to be complete
    assert whole.verified_sentences == 2 and whole.answer.endswith("would not be aimed against [1]")
    cut = _fake(seeded, misbehaving, "length").ask(ADVISER)
    assert cut.answer == "Yuri Ushakov is the adviser to Putin on foreign policy [1]."
    assert (cut.verified_sentences, cut.total_sentences) == (1, 1)


def test_a_stream_that_breaks_off_is_an_error(seeded, misbehaving: str) -> None:
    with pytest.raises(BackendError) as err:
        _fake(seeded, misbehaving, "breaks-off").ask(ADVISER)
    assert "stopped in the middle of its reply" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("mode,what", [
    ("html", "an HTML page"), ("garbage", "a text/plain reply"), ("other-json", "JSON that is not a chat completion"),
    ("not-json", "a stream of data that is not chat completion chunks"),
])
def test_a_reply_that_is_not_a_chat_completion_is_one_clear_error(seeded, misbehaving: str, mode: str,
                                                                   what: str) -> None:
    with pytest.raises(BackendError) as err:
        _fake(seeded, misbehaving, mode).ask(ADVISER)
    msg = str(err.value)
    assert msg == (f"The model server at {misbehaving}/{mode}/v1 returned no chat completion ({what}); is it an "
                   "OpenAI-compatible /v1 endpoint? Check QA_OPENAI_BASE_URL (or OPENAI_BASE_URL).")


def test_an_empty_reply_is_an_error_and_a_whole_reply_is_read(seeded, misbehaving: str) -> None:
    with pytest.raises(BackendError, match="sent an empty reply"):
        _fake(seeded, misbehaving, "empty").ask(ADVISER)
    # A server that ignores "stream": true but sends a chat.completion: its text is read as one piece.
    ans = _fake(seeded, misbehaving, "ignores-stream").ask(ADVISER)
    assert ans.answer.startswith("Yuri Ushakov is the adviser to Putin on foreign policy [1].")
    assert ans.backend == "openai" and ans.verified_sentences >= 1


def test_a_follow_up_the_model_cannot_answer_gets_the_extractive_answer_to_the_conversation(
        seeded, misbehaving: str) -> None:
    history, question = ["Who is Matthew Miller?"], "What did he reiterate?"
    ans = _fake(seeded, misbehaving, "hallucinates").ask(question, history=history)
    assert (ans.verified_sentences, ans.total_sentences) == (0, 1)  # the model's sentence was dropped
    extractive = _variant(seeded, llm="extractive").ask(question, history=history)
    assert ans.answered and "reiterated" in ans.answer and ans.answer == extractive.answer
    assert [c.start for c in ans.citations] == [c.start for c in extractive.citations]


def test_a_timeout_takes_the_time_it_states_and_an_address_needs_its_scheme(misbehaving: str) -> None:
    import openai  # noqa: F401  (imported before the clock starts)

    model = OpenAIModel("fake", "x", f"{misbehaving}/hang/v1", timeout=1.5)
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"No reply from .* within 1.5s"):
        list(model.stream([{"role": "user", "content": "Hello?"}], 10))
    assert time.monotonic() - started < 2.9  # asked once, not twice (3 s and more)
    with pytest.raises(BackendError) as err:
        OpenAIModel("fake", "x", "127.0.0.1:7951/v1")
    assert str(err.value) == ("The model server address 127.0.0.1:7951/v1 has no http:// or https:// in front: "
                              "set QA_OPENAI_BASE_URL (or OPENAI_BASE_URL) to http://127.0.0.1:7951/v1")


def test_qa_ask_says_when_the_extractive_answer_stands_in_for_the_model(
        seeded, misbehaving: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from qa.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", "x")
    monkeypatch.setenv("QA_OPENAI_BASE_URL", f"{misbehaving}/hallucinates/v1")
    assert main(["ask", "--llm", "openai", "--json", "Who is Matthew Miller?"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["answered"] and "Miller" in json.loads(out.out)["answer"]
    assert out.err == ("note: 0 of 1 generated sentences verified against the passages; "
                       "this is the extractive answer instead.\n")
    monkeypatch.setenv("QA_OPENAI_BASE_URL", f"{misbehaving}/stop/v1")  # the model's own answer: no note
    assert main(["ask", "--llm", "openai", ADVISER]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("Yuri Ushakov is the adviser") and out.err == ""


# --- the openai backend against a real OpenAI-compatible server ----------------------------------
@pytest.mark.slow
def test_server_answer_has_exact_verified_citations(remote: Assistant) -> None:
    ans = remote.ask("Who is Putin's adviser on foreign policy?")
    assert ans.answered and ans.backend == "openai" and "Ushakov" in ans.answer
    _assert_exact(ans)
    assert all(c.verified for c in ans.citations) and ans.total_sentences >= 1
    out = ans.to_dict()
    assert out["citations"][0]["verified"] is True and "verified_sentences" in out


@pytest.mark.slow
def test_server_streams_a_growing_answer(remote: Assistant) -> None:
    parts = list(remote.stream("What did Victor Cha say the summit poses?"))
    assert parts[-1].answered and "greatest threat" in parts[-1].answer
    for before, after in zip(parts, parts[1:]):
        assert after.answer.startswith(before.answer)
    _assert_exact(parts[-1])


@pytest.mark.slow
def test_server_follow_up_uses_the_conversation(remote: Assistant) -> None:
    ans = remote.ask("What did he reiterate?", history=["Who is Matthew Miller?"])
    assert ans.answered and "11,000 containers" in ans.answer
    _assert_exact(ans)


@pytest.mark.slow
def test_server_unanswerable_says_not_found(remote: Assistant) -> None:
    ans = remote.ask("Who won the 2018 FIFA World Cup?")
    assert not ans.answered and ans.answer == NOT_FOUND and ans.citations == ()


@pytest.mark.slow
def test_llama_cpp_server_ignores_the_model_name(remote: Assistant) -> None:
    # Documented behaviour of llama.cpp's server: an unknown model name gets its one model.
    ans = _variant(remote, openai_model="no-such-model").ask("Who is Putin's adviser on foreign policy?")
    assert ans.answered and "Ushakov" in ans.answer


@pytest.mark.slow
@pytest.mark.parametrize("change,expected", [
    ({"openai_base_url": "http://127.0.0.1:{free}/v1"}, "Cannot reach the model server at http://127.0.0.1:"),
    ({"openai_api_key": "sk-wrong-key-0042"}, "rejected the API key (HTTP 401). Check OPENAI_API_KEY."),
    ({"openai_base_url": "{root}/nope"}, "was not found at"),
    ({"llm_timeout": 0.001}, "within 0.001s. Raise QA_LLM_TIMEOUT"),
])
def test_server_errors_are_one_clear_line(remote: Assistant, llm_server: str, change: dict, expected: str) -> None:
    root = llm_server.removesuffix("/v1")
    change = {k: v.format(free=free_port(), root=root) if isinstance(v, str) else v for k, v in change.items()}
    with pytest.raises(BackendError) as err:
        _variant(remote, **change).ask("Which news agency described the programme of the visit?")
    msg = str(err.value)
    assert expected in msg and "\n" not in msg
    assert API_KEY not in msg and "sk-wrong-key-0042" not in msg


# --- the local backend, in-process ----------------------------------------------------------------
@pytest.fixture()
def local(seeded, local_model) -> Assistant:
    a = Assistant(seeded.settings, llm="local")
    a.composer().model = local_model
    return a


@pytest.mark.slow
def test_local_answer_has_exact_verified_citations(local: Assistant) -> None:
    ans = local.ask("What did Victor Cha say the summit poses?")
    assert ans.answered and ans.backend == "local" and "greatest threat" in ans.answer
    _assert_exact(ans)
    assert all(c.verified for c in ans.citations)


@pytest.mark.slow
def test_local_hallucination_is_not_shown(local: Assistant) -> None:
    # SmolLM2 answers "The capital of France is Paris."; no passage supports it.
    ans = local.ask("What is the capital of France?")
    assert not ans.answered and ans.answer == NOT_FOUND
    assert ans.total_sentences >= 1 and ans.verified_sentences == 0


@pytest.mark.slow
def test_local_long_conversation_fits_the_context_window(local: Assistant) -> None:
    # Six earlier questions near the 2,000-character limit: 3,000+ tokens with the passages in a 2,048 window.
    long = ("Please tell me, considering the ferry timetable and all the details about tickets, bicycles and "
            "dogs, " * 19)[:1950] + " Who is the director?"
    ans = local.ask("What did Victor Cha say the summit poses?", history=[long] * 6)
    assert ans.backend == "local" and ans.answered and "greatest threat" in ans.answer
    _assert_exact(ans)


def test_local_model_missing_file_is_a_clear_error(seeded, tmp_path: Path) -> None:
    a = Assistant(seeded.settings, llm="local", local_model=tmp_path / "nope.gguf")
    with pytest.raises(BackendError, match="No model file at .*nope.gguf. Set QA_LOCAL_MODEL"):
        a.ask("Who is Putin's adviser on foreign policy?")
