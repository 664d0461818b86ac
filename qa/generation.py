"""Generative answers: a model writes from numbered passages; only sentences a passage supports stay.

Each finished sentence is checked against the passage its [n] marker names (or, without a usable
marker, against every passage); a supported sentence is cited to its best-supporting sentence span
and shown at once, an unsupported one is dropped (or kept and flagged, with `keep_unverified`).
When nothing the model wrote holds, the extractive answer is given instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from .answering import ExtractiveComposer, is_instruction, split_sentences
from .chat import answered_as
from .llm import ChatModel, Messages, Truncated, load_model
from .prompts import ANSWER_HISTORY, ANSWER_PASSAGE, ANSWER_SYSTEM, ANSWER_USER, NOT_FOUND, REPLACED, REPLACED_NOTHING
from .settings import Settings
from .types import Citation, Passage
from .verify import Support, Verifier, parse_markers, split_claims

MAX_CLAIMS = 6  # sentences read from the model; small models ramble or repeat after that
CHARS_PER_TOKEN = 3  # conservative, to keep a local model's prompt inside its context window
_NOT_FOUND_REPLY = re.compile(
    r"^\W*(not found|the (passages|documents|context) (do not|don't|does not) (contain|mention|say|answer))",
    re.IGNORECASE,
)
_MARK_AT = re.compile(r"[.!?]+[\"'”’)]*$")
_ENDS_SENTENCE = re.compile(r"[.!?…。！？][\"'”’)\]»」』）]*$")


@dataclass(frozen=True)
class Draft:
    """The answer so far; the last one of a stream is `final`."""

    text: str
    citations: tuple[Citation, ...] = ()
    answered: bool = True
    verified: int = 0  # sentences of the model a passage supports
    total: int = 0  # sentences the model wrote
    final: bool = False


def prompt_text(p: Passage) -> str:
    """The passage as the model reads it: without sentences that give the model orders (prompt injection)."""
    text = p.text
    for s in reversed(split_sentences(p)):
        if is_instruction(s.text):
            text = text[:s.start - p.start] + text[s.end - p.start:]
    return " ".join(text.split())


def build_messages(question: str, passages: Sequence[Passage], history: Sequence[str] = ()) -> Messages:
    """The chat messages: the numbered passages, earlier questions, the question."""
    numbered = "\n".join(ANSWER_PASSAGE.format(n=n, text=prompt_text(p)) for n, p in enumerate(passages, 1))
    earlier = ANSWER_HISTORY.format(questions=" / ".join(history)) if history else ""
    return [{"role": "system", "content": ANSWER_SYSTEM},
            {"role": "user", "content": ANSWER_USER.format(passages=numbered, history=earlier, question=question)}]


def with_markers(sentence: str, ids: Sequence[int]) -> str:
    """Markers before the closing punctuation: 'It rained [1][2].'"""
    marks = "".join(f"[{i}]" for i in ids)
    if not marks:
        return sentence
    m = _MARK_AT.search(sentence)
    return f"{sentence[:m.start()]} {marks}{sentence[m.start():]}" if m else f"{sentence} {marks}"


class GenerativeComposer:
    """Answers with a chat model, keeping the sentences the passages support, each cited."""

    generative = True

    def __init__(self, model: ChatModel, verifier: Verifier, fallback: ExtractiveComposer,
                 max_tokens: int = 160, keep_unverified: bool = False, context_chars: int | None = None) -> None:
        self.model = model
        self.verifier = verifier
        self.fallback = fallback
        self.max_tokens = max_tokens
        self.keep_unverified = keep_unverified
        self.context_chars = context_chars

    def fit(self, question: str, passages: Sequence[Passage], history: Sequence[str] = ()) -> tuple[list[Passage], list[str]]:
        """The passages and earlier questions the prompt holds: all, or as many as the context window allows
        with the question: the oldest questions go first, then the weakest passages (one always stays)."""
        shown, earlier = list(passages), list(history)
        if self.context_chars is None:
            return shown, earlier
        fixed = len(ANSWER_SYSTEM) + len(ANSWER_USER.format(passages="", history="", question=question))
        sizes = [len(ANSWER_PASSAGE.format(n=n, text=prompt_text(p))) + 1 for n, p in enumerate(shown, 1)]

        def size() -> int:
            asked = len(ANSWER_HISTORY.format(questions=" / ".join(earlier))) if earlier else 0
            return fixed + asked + sum(sizes[:len(shown)])

        while earlier and size() > self.context_chars:
            earlier.pop(0)
        while len(shown) > 1 and size() > self.context_chars:
            shown.pop()
        return shown, earlier

    def shown(self, passages: Sequence[Passage], question: str = "", history: Sequence[str] = ()) -> list[Passage]:
        """The passages the prompt numbers (see `fit`)."""
        return self.fit(question, passages, history)[0]

    def drafts(self, question: str, passages: Sequence[Passage], history: Sequence[str] = ()) -> Iterator[Draft]:
        """Yields the answer each time a supported sentence is added; the last draft is final."""
        shown, earlier = self.fit(question, passages, history)
        # A follow-up is judged, and answered without the model, as extractive mode answers it: "What did he
        # reiterate? (Who is Matthew Miller?)"; only the echo check reads the question as it was asked.
        asked = answered_as(question, history)
        evidence = self.verifier.evidence(passages, asked)
        state = _Answer(self.keep_unverified, self.fallback.min_support, self.verifier.words(question))
        buffer, done, not_found, cut = "", 0, False, False
        with closing(self.model.stream(build_messages(question, shown, earlier), self.max_tokens)) as pieces:
            for piece in pieces:
                cut = cut or isinstance(piece, Truncated)
                buffer += piece
                finished = split_claims(buffer)[:-1]  # the last may go on (or still get its marker)
                for claim in finished[done:]:
                    outcome = state.add(claim, evidence, len(shown))
                    if outcome == "not_found":
                        not_found = True
                    elif outcome == "added":
                        yield state.draft()
                done = len(finished)
                if not_found or state.stop:
                    break
            else:
                rest = split_claims(buffer)[done:]
                if cut and rest and not _ENDS_SENTENCE.search(parse_markers(rest[-1])[0]):
                    rest.pop()  # the reply stopped at max_tokens in the middle of this sentence
                for claim in rest:
                    if state.add(claim, evidence, len(shown)) == "not_found":
                        not_found = True
        if state.kept:
            yield state.draft(final=True)
        elif not_found:
            yield Draft(NOT_FOUND, answered=False, total=state.total, final=True)
        else:
            text, citations = self.fallback.compose(asked, list(passages))
            yield Draft(text, tuple(citations), answered=bool(citations), total=state.total, final=True)


class _Answer:
    """The sentences kept so far and their citations, numbered in order of first use."""

    def __init__(self, keep_unverified: bool, min_relevance: float, question_words: set[str] | None = None) -> None:
        self.keep_unverified = keep_unverified
        self.min_relevance = min_relevance
        self.question_words = question_words  # None: the evidence's question
        self.kept: list[tuple[str, list[int]]] = []
        self._kept_words: set[str] = set()
        self.citations: list[Citation] = []
        self._ids: dict[tuple[str, int, int, bool], int] = {}
        self._seen: set[str] = set()
        self.total = self.verified = 0
        self.stop = False

    def add(self, claim: str, evidence: Any, shown: int) -> str:
        """Check one sentence of the model: 'added', 'dropped', 'skipped' or 'not_found'."""
        text, marks = parse_markers(claim, shown)
        key = " ".join(text.lower().split())
        words = evidence.verifier.words(text)
        echoed = self.question_words if self.question_words is not None else evidence.question_words
        if not words or text.endswith((":", "?")) or words <= echoed:
            return "skipped"  # a label ("Answer:"), a bare marker, the question echoed
        if key in self._seen or words <= self._kept_words:
            self.stop = key in self._seen  # the model is repeating itself
            return "skipped"
        self._seen.add(key)
        if self.total == 0 and _NOT_FOUND_REPLY.search(text):
            return "not_found"
        self.total += 1
        self.stop = self.total >= MAX_CLAIMS
        cited = [m - 1 for m in marks if 1 <= m <= shown]  # markers pointing at nothing are dropped
        supports = evidence.supports(text, cited) if cited else []
        chosen = [s for s in supports if s.verified]
        if not chosen:
            best = evidence.supports(text)
            chosen = best[:1] if best and best[0].verified else []
        if chosen:
            self.verified += 1
        elif self.keep_unverified and (supports or (supports := evidence.supports(text))):
            chosen = supports[:1]
        else:
            return "dropped"
        # Supported is not enough: small models copy true but unrelated sentences from the passages.
        if max(evidence.relevance(text), evidence.relevance(chosen[0].sentence.text)) < self.min_relevance:
            return "dropped"
        self.kept.append((text, [self._cite(s) for s in chosen]))
        self._kept_words |= words
        return "added"

    def _cite(self, s: Support) -> int:
        sent, p = s.sentence, s.sentence.passage
        key = (p.source, sent.start, sent.end, s.verified)  # the same span never both verified and not
        if key not in self._ids:
            self._ids[key] = len(self._ids) + 1
            self.citations.append(Citation(
                id=self._ids[key], source=p.source, start=sent.start, end=sent.end, text=sent.text,
                score=round(s.score, 4), passage_start=p.start, passage_end=p.end, passage=p.text,
                location=p.location, verified=s.verified,
            ))
        return self._ids[key]

    def draft(self, final: bool = False) -> Draft:
        text = " ".join(with_markers(t, ids) for t, ids in self.kept)
        return Draft(text, tuple(self.citations), True, self.verified, self.total, final)


def replaced_note(answer: Any) -> str:
    """The note `qa ask` prints on stderr when the extractive answer stood in for the model's, else ""."""
    if (answer.backend not in ("openai", "local") or not answer.answered or answer.verified_sentences
            or not all(c.verified for c in answer.citations)):  # kept unverified sentences are the model's
        return ""
    return REPLACED.format(total=answer.total_sentences) if answer.total_sentences else REPLACED_NOTHING


def make_composer(settings: Settings, embedder: Any) -> Any:
    """The composer the settings choose: extractive, or a chat model whose sentences are verified."""
    fallback = ExtractiveComposer(embedder, settings.max_sentences, settings.min_support)
    if settings.llm == "extractive":
        return fallback
    context = None
    if settings.llm == "local":  # the whole prompt must leave room for the reply in a small window
        context = max(1000, (settings.llm_context - settings.max_tokens - 200) * CHARS_PER_TOKEN)
    return GenerativeComposer(load_model(settings), Verifier(embedder), fallback, settings.max_tokens,
                              settings.keep_unverified, context)
