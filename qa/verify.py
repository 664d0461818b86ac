"""Verification: is a generated sentence supported by a passage, and which span of it supports it?

A claim is judged against one span of the passage: a sentence, or two adjacent ones. The span supports
it when it holds most of the claim's content words (stemmed) and every number and name the claim states,
is close to it in meaning (embedding similarity), and says it with the same polarity: no negation on one
side only ("not required" against "must wear"), no opposite word ("allowed" against "prohibited"). The
span that supports the claim is the one its citation points at (a single sentence before a pair).
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

# Citation markers as models write them: [1], [1, 2], [^1], [Passage 1], [Source 2], 【1】, and in parentheses
# (1), (Source 1), which count only when they name passages the model was shown ("(1987)" is a year).
_LABEL = r"(?:\^?\s*(?:passages?|sources?|documents?|docs?|refs?|references?)?\s*)"
_NUMBERS = rf"{_LABEL}\d+(?:\s*(?:[,;\u2013-]|and)\s*{_LABEL}\d+)*"
_MARKER = re.compile(rf"\s*(?:\[\s*{_NUMBERS}\s*\]|\u3010\s*{_NUMBERS}\s*\u3011)", re.IGNORECASE)
_PAREN_MARKER = re.compile(rf"\s*\(\s*{_NUMBERS}\s*\)", re.IGNORECASE)
_LEAD = re.compile(rf"(?:{_MARKER.pattern}|{_PAREN_MARKER.pattern}|\s*[\[\u3010]{_LABEL}[\d\s,;\u2013-]*[\]\u3011]?)+",
                   re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"\w+", re.UNICODE)
_NAME = re.compile(r"\b[A-Z][\w\-]+")
_TOKEN = re.compile(r"\w+(?:['\u2019]t)?|[,;:.!?()\u2013\u2014]")
NEGATIONS = frozenset("not no never nor none cannot without neither nobody nothing nowhere".split())
NEGATION_SCOPE = 4  # words after a negation that it negates, up to a comma or the clause's end
# Words that say the opposite of each other (stemmed when the verifier is made); a span holding one and not
# the other contradicts a claim holding the other. Kept to words whose opposite is unambiguous.
OPPOSITES = [
    ("allow allowed permit permitted legal", "prohibit prohibited forbid forbidden ban banned illegal"),
    ("require required mandatory compulsory obligatory", "optional voluntary"),
    ("accept accepted approve approved confirm confirmed", "reject rejected deny denied refuse refused"),
    ("include included", "exclude excluded"),
    ("increase increased rise rose", "decrease decreased decline declined"),
    ("possible", "impossible"), ("correct", "incorrect"), ("true", "false"), ("visible", "invisible"),
    ("success successful succeed succeeded", "failure fail failed unsuccessful"),
    ("minimum", "maximum"), ("alive", "dead"),
]


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
        if claims and (lead := _LEAD.match(piece)):
            claims[-1] += " " + lead.group().strip()  # "It rained. [1] Then" -> "It rained. [1]"
            piece = piece[lead.end():].strip()
        if piece:
            claims.append(piece)
    return claims


def parse_markers(claim: str, shown: int | None = None) -> tuple[str, list[int]]:
    """The claim without its citation markers, and the passage numbers they name in order. A marker in
    parentheses counts only when every number it names is a passage shown (1 to `shown`)."""
    numbers: list[int] = []

    def take(m: re.Match[str]) -> str:
        found = [int(n) for n in re.findall(r"\d+", m.group())]
        if m.group().lstrip().startswith("(") and not (shown and all(1 <= n <= shown for n in found)):
            return m.group()
        numbers.extend(found)
        return ""

    text = _PAREN_MARKER.sub(take, _MARKER.sub(take, claim))
    text = re.sub(r"\s*[\[\u3010][^\]\u3011]{0,20}$", "", text)  # and one cut off mid-way
    text = re.sub(r"\s+([.,;:!?])", r"\1", text)
    return " ".join(text.split()), list(dict.fromkeys(numbers))


def numbers_in(text: str) -> set[str]:
    """Numbers as written, without thousands separators: '11,000' and '11000' are the same."""
    return {n.replace(",", "").rstrip(".") for n in _NUMBER.findall(text)}


def names_in(text: str) -> set[str]:
    """Capitalised words (lower-cased) but the first, which any sentence capitalises: the claim's names."""
    return {m.group().lower() for m in _NAME.finditer(text) if m.start() > 0} - STOPWORDS


def negated(text: str, stem: Any) -> tuple[bool, set[str]]:
    """Whether the text negates anything, and the stemmed words its negations reach ('does not sell
    products in North America': sell, product, north, america)."""
    tokens = [t.lower() for t in _TOKEN.findall(text)]
    found, reach = False, set()
    for i, t in enumerate(tokens):
        if not (t in NEGATIONS or t.endswith(("n't", "n\u2019t"))) or tokens[i + 1:i + 2] == ["only"]:
            continue  # "not only ... but also" affirms
        found = True
        for w in tokens[i + 1:i + 1 + NEGATION_SCOPE]:
            if not w[0].isalnum() or w == "but":
                break
            if w not in STOPWORDS:
                reach.add(stem(w))
    return found, reach


