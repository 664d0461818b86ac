"""Conversations that last: every turn stored beside the index, per user, resumable, with stale citations marked.

`Assistant.conversation(id=None, user=None)` gives a `Conversation`; its store is `qa.conversation_store`.
"""

from __future__ import annotations

import atexit
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .conversation_store import (
    ANSWERING,
    DONE,
    HISTORY_TURNS,
    INTERRUPTED,
    MIGRATIONS,
    ConversationInfo,
    ConversationStore,
    Turn,
    missing,
    one_line,
    store_problem,
)
from .errors import ConversationNotFoundError, ConversationStoreError, QAError
from .library import strings
from .types import Answer, Citation

if TYPE_CHECKING:
    from .assistant import Assistant

__all__ = ["ANSWERING", "DONE", "HISTORY_TURNS", "INTERRUPTED", "MIGRATIONS", "STATE_NOTE", "Conversation",
           "ConversationInfo", "ConversationStore", "Turn", "missing", "new_id", "quoted_citations", "store_problem",
           "to_markdown"]


Pace = Callable[[Iterator[Answer]], Iterator[Answer]]  # an answer stream computed under a process's limits


def _unpaced(answers: Iterator[Answer]) -> Iterator[Answer]:
    return answers


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
            out.append(replace(turn, stale=stale) if stale else turn)
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

    @property
    def answering(self) -> bool:
        """Whether an answer of this conversation is still being written (a turn in state "answering")."""
        return self.store.answering(self.id)

    def history(self) -> list[str]:
        """The earlier questions a follow-up is answered with."""
        return self.store.questions(self.id)

    def stream(self, question: str, pace: Pace | None = None, **kw: Any) -> Iterator[Answer]:
        """Like `Assistant.stream`, with this conversation as history. The question is stored at once (its turn
        "answering"), the answer when it is complete. A reader that stops early (a page reloaded, a client gone)
        leaves the rest of the answer to a background thread, which stores it all the same. Not stored: a
        question it cannot take (empty, too long), and one whose answer failed with an error the reader saw.
        `pace` wraps the answer's computation, in the reader's thread and in that background thread alike
        (`qa serve` computes one answer at a time: `qa.serving.writer.metered`)."""
        from .assistant import question_problem

        pace = pace or _unpaced
        # Its arguments are checked before the question is stored: a call refused at once leaves no turn behind.
        answers = self.assistant.stream(question, history=self.history(), **kw)
        if question_problem(question) is not None:
            return pace(answers)
        scope = kw.get("sources")
        n = self.store.begin_turn(self.id, self.user, question, None if scope is None else strings(scope))
        return _Answering(self, n, pace(answers))

    def ask(self, question: str, **kw: Any) -> Answer:
        """Answer a question in this conversation and store the turn."""
        *_, final = self.stream(question, **kw)
        return final

    def _save(self, n: int, answer: Answer | None, state: str) -> None:
        if answer is None:  # nothing was written before it stopped
            self.store.interrupt(self.id, n)
            return
        cited = {c.source for c in answer.citations}
        try:
            documents = self.assistant.store().digests(cited) if cited else {}
        except QAError:
            documents = {}
        self.store.finish_turn(self.id, n, answer, documents, state)

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


class _Answering(Iterator[Answer]):
    """The answers to a stored question, computed in the reader's thread as it reads them. Closed or dropped
    before the end, it hands the rest to a background thread, so the turn still gets its whole answer."""

    def __init__(self, conv: Conversation, n: int, answers: Iterator[Answer]) -> None:
        self.conv, self.n, self.answers = conv, n, answers
        self.latest: Answer | None = None
        self.over = False
        _UNFINISHED.add(conv.store, conv.id, n)

    def __next__(self) -> Answer:
        if self.over:
            raise StopIteration
        try:
            self.latest = next(self.answers)
            return self.latest
        except StopIteration:
            self._end(DONE)
            raise
        except QAError:  # the reader is told; the question is not kept, as before it was asked
            self.over = True
            _UNFINISHED.discard(self.conv.id, self.n)
            try:
                self.conv.store.drop_turn(self.conv.id, self.n)
            except ConversationStoreError:
                pass  # the error the reader should see is the answer's
            raise
        except BaseException:  # Ctrl-C in `qa ask --chat`: keep what was written
            self._end(INTERRUPTED)
            raise

    def _end(self, state: str) -> None:
        self.over = True
        try:
            self.conv._save(self.n, self.latest, state)
        finally:
            _UNFINISHED.discard(self.conv.id, self.n)

    def close(self) -> None:
        """Stop reading: the rest of the answer is written and stored in the background."""
        if self.over:
            return
        self.over = True
        try:
            threading.Thread(target=_finish, args=(self.conv, self.n, self.answers, self.latest), daemon=True,
                             name=f"qa-answer-{self.conv.id[:8]}-{self.n}").start()
        except RuntimeError:  # the interpreter is shutting down: no answer will come
            try:
                self._end(INTERRUPTED)
            except ConversationStoreError:
                pass

    def __del__(self) -> None:  # dropped unread (a reader that never started, or left without closing it)
        self.close()


def _finish(conv: Conversation, n: int, answers: Iterator[Answer], latest: Answer | None) -> None:
    """The rest of an answer nobody reads any more, stored when complete (interrupted if it fails)."""
    state = DONE
    try:
        for latest in answers:  # noqa: B007 - the last one is the answer
            pass
    except Exception:  # noqa: BLE001 - no reader to tell: the turn says it did not complete
        state = INTERRUPTED
    try:
        conv._save(n, latest, state)
    except ConversationStoreError:
        pass
    finally:
        _UNFINISHED.discard(conv.id, n)


class _Unfinished:
    """Turns whose answer this process is writing; at exit they are marked interrupted, not left "answering"."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # answers end in reader and background threads
        self._turns: dict[tuple[str, int], ConversationStore] = {}
        atexit.register(self.interrupt_all)

    def add(self, store: ConversationStore, id: str, n: int) -> None:
        with self._lock:
            self._turns[id, n] = store

    def discard(self, id: str, n: int) -> None:
        with self._lock:
            self._turns.pop((id, n), None)

    def interrupt_all(self) -> None:
        with self._lock:
            turns, self._turns = self._turns, {}
        for (id, n), store in turns.items():
            try:
                store.interrupt(id, n)
            except ConversationStoreError:
                pass


_UNFINISHED = _Unfinished()


STATE_NOTE = {  # how a turn without its complete answer reads, here and in the UI
    ANSWERING: "The answer is still being written.",
    INTERRUPTED: "Interrupted: this answer was not completed. Ask the question again to get it.",
}


def to_markdown(info: ConversationInfo, turns: Sequence[Turn]) -> str:
    """Markdown export: question, answer, then `[n] file (location, chars a-b)` and the quoted text."""
    lines = [f"# {info.title}", "", f"Conversation `{info.id}` · started {_when(info.created)} · "
             f"{len(turns)} turn{'s' * (len(turns) != 1)}", ""]
    for t in turns:
        a = t.answer
        lines += [f"## {t.n}. {one_line(t.question)}", ""]
        if t.state == ANSWERING:
            lines += [f"*{_when(t.created)} · {STATE_NOTE[ANSWERING]}*", ""]
            continue
        lines += [f"*{_when(t.created)} · {a.backend}*", ""]
        lines += [a.answer, ""] if a.answer else []
        lines += [f"*{STATE_NOTE[INTERRUPTED]}*", ""] if t.state == INTERRUPTED else []
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
