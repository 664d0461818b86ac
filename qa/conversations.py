"""Conversations that last: every turn stored beside the index, per user, resumable, with stale citations marked.

`Assistant.conversation(id=None, user=None)` gives a `Conversation`; its store is `qa.conversation_store`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .conversation_store import (
    HISTORY_TURNS,
    MIGRATIONS,
    ConversationInfo,
    ConversationStore,
    Turn,
    missing,
    one_line,
    store_problem,
)
from .errors import ConversationNotFoundError, QAError
from .types import Answer, Citation

if TYPE_CHECKING:
    from .assistant import Assistant

__all__ = ["HISTORY_TURNS", "MIGRATIONS", "Conversation", "ConversationInfo", "ConversationStore", "Turn",
           "missing", "new_id", "quoted_citations", "store_problem", "to_markdown"]


class Conversation:
    """A conversation of one user: `.ask()` answers and stores the turn; follow-ups use the stored questions."""

    def __init__(self, assistant: Assistant, store: ConversationStore, id: str, user: str) -> None:
        self.assistant = assistant
        self.store = store
        self.id = id
        self.user = user

    @property
    def info(self) -> ConversationInfo:
        """Title, dates and turn count as stored now (a new conversation is stored with its first turn)."""
        got = self.store.info(self.id, self.user)
        return got or ConversationInfo(self.id, "New conversation", self.user, 0.0, 0.0, 0)

    @property
    def title(self) -> str:
        """The first question, unless renamed."""
        return self.info.title

    @property
    def turns(self) -> tuple[Turn, ...]:
        """Every turn in order; citations whose document changed or was removed since are marked `stale`."""
        stored = self.store.turns(self.id)
        cited = {s for _, docs in stored for s in docs}
        try:
            now = self.assistant.store().digests(cited) if cited else {}
        except QAError:  # no index to compare with: nothing can be said about staleness
            return tuple(t for t, _ in stored)
        texts: dict[str, str | None] = {}
        out = []
        for turn, docs in stored:
            stale = {}
            for c in turn.answer.citations:
                was, is_ = docs.get(c.source), now.get(c.source)
                if is_ is None:
                    stale[c.id] = "removed"
                elif was != is_ and not self._still_there(c, texts):
                    stale[c.id] = "changed"
            out.append(Turn(turn.n, turn.answer, turn.created, turn.scope, stale) if stale else turn)
        return tuple(out)

    def _still_there(self, c: Citation, texts: dict[str, str | None]) -> bool:
        # A changed document may still hold the cited text at the same offsets (text added after it).
        if c.source not in texts:
            try:
                texts[c.source] = self.assistant.document_text(c.source)
            except QAError:
                texts[c.source] = None
        text = texts[c.source]
        return text is not None and text[c.start:c.end] == c.text

    def history(self) -> list[str]:
        """The earlier questions a follow-up is answered with."""
        return self.store.questions(self.id)

    def stream(self, question: str, **kw: Any) -> Iterator[Answer]:
        """Like `Assistant.stream`, with this conversation as history; the final answer is stored (not the
        reply to a question it cannot take: empty, or too long)."""
        from .assistant import question_problem

        if question_problem(question) is not None:
            yield from self.assistant.stream(question, history=self.history(), **kw)
            return
        final = None
        for final in self.assistant.stream(question, history=self.history(), **kw):
            yield final
        if final is not None:
            self._save(final, kw.get("sources"))

    def ask(self, question: str, **kw: Any) -> Answer:
        """Answer a question in this conversation and store the turn."""
        *_, final = self.stream(question, **kw)
        return final

    def _save(self, answer: Answer, scope: Sequence[str] | None) -> None:
        cited = {c.source for c in answer.citations}
        try:
            documents = self.assistant.store().digests(cited) if cited else {}
        except QAError:
            documents = {}
        self.store.add_turn(self.id, self.user, answer, documents, scope)

    def rename(self, title: str) -> None:
        """Give the conversation a new title."""
        if not self.store.rename(self.id, self.user, title):
            raise ConversationNotFoundError(missing(self.id))

    def delete(self) -> None:
        """Delete the conversation and all its turns."""
        if not self.store.delete(self.id, self.user):
            raise ConversationNotFoundError(missing(self.id))

    def markdown(self) -> str:
        """The conversation as Markdown: each turn's answer and its numbered citations with their exact text."""
        return to_markdown(self.info, self.turns)


def to_markdown(info: ConversationInfo, turns: Sequence[Turn]) -> str:
    """Markdown export: question, answer, then `[n] file (location, chars a-b)` and the quoted text."""
    lines = [f"# {info.title}", "", f"Conversation `{info.id}` · started {_when(info.created)} · "
             f"{len(turns)} turn{'s' * (len(turns) != 1)}", ""]
    for t in turns:
        a = t.answer
        lines += [f"## {t.n}. {one_line(t.question)}", "", f"*{_when(t.created)} · {a.backend}*", "", a.answer, ""]
        if a.citations:
            lines += ["Sources:", ""]
        for c in a.citations:
            where = f"{c.location}, " if c.location else ""
            flags = ("" if c.verified else " · not verified") + {
                "changed": " · **the document has changed since; this text is no longer at these offsets**",
                "removed": " · **the document has been removed from the index since**"}.get(t.stale.get(c.id, ""), "")
            lines += [f"[{c.id}] `{c.source}` ({where}chars {c.start}-{c.end}){flags}", ""]
            lines += [f"> {line}" if line else ">" for line in c.text.split("\n")] + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def quoted_citations(markdown: str) -> list[tuple[str, str]]:
    """The (`[n] file ...` line, exact quoted text) pairs of an export: how a reader gets the text back."""
    out: list[tuple[str, str]] = []
    lines = markdown.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("[") and "] `" in line:
            j, quote = i + 2, []
            while j < len(lines) and lines[j].startswith(">"):
                quote.append(lines[j][2:])
                j += 1
            out.append((line, "\n".join(quote)))
    return out


def new_id() -> str:
    """An unguessable conversation id (144 random bits), never starting with '-' (a command line would read
    `qa ask --chat -x...` as an option)."""
    while (id := secrets.token_urlsafe(18)).startswith("-"):
        pass
    return id


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC") if t else "-"