def names_found(names: set[str], words: set[str]) -> bool:
    """Every name is a word of the passage, or a stem of one ('Korea' in 'Korean')."""
    return all(n in words or any(w.startswith(n) or (len(w) >= 4 and n.startswith(w)) for w in words)
               for n in names)


@dataclass(frozen=True)
class Support:
    """How well one span of a passage (a sentence or two adjacent ones) supports a claim."""

    passage: int  # index into the passages
    sentence: Sentence  # the span, which the citation points at
    coverage: float
    similarity: float
    facts_ok: bool  # every number and name of the claim is in the span
    polarity_ok: bool = True  # no negation on one side only, no opposite words

    @property
    def score(self) -> float:
        return W_COVERAGE * self.coverage + W_DENSE * self.similarity

    @property
    def verified(self) -> bool:
        return self.facts_ok and self.polarity_ok and self.coverage >= MIN_COVERAGE and self.score >= MIN_SCORE


@dataclass(frozen=True)
class _Span:
    """What verification reads of a sentence, or of two adjacent ones together."""

    first: int
    last: int
    words: set[str]  # content words, stemmed
    plain: set[str]  # every word, lower-cased: names are looked up here
    numbers: set[str]
    negated: bool
    reach: set[str]  # words a negation of the span reaches

    def __or__(self, other: _Span) -> _Span:
        return _Span(self.first, other.last, self.words | other.words, self.plain | other.plain,
                     self.numbers | other.numbers, self.negated or other.negated, self.reach | other.reach)


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
        self.spans: list[list[_Span]] = []
        for ss in self.sentences:
            single = [verifier.span(j, s.text) for j, s in enumerate(ss)]
            self.spans.append(single + [a | b for a, b in zip(single, single[1:])])

    def supports(self, claim: str, among: Sequence[int] | None = None) -> list[Support]:
        """Support of the claim by each passage in `among` (default all), best first; each passage's
        support is that of its span that supports the claim (a sentence before a pair), else its best."""
        from .embedding import encode

        indices = [i for i in (range(len(self.passages)) if among is None else among)
                   if 0 <= i < len(self.passages) and self.sentences[i]]
        claim_span = self.verifier.span(0, claim)
        claim_words = claim_span.words
        if not indices or not claim_words:
            return []
        vec = encode(self.verifier.embedder, [claim])[0]
        claim_names = names_in(claim)
        out = []
        for i in indices:
            sims = self.vectors[self.offsets[i]:self.offsets[i + 1]] @ vec
            found = []
            for sp in self.spans[i]:
                found.append((sp.first == sp.last, Support(
                    passage=i, sentence=self._sentence(i, sp), coverage=len(claim_words & sp.words) / len(claim_words),
                    similarity=float(max(sims[sp.first], sims[sp.last])),
                    facts_ok=claim_span.numbers <= sp.numbers and names_found(claim_names, sp.plain),
                    polarity_ok=self.verifier.same_polarity(claim_span, sp),
                )))
            out.append(max(found, key=lambda f: (f[1].verified, f[1].verified and f[0], f[1].score))[1])
        return sorted(out, key=lambda s: (s.verified, s.score), reverse=True)

    def _sentence(self, i: int, sp: _Span) -> Sentence:
        a, b = self.sentences[i][sp.first], self.sentences[i][sp.last]
        if a is b:
            return a
        p = self.passages[i]
        return Sentence(p, a.start, b.end, p.text[a.start - p.start:b.end - p.start], a.rank)

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
        self.opposites = [({self._stem(w) for w in a.split()}, {self._stem(w) for w in b.split()})
                          for a, b in OPPOSITES]

    def words(self, text: str) -> set[str]:
        """The content words of a text, numbers included, stemmed."""
        return content_words(text, self._stem)

    def span(self, index: int, text: str) -> _Span:
        """What verification reads of one sentence (or claim)."""
        neg, reach = negated(text, self._stem)
        return _Span(index, index, self.words(text), set(_WORD.findall(text.lower())), numbers_in(text), neg, reach)

    def same_polarity(self, claim: _Span, span: _Span) -> bool:
        """No negation on one side only (a negation of the span counts where it reaches the claim's words),
        and no word of one whose opposite is in the other ('allowed' / 'prohibited', 'safe' / 'unsafe')."""
        if claim.negated != span.negated and (claim.negated or span.reach & claim.words):
            return False
        for a, b in self.opposites:
            for x, y in ((a, b), (b, a)):
                if claim.words & x and span.words & y and not span.words & x:
                    return False
        return not (_negative_forms(claim.plain, span.plain) or _negative_forms(span.plain, claim.plain))

    def evidence(self, passages: Sequence[Passage], question: str = "") -> Evidence:
        """Embed the passages' sentences (and the question) once for many checks."""
        return Evidence(self, passages, question)

    def check(self, claim: str, passage: Passage) -> Support | None:
        """How one passage supports one claim (None when the claim has no content words)."""
        found = self.evidence([passage]).supports(claim)
        return found[0] if found else None


def _negative_forms(words: set[str], other: set[str]) -> bool:
    """Whether `other` holds an un- or non- form of a word of `words` and not the word itself."""
    return any(("un" + w in other or "non" + w in other) and w not in other
               for w in words if len(w) >= 4 and w != "less")


def _whole(p: Passage, rank: int) -> Sentence:
    return Sentence(p, p.start, p.end, p.text, rank)
