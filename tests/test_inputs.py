"""Inputs a user can get wrong in the Python API and settings: one clear error, or the default they meant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qa import Assistant, InvalidArgumentError, QAError
from qa.errors import ConfigError
from qa.settings import Settings

from .conftest import SEED_FILE


@pytest.mark.parametrize("top_k", [-2, 0, 51, 2.5, True])
def test_ask_refuses_a_top_k_outside_1_to_50(tmp_path: Path, top_k: object) -> None:
    with pytest.raises(ConfigError, match="from 1 to 50"):
        Assistant(index_dir=tmp_path / "index").ask("Who denied the arms transfers?", top_k=top_k)  # type: ignore[arg-type]


@pytest.mark.parametrize("top_k", [0, 51, 2.5, "5"])
def test_stream_checks_top_k_when_called_as_ask_does(tmp_path: Path, top_k: object) -> None:
    """A generator would check it only when its first answer is read, far from the call that was wrong."""
    a = Assistant(index_dir=tmp_path / "index")
    question = "Who denied the arms transfers?"
    with pytest.raises(ConfigError) as asked:
        a.ask(question, top_k=top_k)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as streamed:
        a.stream(question, top_k=top_k)  # type: ignore[arg-type]  # nothing read from it
    assert str(streamed.value) == str(asked.value)
    # A conversation refuses it before storing the question; a chat engine before adding it to its history.
    with pytest.raises(ConfigError, match="from 1 to 50"):
        a.conversation().stream(question, top_k=top_k)
    assert a.conversations() == []
    chat = a.as_chat_engine(top_k=top_k)
    with pytest.raises(ConfigError, match="from 1 to 50"):
        chat.stream_chat(question)
    assert chat.chat_history == []


@pytest.mark.parametrize("question", [None, b"Who denied the arms transfers?", 42], ids=["None", "bytes", "int"])
def test_a_question_that_is_not_a_string_is_one_clear_error_at_every_entry(tmp_path: Path, question: object) -> None:
    """Not a TypeError from a regular expression deep inside: qa's error, a ValueError too, naming the type."""
    a = Assistant(index_dir=tmp_path / "index")
    q: Any = question
    calls = {"ask": lambda: a.ask(q), "stream": lambda: a.stream(q),
             "conversation.ask": lambda: a.conversation().ask(q), "conversation.stream": lambda: a.conversation().stream(q),
             "query engine": lambda: a.as_query_engine().query(q), "retriever": lambda: a.as_retriever().retrieve(q),
             "chat engine": lambda: a.as_chat_engine().chat(q), "streaming chat": lambda: a.as_chat_engine().stream_chat(q)}
    for where, call in calls.items():
        with pytest.raises(InvalidArgumentError) as err:
            call()
        assert isinstance(err.value, QAError) and isinstance(err.value, ValueError), where
        message = str(err.value)
        assert f"of type {type(question).__name__}" in message and "a question is a string" in message, where
        assert "\n" not in message, where
    assert a.conversations() == []  # nothing stored


def test_history_and_sources_of_the_wrong_type_say_what_they_hold(tmp_path: Path) -> None:
    a = Assistant(index_dir=tmp_path / "index")
    with pytest.raises(InvalidArgumentError, match=r"history holds the earlier questions as strings \(str\), not NoneType"):
        a.stream("Who denied the arms transfers?", history=[None])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError, match=r"sources names documents as strings or paths .*, not int"):
        a.stream("Who denied the arms transfers?", sources=3)  # type: ignore[arg-type]


def test_a_path_as_sources_and_none_as_history_are_taken(seeded: Assistant) -> None:
    question = "Who denied the arms transfers?"
    by_name = seeded.ask(question, sources=str(SEED_FILE))
    assert by_name.answered
    assert seeded.ask(question, sources=SEED_FILE).citations == by_name.citations  # type: ignore[arg-type]
    assert seeded.ask(question, history=None).citations == seeded.ask(question).citations  # type: ignore[arg-type]


def test_paths_may_come_in_a_list_and_anything_else_is_one_clear_error(tmp_path: Path) -> None:
    docs = [tmp_path / "a.txt", tmp_path / "b.md"]
    docs[0].write_text("The lighthouse at Pharos stood in Alexandria.", encoding="utf-8")
    docs[1].write_text("The library of Alexandria held many scrolls.", encoding="utf-8")
    a = Assistant(index_dir=tmp_path / "index")
    report = a.ingest([str(docs[0]), docs[1]])  # a list, as a caller holding several paths writes it
    assert report.count("added") == 2
    assert a.remove([docs[0]]).removed == (str(docs[0].resolve()),)
    for wrong in (5, [str(docs[1]), None]):
        with pytest.raises(InvalidArgumentError, match=r"^ingest\((5|None)\): give files"):
            a.ingest(wrong)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"^remove\(3\.5\)"):
        a.remove(3.5)  # type: ignore[arg-type]
    assert [d.source for d in a.documents()] == [str(docs[1].resolve())], "nothing else changed"


def test_an_empty_setting_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QA_INDEX_DIR", "")  # not the current folder
    monkeypatch.setenv("QA_CHROMA_URL", "")
    s = Settings()
    assert s.index_dir == Path("index") and s.chroma_url is None


def test_conversation_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """`qa ask --chat -x...` would read the id as an option."""
    import qa.conversations

    drawn = iter(["-4z9n-cOpBnNswnaJ2yBvU9s", "--x", "a-4z9n-cOpBnNswnaJ2yBv"])
    monkeypatch.setattr(qa.conversations.secrets, "token_urlsafe", lambda n: next(drawn))
    assert qa.conversations.new_id() == "a-4z9n-cOpBnNswnaJ2yBv"


def test_listing_conversations_of_a_missing_index_creates_nothing(tmp_path: Path) -> None:
    a = Assistant(index_dir=tmp_path / "nowhere" / "index")
    assert a.conversations() == [] and not (tmp_path / "nowhere").exists()
