"""The extractive answer composer: the retrieved sentences that best answer the question, cited.

Each sentence is scored by embedding similarity to the question, by how many of the question's
content words it contains, and by the rank of its passage; the best few become the answer, each
with an inline [n] marker pointing at its exact span in the document.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .prompts import NOT_FOUND
from .types import Citation, Passage

_ABBREV = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "inc", "ltd", "co",
           "no", "vol", "fig", "gen", "gov", "sen", "rep", "u.s", "u.k", "u.n", "e.g", "i.e", "jan",
           "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "approx"}
_BOUNDARY = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])|\n+")
_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset("""a an the and or but if of at by for with about against between into through
during before after above below to from up down in out on off over under again further then once
here there when where why how all any both each few more most other some such no nor not only own
same so than too very s t can will just don should now is are was were be been being have has had
having do does did doing i me my we our you your he him his she her it its they them their what
which who whom this that these those am would could also as per whose one many much""".split())

W_DENSE, W_LEXICAL, W_RANK = 0.55, 0.35, 0.10
# Orders to an AI assistant planted in a document (prompt injection): such sentences are data, never an
# answer. They are not quoted, not cited and not shown to a model. A heuristic for the common English forms.
_INSTRUCTION = re.compile(
    r"\b(ignore|disregard|forget|override)\s+(all\s+|any\s+|the\s+|your\s+)*(previous|prior|above|earlier|"
    r"preceding|former|system|original)\s+(instructions?|prompts?|rules|directions|guidelines|messages)"
    r"|\b(print|reveal|show|repeat|output|display|leak|tell\s+me)\s+(me\s+)?(the\s+|your\s+)*(system|initial|"
    r"hidden|original)\s+(prompt|instructions|message)"
    r"|\b(answer|reply|respond)\s+(to\s+)?(every|all|any|each)\s+(of\s+the\s+|the\s+)?(questions?|queries|messages)"
    r"\s+with\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Sentence:
    """A sentence span inside a passage, with document-level offsets."""

    passage: Passage
    start: int
    end: int
    text: str
    rank: int


def split_sentences(passage: Passage, rank: int = 0) -> list[Sentence]:
    """Sentences of a passage with exact document offsets (abbreviations do not end a sentence)."""
    text = passage.text
    cuts = [0]
    for m in _BOUNDARY.finditer(text):
        if m.group().startswith("\n"):
            cuts.append(m.end())
            continue
        before = text[:m.start()]
        last = re.search(r"([\w.]+)\.$", before)
        word = last.group(1).lower() if last else ""
        if word in _ABBREV or (len(word) == 1 and word.isalpha()):
            continue
        cuts.append(m.end())
    cuts.append(len(text))
    out = []
    for a, b in zip(cuts, cuts[1:]):
        piece = text[a:b]
        lead = len(piece) - len(piece.lstrip())
        piece = piece.strip()
        if len(_WORD.findall(piece)) >= 3:
            s = passage.start + a + lead
            out.append(Sentence(passage, s, s + len(piece), piece, rank))
    return out


def is_instruction(text: str) -> bool:
    """Whether a sentence gives orders to an AI assistant ("ignore previous instructions ...")."""
    return bool(_INSTRUCTION.search(text))


def content_words(text: str, stem: Any) -> set[str]:
    """Lower-cased, stemmed words that carry meaning."""
    return {stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS}


class ExtractiveComposer:
    """Chooses and cites sentences; `min_support` is the not-found threshold."""

    def __init__(self, embedder: Any, max_sentences: int = 2, min_support: float = 0.50) -> None:
        import Stemmer

        self.embedder = embedder
        self.max_sentences = max_sentences
        self.min_support = min_support
        self._stem = Stemmer.Stemmer("english").stemWord

    def score(self, question: str, passages: list[Passage]) -> list[tuple[float, Sentence]]:
        """Every sentence of the passages with its support score, best first."""
        from .embedding import encode

        sentences = [s for r, p in enumerate(passages) for s in split_sentences(p, r) if not is_instruction(s.text)]
        seen: set[tuple[str, int]] = set()
        sentences = [s for s in sentences if (k := (s.passage.source, s.start)) not in seen and not seen.add(k)]
        if not sentences:
            return []
        vecs = encode(self.embedder, [question] + [s.text for s in sentences])
        dense = vecs[1:] @ vecs[0]
        q_words = content_words(question, self._stem) or {w.lower() for w in _WORD.findall(question)}
        lexical = np.array([len(q_words & content_words(s.text, self._stem)) / max(len(q_words), 1)
                            for s in sentences])
        rank = np.array([1.0 / (1 + s.rank) for s in sentences])
        total = W_DENSE * dense + W_LEXICAL * lexical + W_RANK * rank
        order = np.argsort(-total, kind="stable")
        return [(float(total[i]), sentences[i]) for i in order]

    def choose(self, scored: list[tuple[float, Sentence]]) -> list[tuple[float, Sentence]]:
        """The answer's sentences: the best, plus close seconds, never overlapping."""
        if not scored or scored[0][0] < self.min_support:
            return []
        best = scored[0][0]
        picked: list[tuple[float, Sentence]] = []
        for sc, s in scored:
            if len(picked) == self.max_sentences or sc < best - 0.12 or sc < self.min_support:
                break
            if any(p.passage.source == s.passage.source and p.start < s.end and s.start < p.end for _, p in picked):
                continue
            picked.append((sc, s))
        return picked

    def compose(self, question: str, passages: list[Passage]) -> tuple[str, list[Citation]]:
        """The cited answer text and its citations, or the not-found sentence and none."""
        parts = list(self.stream(question, passages))
        if not parts:
            return NOT_FOUND, []
        return " ".join(t for t, _ in parts), [c for _, c in parts]

    def stream(self, question: str, passages: list[Passage]) -> Iterator[tuple[str, Citation]]:
        """Yields (sentence with its marker, citation) one at a time, in answer order."""
        for n, (sc, s) in enumerate(self.choose(self.score(question, passages)), start=1):
            p = s.passage
            yield with_marker(s.text, n), Citation(
                id=n, source=p.source, start=s.start, end=s.end, text=s.text, score=round(sc, 4),
                passage_start=p.start, passage_end=p.end, passage=p.text, location=p.location,
            )


def with_marker(sentence: str, n: int) -> str:
    """Put `[n]` before the sentence's closing punctuation: 'It rained [1].'"""
    m = re.search(r"[.!?]+[\"'”’)]*$", sentence)
    if m:
        return f"{sentence[:m.start()]} [{n}]{sentence[m.start():]}"
    return f"{sentence} [{n}]"
