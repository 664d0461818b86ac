"""Inputs a user can get wrong in the Python API and settings: one clear error, or the default they meant."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa import Assistant
from qa.errors import ConfigError
from qa.settings import Settings


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
