"""Verification: is a generated sentence supported by a passage, and which span of it supports it?

A claim is supported when one sentence of the passage, or two adjacent ones, hold most of its content
words (stemmed), the passage holds every number and name it states, and a sentence is close to it in
meaning (embedding similarity). The best of those sentences is the span a citation points at.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .answering import _BOUNDARY, STOPWORDS, Sentence, _abbreviation, content_words, is_instruction, split_sentences
from .types import Passage

W_COVERAGE, W_DENSE = 0.5, 0.5
MIN_COVERAGE = 0.7  # share of the claim's content words one or two adjacent sentences must contain
MIN_SCORE = 0.55  # W_COVERAGE * coverage + W_DENSE * similarity of the best sentence

_MARKER = re.compile(r"\s*\[(\d+(?:\s*[,;\u2013-]\s*\d+)*)\]")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"\w+", re.UNICODE)
_NAME = re.compile(r"\b[A-Z][\w\-]+")


def split_claims(text: str) -> list[str]:
    """Sentences of generated text; markers written after the full stop stay with their sentence."""
    cuts = [0]
    for m in _BOUNDARY.finditer(text):
        if not m.group().startswith("\n") and _abbreviation(text[:m.start()]):
            continue
        cuts.append(m.end())
    cuts.append(len(text))
    claims: list[str] = []
    for a, b in zip(cuts, cuts[1:]):
        piece = text[a:b].strip()
        if claims and (lead := re.match(r"(?:\s*\[[\d\s,;\u2013-]*\]?)+", piece)):
            claims[-1] += " " + lead.group().strip()  # "It rained. [1] Then" -> "It rained. [1]"
            piece = piece[lead.end():].strip()
        if piece:
            claims.append(piece)
    return claims


def parse_markers(claim: str) -> tuple[str, list[int]]:
    """The claim without its [n] markers, and the numbers they name in order."""
    numbers: list[int] = []
    for m in _MARKER.finditer(claim):
        numbers += [int(n) for n in re.findall(r"\d+", m.group(1))]
    text = re.sub(r"\s*\[[\d\s,;\u2013-]*$", "", _MARKER.sub("", claim))  # and one cut off mid-way
    text = re.sub(r"\s+([.,;:!?])", r"\1", text)
    return " ".join(text.split()), list(dict.fromkeys(numbers))


def numbers_in(text: str) -> set[str]:
    """Numbers as written, without thousands separators: '11,000' and '11000' are the same."""
    return {n.replace(",", "").rstrip(".") for n in _NUMBER.findall(text)}


def names_in(text: str) -> set[str]:
    """Capitalised words (lower-cased) but the first, which any sentence capitalises: the claim's names."""
    return {m.group().lower() for m in _NAME.finditer(text) if m.start() > 0} - STOPWORDS


def names_found(names: set[str], words: set[str]) -> bool:
    """Every name is a word of the passage, or a stem of one ('Korea' in 'Korean')."""
    return all(n in words or any(w.startswith(n) or (len(w) >= 4 and n.startswith(w)) for w in words)
               for n in names)


@dataclass(frozen=True)
class Support:
    """How well one passage supports a claim, and its best sentence."""

    passage: int  # index into the passages
    sentence: Sentence
    coverage: float
    similarity: float
    facts_ok: bool  # every number and name of the claim is in the passage

    @property
    def score(self) -> float:
        return W_COVERAGE * self.coverage + W_DENSE * self.similarity

    @property
    def verified(self) -> bool:
        return self.facts_ok and self.coverage >= MIN_COVERAGE and self.score >= MIN_SCORE


class Evidence:
    """The sentences of a set of passages, embedded once, to check many claims against."""

    def __init__(self, verifier: Verifier, passages: Sequence[Passage], question: str = "") -> None:
        from .embedding import encode

        self.verifier = verifier
        self.passages = list(passages)
        self.sentences = [[s for s in split_sentences(p, r) or [_whole(p, r)] if not is_instruction(s.text)]
                          for r, p in enumerate(self.passages)]  # an injected order supports nothing
        flat = [s.text for ss in self.sentences for s in ss]
        vecs = encode(verifier.embedder, [question, *flat])
        self.question, self.question_words = vecs[0], verifier.words(question)
        self.vectors = vecs[1:]
        self.offsets = np.cumsum([0] + [len(ss) for ss in self.sentences])
        self.words = [[verifier.words(s.text) for s in ss] for ss in self.sentences]
        self.numbers = [numbers_in(p.text) for p in self.passages]
        self.lower_words = [set(_WORD.findall(p.text.lower())) for p in self.passages]

    def supports(self, claim: str, among: Sequence[int] | None = None) -> list[Support]:
        """Support of the claim by each passage in `among` (default all), best first."""
        from .embedding import encode

        indices = [i for i in (range(len(self.passages)) if among is None else among)
                   if 0 <= i < len(self.passages) and self.sentences[i]]
        claim_words = self.verifier.words(claim)
        if not indices or not claim_words:
            return []
        vec = encode(self.verifier.embedder, [claim])[0]
        claim_numbers, claim_names = numbers_in(claim), names_in(claim)
        out = []
        for i in indices:
            sims = self.vectors[self.offsets[i]:self.offsets[i + 1]] @ vec
            words = self.words[i]
            covers = [len(claim_words & w) / len(claim_words) for w in words]
            pairs = [len(claim_words & (a | b)) / len(claim_words) for a, b in zip(words, words[1:])]
            best = int(np.argmax(W_COVERAGE * np.array(covers) + W_DENSE * sims))
            out.append(Support(
                passage=i, sentence=self.sentences[i][best], coverage=max(covers + pairs),
                similarity=float(sims.max()),
                facts_ok=claim_numbers <= self.numbers[i] and names_found(claim_names, self.lower_words[i]),
            ))
        return sorted(out, key=lambda s: (s.verified, s.score), reverse=True)

    def relevance(self, text: str) -> float:
        """How well a text answers the question, scored as the extractive composer scores sentences."""
        from .answering import W_DENSE as W_Q_DENSE
        from .answering import W_LEXICAL
        from .embedding import encode

        if not self.question_words:
            return 1.0
        dense = float(encode(self.verifier.embedder, [text])[0] @ self.question)
        lexical = len(self.question_words & self.verifier.words(text)) / len(self.question_words)
        return W_Q_DENSE * dense + W_LEXICAL * lexical


class Verifier:
    """Checks claims against passages with the embedding model and stemmed word overlap."""

    def __init__(self, embedder: Any) -> None:
        import Stemmer

        self.embedder = embedder
        self._stem = Stemmer.Stemmer("english").stemWord

    def words(self, text: str) -> set[str]:
        """The content words of a text, numbers included, stemmed."""
        return content_words(text, self._stem)

    def evidence(self, passages: Sequence[Passage], question: str = "") -> Evidence:
        """Embed the passages' sentences (and the question) once for many checks."""
        return Evidence(self, passages, question)

    def check(self, claim: str, passage: Passage) -> Support | None:
        """How one passage supports one claim (None when the claim has no content words)."""
        found = self.evidence([passage]).supports(claim)
        return found[0] if found else None


def _whole(p: Passage, rank: int) -> Sentence:
    return Sentence(p, p.start, p.end, p.text, rank)
