"""The extractive answer composer: the retrieved sentences that best answer the question, cited.

Each sentence is scored by embedding similarity to the question, by how many of the question's
content words it contains, and by the rank of its passage: its support, which decides whether the
documents answer at all (`min_support`). Among the sentences whose support is at most CHOICE_MARGIN
below it, the answer prefers the one with the best choice score: a linear score over named features
(FEATURES, weights W_CHOICE fitted by benchmarks/fit_choice.py), among them the question's rarer words and
a phrase of the kind the question asks for that is not already in it (qa/question.py); a sentence that
refers back ("The letter, ...") is read with the one before it. The best sentence and, usually, the next
best of its own document become the answer, each with an inline [n] marker pointing at its exact span in
the document, and the answer words when known.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .prompts import NOT_FOUND
from .question import Candidate, absent_names, candidates, expect, name_forms, name_words, plain, question_names
from .reading.ocr import IMAGE_SUFFIXES
from .types import Citation, Passage

_ABBREV = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "inc", "ltd", "co", "al",
           "no", "vol", "fig", "gen", "gov", "sen", "rep", "u.s", "u.k", "u.n", "e.g", "i.e", "jan",
           "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "approx", "eg", "ie",
           "cf", "esp", "incl", "max", "viz", "ca", "dept", "corp"}


def _opening() -> str:
    """A regex class of the characters a sentence can open with: a capital of any script, a letter of a
    script without case (Chinese, Arabic, Hebrew, Devanagari, ...) or a digit (Basic Multilingual Plane)."""
    ranges: list[tuple[int, int]] = []
    for i in range(0x10000):
        c = chr(i)
        if (c.isalpha() and not c.islower()) or c.isdigit():
            if ranges and ranges[-1][1] == i - 1:
                ranges[-1] = (ranges[-1][0], i)
            else:
                ranges.append((i, i))
    return "".join(re.escape(chr(a)) + (f"-{re.escape(chr(b))}" if b > a else "") for a, b in ranges)


_OPENS = _opening()
# A document's own reference mark ("[3]", "[4, 5]", "[6–8]"; see without_reference_marks). Such marks may follow
# a stop ("France.[3] The city"): they stay with its sentence.
_MARK = r"\[\d{1,3}(?:\s*[,\u2013-]\s*\d{1,3})*\]"
_MARKS_AFTER = "(?:" + _MARK + ")*"
# A full stop, ! or ? (also Arabic ؟ and Devanagari ।) then space and a capital; or a Chinese/Japanese 。！？,
# which needs no space after it.
_SENTENCE_END = (r"(?<=[.!?؟।])[\"'”’)\]»]*" + _MARKS_AFTER + r"\s+(?=[\"'“‘(\[«¿¡]?[" + _OPENS + r"])"
                 r"|(?<=[。！？])[」』”’）)]*\s*")
_BOUNDARY = re.compile(_SENTENCE_END + r"|\n+")  # every line break ends a sentence (generated text: qa/verify.py)
# Line breaks. Text wrapped at 72-80 columns (plain text, Markdown, the source lines of HTML) breaks lines
# inside sentences: such a break is a space. A break ends a sentence after a short line (a heading, a table
# row, a list item), before a list item, a table row, a heading or an indented (code) line, and at a blank line.
# Text read from a page layout (PDFs, scans) has its line breaks at block ends already (qa/reading/pdf.py).
_ANY_BOUNDARY = re.compile(_SENTENCE_END + r"|[ \t\r\f\v]*\n\s*")
_BLOCK_START = re.compile(r"(?:[-*+•·▪◦‣>|#]|`{3}|\d{1,3}[.)](?:\s|$)|[A-Za-z][.)]\s)")
_TERMINAL = re.compile(r"[.!?؟।。！？][\"'”’)\]»」』）]*" + _MARKS_AFTER + "$")
_UPPER_START = re.compile(r"[\"'“‘(\[«¿¡]?[" + _OPENS + "]")
_HEADING = re.compile(r"#{1,6}\s")  # a Markdown heading names a section; it answers nothing
SHORT_LINE = 40  # characters: a line this short that does not end a sentence ends a block (a heading, a row)
LAID_OUT = (".pdf", *IMAGE_SUFFIXES)
_WORD = re.compile(r"\w+", re.UNICODE)
# Chinese and Japanese characters (kana, CJK ideographs): those scripts write no spaces between words.
CJK_CHARS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
TERM = re.compile(f"[{CJK_CHARS}]|\\w+")  # a word, or one Chinese or Japanese character
STOPWORDS = frozenset("""a an the and or but if of at by for with about against between into through
during before after above below to from up down in out on off over under again further then once
here there when where why how all any both each few more most other some such no nor not only own
same so than too very s t can will just don should now is are was were be been being have has had
having do does did doing i me my we our you your he him his she her it its they them their what
which who whom this that these those am would could also as per whose one many much""".split())

W_DENSE, W_LEXICAL, W_RANK = 0.55, 0.35, 0.10
# Support for a sentence that holds every name of the question ("Who is Matthew Miller?": both words, as
# written). The embedding model says little about names (similarity 0.12 to the sentence introducing him),
# and a sentence of another article rarely holds them all. On benchmarks.calibrate's 300 squad-dev
# questions, at min_support 0.52: answerable answered 0.947 -> 0.953 (even) and 0.967 -> 0.987 (odd),
# hard unanswerable refused 0.907 on both halves, before and after.
W_NAMES = 0.05
# A name of the question that the retrieved text never writes, in any form (qa/question.py, absent_names):
# the documents are about a neighbour ("What is the population of Krakow?" against Warsaw's; "... trips to
# Austria?" against the Switzerland allowance), so nothing is quoted (W_NOWHERE takes any sentence below
# min_support). A neighbour the documents do name is not caught: the Kenya article says "bordered by Tanzania".
# A name that another document has but the sentence's own (its retrieved passages and file name) does not
# costs W_ELSEWHERE, in the choice as well. squad-dev, same index, before -> after:
#   benchmarks.calibrate at 0.52: hard unanswerable refused 0.903 -> 0.933, answerable answered 0.973 -> 0.963
#   (answered and correct 0.773 -> 0.780); qa eval --answers: accuracy 0.845 -> 0.845, citation precision
#   0.884 -> 0.889, answered 0.964 -> 0.958 (the three no longer answered had wrong answers: their gold
#   paragraph was not retrieved, "... in the 2015 season?", "... in modern-day Canada ...?").
# Tried on cached passages: the name required in the sentence's own document or passage (a hard rule; it
# also refused "Super Bowl 51" against the Super Bowl 50 article): accuracy 0.832, answered 0.945, as a
# SQuAD paragraph often leaves out its article's names ("How many NFL teams have gone 15-1?");
# W_ELSEWHERE 0.1 / 0.15 / 0.2 refused no more and answered less; demonyms required too (qa/question.py
# skips them): "What famous Indian's actions ...?" went unanswered, accuracy 0.843.
W_NOWHERE, W_ELSEWHERE = 1.0, 0.05
# Once the documents answer (a sentence's support reaches min_support), the answer may choose among the
# sentences whose support in context is within this margin of it: the one naming the fact asked for often
# shares fewer words with the question ("The letter, featured in North Korea's Rodong Sinmun, ..."), and
# the best sentence's own paragraph is its context. Tried on the even half: 0 / 0.10 / 0.20 / 0.30 / any,
# each with refitted weights; 0.30 gave the best accuracy and citation precision together.
CHOICE_MARGIN = 0.30
# The choice among those sentences: support in context + FEATURES . W_CHOICE. The columns are computed by
# ExtractiveComposer._features: embedding similarity, share of the question's words, the same weighted by
# their rarity among the retrieved sentences, the fit of the best answer phrase of the expected kind
# (qa/question.py), passage rank 1/(1+r), share of the question's word pairs, passage score / best.
# Weights: a conditional logit (softmax over each question's sentences, L2 1e-4) fitted to put a sentence
# holding the gold answer first, on the EVEN questions of squad-dev (int8 embeddings):
#   python -m benchmarks.answers ../shared/data/squad-dev --cache DIR   (caches the passages)
#   python -m benchmarks.fit_choice ../shared/data/squad-dev --cache DIR --half 0
# Best sentence holds the answer (answered questions): odd, held-out half 0.775 with the previous hand-set
# weights (0, -0.35, 0.35, 0.10, 0, 0, 0) -> 0.814; even half 0.783 -> 0.826 (CHOICE_MARGIN 0.30).
# Fitted before a name could hold the noun the question asks for (qa/question.py); fit_choice now prints
# (0.190, -1.711, 2.110, 0.203, -0.095, 0.141, 0.554), which lowered the cached answer accuracy on both halves
# (even 0.857 -> 0.849, odd 0.848 -> 0.845), so these weights stay.
FEATURES = ("dense", "lexical", "weighted", "fit", "rank", "bigrams", "passage_score")
W_CHOICE = np.array([0.214, -1.672, 2.080, 0.190, -0.083, 0.177, 0.525])
# How close to the best choice a further sentence must score to join the answer, from the same / another
# document (units of the choice score). A sentence of the best sentence's own document is its context and
# nearly always joins; one of another document is more often off the subject, and joins only when the best
# sentence holds no confident answer words (`Ranked.span`). Chosen on the even half
# (`python -m benchmarks.fit_choice ... --policy` prints accuracy and citation precision per pair).
CLOSE_SAME_DOCUMENT, CLOSE_OTHER_DOCUMENT = 1.5, 0.06
# How rare a question's word is (the `weighted` feature) is counted over the sentences of this many retrieved
# passages, though the answer quotes only the first top_k: five passages are too few to tell a word of the
# subject, found all over the related text, from the word that picks out the answer's sentence. squad-dev,
# the same retrieved passages (benchmarks.answers), rarity over 5 -> 8 / 10 / 15 / 20 passages: answer accuracy
# 0.854 -> 0.862 / 0.866 / 0.868 / 0.864, citation precision 0.889 -> 0.896 / 0.898 / 0.899 / 0.900, both
# halves gaining; over every sentence of the corpus: 0.854, 0.892. The support (the not-found decision) has no
# rarity in it. Ten passages keep retrieval's depth (qa.retrieval.MIN_CANDIDATES) and so the top 5 as they are.
RARITY_PASSAGES = 10


def passages_retrieved(top_k: int) -> int:
    """How many passages an answer retrieves: the first top_k are quoted, the rest (up to RARITY_PASSAGES)
    only count in how rare the question's words are."""
    return max(top_k, RARITY_PASSAGES)


W_CONTEXT = 0.9  # share of the question's words found only in the sentence a follow-on sentence refers back to
_REFERS_BACK = re.compile(r"^(?:it|he|she|they|this|these|that|those|his|her|its|their|there|then|the\s+(\w+))\b",
                          re.IGNORECASE)
# A sentence that leans on the one before it ("Additionally, he emphasized ..."): quoted after another
# sentence of the answer, its "he" would seem to mean someone else. Joins an answer only after its own
# previous sentence.
_DANGLING = re.compile(r"^(?:(?:additionally|furthermore|moreover|also|however|meanwhile|nevertheless|"
                       r"in addition|in contrast|on the other hand|similarly|likewise|instead|besides|still)\b,?"
                       r"|(?:(?:although|though|but|and|yet|so|while|because|since)\s+)?"
                       r"(?:he|she|they|him|them|his|her|their)\b)", re.IGNORECASE)
# A sentence that names what it is about only in the one before it. squad-dev, benchmarks.answers: 39 of 509
# answers open with one whose previous sentence was retrieved; quoted after it, answer accuracy 0.864 -> 0.866,
# citation precision 0.902 -> 0.900 (the sentence before is from the same, sometimes wrong, document).
_LEANS_BACK = re.compile(r"^(?:it|he|she|they|this|these)\b", re.IGNORECASE)


def _title_like(text: str) -> bool:
    """Whether a sentence is a title or heading: a few words without a full stop ("Newcastle upon Tyne").
    squad-dev, benchmarks.answers: 16 of 509 answers quoted one second; with the next sentence instead,
    citation precision 0.902 -> 0.904, answer accuracy unchanged."""
    return not _TERMINAL.search(text) and len(TERM.findall(text)) <= 8


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


def _abbreviation(before: str) -> bool:
    """Whether the text ends with an abbreviation or an initial ("Mr.", "e.g.", "J.") rather than a sentence."""
    last = re.search(r"([\w.]+)\.$", before)
    word = last.group(1).lower() if last else ""
    return word in _ABBREV or (len(word) == 1 and word.isalpha())


# "am 9. April": German writes a day as an ordinal with a full stop, before a month's capital.
_MONTH_AFTER_DAY = re.compile(r"(?:Januar|Jänner|Februar|März|April|Mai|Juni|Juli|August|September|Oktober|"
                              r"November|Dezember)\b")
_DAY = re.compile(r"(?<![\w.])\d{1,2}\.$")


def _ordinal_date(text: str, stop: int, after: int) -> bool:
    """Whether the full stop ending text[:stop] is a day's ("9.") before a month's name at text[after:]."""
    return bool(_DAY.search(text, max(0, stop - 4), stop)) and bool(_MONTH_AFTER_DAY.match(text, after))


def _line_break_ends_sentence(text: str, start: int, end: int) -> bool:
    """Whether the line break text[start:end] (a newline and the spaces around it) ends a sentence."""
    gap = text[start:end]
    if gap.count("\n") > 1:
        return True  # a blank line: a new paragraph
    line = text[text.rfind("\n", 0, start) + 1:start].strip()
    stop = text.find("\n", end)
    nxt = text[end:stop if stop >= 0 else len(text)]
    indent = gap[gap.rfind("\n") + 1:]
    if "\t" in indent or len(indent) >= 4 or _BLOCK_START.match(nxt) or line.startswith(("#", "|", ">")) \
            or line.endswith("|"):
        return True
    quoted = re.sub(r"[\"'”’)\]]+$", "", line)
    if _TERMINAL.search(line):
        return bool(_UPPER_START.match(nxt)) and not _abbreviation(quoted)
    if len(line) >= SHORT_LINE:
        return False
    # A short line is a heading or a row, unless it stops where no heading would: "Valgrind was written by"
    last = _WORD.findall(line.lower())[-1:] or [""]
    return not (line.endswith((",", "-", "(", "/", "&")) or last[0] in STOPWORDS)


def sentence_cuts(text: str, laid_out: bool = False) -> list[int]:
    """Where the sentences of a text start, then its end: 0, ..., len(text). Each sentence runs up to the
    next cut, with the spaces after it. `laid_out`: the text's line breaks are block ends (PDFs, scans)."""
    cuts = [0]
    for m in _ANY_BOUNDARY.finditer(text):
        if "\n" in m.group():
            if laid_out or _line_break_ends_sentence(text, m.start(), m.end()):
                cuts.append(m.end())
            continue
        # The last 64 characters: any word longer than that is no abbreviation (and a long text's whole
        # beginning, searched at every stop, made splitting quadratic).
        if not _abbreviation(text[max(0, m.start() - 64):m.start()]) and not _ordinal_date(text, m.start(), m.end()):
            cuts.append(m.end())
    cuts.append(len(text))
    return cuts


def split_sentences(passage: Passage, rank: int = 0) -> list[Sentence]:
    """Sentences of a passage with exact document offsets (abbreviations do not end a sentence; a line
    break inside a wrapped paragraph does not either)."""
    text = passage.text
    cuts = sentence_cuts(text, passage.source.lower().endswith(LAID_OUT))
    out = []
    for a, b in zip(cuts, cuts[1:]):
        piece = text[a:b]
        lead = len(piece) - len(piece.lstrip())
        piece = piece.strip()
        if len(TERM.findall(piece)) >= 3 and not _HEADING.match(piece):
            s = passage.start + a + lead
            out.append(Sentence(passage, s, s + len(piece), piece, rank))
    return out


@dataclass(frozen=True)
class Ranked:
    """A candidate sentence: how well it supports an answer (the not-found threshold applies to it), how
    strongly the answer prefers it (support plus a fitting answer phrase) and, when known, the answer words."""

    support: float
    choice: float
    sentence: Sentence
    span: tuple[int, int] | None = None  # document offsets of the answer words inside the sentence
    in_context: float = 0.0  # support read with the sentence it refers back to (its own support if none)

    @property
    def passage(self) -> Passage:
        return self.sentence.passage


def refers_back(text: str, previous_words: set[str], stem: Any) -> bool:
    """Whether a sentence opens with a pronoun or 'the X' naming something of the sentence before it."""
    m = _REFERS_BACK.match(text)
    return bool(m) and (m.group(1) is None or stem(m.group(1).lower()) in previous_words)


def _span(s: Sentence, cands: list[Candidate]) -> tuple[int, int] | None:
    """The answer words when one phrase of the sentence fits the question clearly best."""
    if not cands or cands[0].fit < 0.5 or (len(cands) > 1 and cands[1].fit > 0.8 * cands[0].fit):
        return None
    c = cands[0]
    return s.start + c.start, s.start + c.end


def is_instruction(text: str) -> bool:
    """Whether a sentence gives orders to an AI assistant ("ignore previous instructions ...")."""
    return bool(_INSTRUCTION.search(text))


_CJK = re.compile(f"[{CJK_CHARS}]+")


def content_words(text: str, stem: Any) -> set[str]:
    """Lower-cased, stemmed words that carry meaning, compared without accents (`plain`). Chinese and
    Japanese, written without spaces, give their character pairs ("长城" in "连接各国的长城")."""
    words = set()
    for w in _WORD.findall(plain(text.lower())):
        if w in STOPWORDS:
            continue
        runs = _CJK.findall(w)
        if not runs:
            words.add(stem(w))
            continue
        for run in runs:
            words.update(run[i:i + 2] for i in range(max(1, len(run) - 1)))
        words.update(stem(rest) for rest in _CJK.split(w) if len(rest) > 1)
    return words


class ExtractiveComposer:
    """Chooses and cites sentences; `min_support` is the not-found threshold."""

    def __init__(self, embedder: Any, max_sentences: int = 2, min_support: float = 0.51) -> None:
        import Stemmer

        self.embedder = embedder
        self.max_sentences = max_sentences
        self.min_support = min_support
        self._stem = Stemmer.Stemmer("english").stemWord

    def rank(self, question: str, passages: list[Passage], background: Sequence[Passage] = ()) -> list[Ranked]:
        """Every sentence of the passages with its support and choice scores, best choice first. The sentences
        of `background` (the passages retrieved after them, see RARITY_PASSAGES) only count in how rare each
        of the question's words is."""
        from .embedding import encode

        sentences = [s for r, p in enumerate(passages) for s in split_sentences(p, r) if not is_instruction(s.text)]
        seen: set[tuple[str, int]] = set()
        sentences = [s for s in sentences if (k := (s.passage.source, s.start)) not in seen and not seen.add(k)]
        if not sentences:
            return []
        q_words = content_words(question, self._stem) or {w.lower() for w in _WORD.findall(question)}
        words = [content_words(s.text, self._stem) for s in sentences]
        # "The letter, featured in ..." answers together with the sentence it refers back to.
        back = [i for i, s in enumerate(sentences) if i and sentences[i - 1].passage is s.passage
                and refers_back(s.text, words[i - 1], self._stem)]
        texts = [s.text for s in sentences] + [f"{sentences[i - 1].text} {sentences[i].text}" for i in back]
        vecs = encode(self.embedder, [question, *texts])
        dense = vecs[1:len(sentences) + 1] @ vecs[0]
        # A question word found in few of the retrieved sentences tells more than one found in most of them.
        seen = {(s.passage.source, s.start) for s in sentences}
        pool = words + [content_words(s.text, self._stem) for r, p in enumerate(background)
                        for s in split_sentences(p, r) if (s.passage.source, s.start) not in seen]
        idf = {w: 1.0 + np.log((1 + len(pool)) / (1 + sum(w in ws for ws in pool))) for w in q_words}
        norm = sum(idf.values()) or 1.0  # a question without words is refused earlier; never divide by 0

        def share(ws: set[str]) -> float:
            return sum(idf[w] for w in q_words & ws) / norm

        lexical = np.array([len(q_words & w) / len(q_words) for w in words])  # for support: calibrated
        weighted = np.array([share(w) for w in words])  # for the choice among supported sentences
        rank = np.array([1.0 / (1 + s.rank) for s in sentences])
        # The not-found decision stays on each sentence's own support; context only lets a follow-on
        # sentence join an answer that the documents do give.
        names = question_names(question)
        named = np.array([float(bool(names) and names <= name_words(s.text)) for s in sentences])
        nowhere, elsewhere = self._absent(question, sentences)
        absent = W_NOWHERE * nowhere + W_ELSEWHERE * elsewhere
        support = W_DENSE * dense + W_LEXICAL * lexical + W_RANK * rank + W_NAMES * named - absent
        in_context = support.copy()
        for n, i in enumerate(back):
            dense[i] = max(dense[i], W_CONTEXT * float(vecs[len(sentences) + 1 + n] @ vecs[0]))
            lexical[i] = max(lexical[i], W_CONTEXT * len(q_words & (words[i] | words[i - 1])) / len(q_words))
            weighted[i] = max(weighted[i], W_CONTEXT * share(words[i] | words[i - 1]))
            in_context[i] = (W_DENSE * dense[i] + W_LEXICAL * lexical[i] + W_RANK * rank[i] + W_NAMES * named[i]
                             - absent[i])
        exp = expect(question)
        q_lower = {w.lower() for w in _WORD.findall(question)}
        cands = [candidates(s.text, exp, q_lower, self._stem) for s in sentences]
        fit = np.array([c[0].fit if c else 0.0 for c in cands])
        q_pairs = self._pairs(question)
        pairs = np.array([len(q_pairs & self._pairs(s.text)) / len(q_pairs) if q_pairs else 0.0 for s in sentences])
        x = self._features(sentences, dense, lexical, weighted, rank, fit, pairs)
        choice = in_context - W_NAMES * named + x @ W_CHOICE  # names decide whether to answer, not which
        order = np.argsort(-choice, kind="stable")
        return [Ranked(float(support[i]), float(choice[i]), sentences[i], _span(sentences[i], cands[i]),
                       float(in_context[i])) for i in order]

    @staticmethod
    def _absent(question: str, sentences: list[Sentence]) -> tuple[np.ndarray, np.ndarray]:
        """Per sentence: whether a name of the question is in none of the retrieved text, and whether one is
        missing from the sentence's own document as far as it was retrieved (its passages and file name)."""
        if not question_names(question):
            return np.zeros(len(sentences)), np.zeros(len(sentences))
        texts: dict[str, dict[str, None]] = {}
        for s in sentences:
            texts.setdefault(s.passage.source, {s.passage.source.replace("_", " "): None})[s.passage.text] = None
        forms = {src: name_forms(" ".join(ts)) for src, ts in texts.items()}
        nowhere = bool(absent_names(question, set().union(*forms.values())))
        lacks = {src: bool(absent_names(question, f)) for src, f in forms.items()}
        return np.full(len(sentences), float(nowhere)), np.array([float(lacks[s.passage.source]) for s in sentences])

    def _pairs(self, text: str) -> set[tuple[str, str]]:
        """Stemmed word pairs of a text, but for pairs of two stop words ("the letter", "letter published")."""
        toks = [w for w in _WORD.findall(text.lower())]
        return {(self._stem(a), self._stem(b)) for a, b in zip(toks, toks[1:])
                if a not in STOPWORDS or b not in STOPWORDS}

    @staticmethod
    def _features(sentences: list[Sentence], dense: np.ndarray, lexical: np.ndarray, weighted: np.ndarray,
                  rank: np.ndarray, fit: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        """What the choice among supported sentences adds to their support: one row per sentence, the
        columns of FEATURES (all computed from the question and the retrieved text, no model)."""
        top = max((s.passage.score for s in sentences), default=1.0) or 1.0
        cols = {"dense": dense, "lexical": lexical, "weighted": weighted, "fit": fit, "rank": rank, "bigrams": pairs,
                "passage_score": np.array([s.passage.score for s in sentences]) / top}
        return np.stack([cols[f] for f in FEATURES], axis=1)

    def score(self, question: str, passages: list[Passage]) -> list[tuple[float, Sentence]]:
        """Every sentence of the passages with its support score, in the order the answer prefers them."""
        return [(r.support, r.sentence) for r in self.rank(question, passages)]

    def choose(self, ranked: list[Ranked]) -> list[Ranked]:
        """The answer's sentences: the best supported choice, plus close seconds, never overlapping. When the
        best one opens with a pronoun, the sentence it leans on comes first, even beyond max_sentences."""
        if not any(r.support >= self.min_support for r in ranked):
            return []
        everything, ranked = ranked, [r for r in ranked if r.in_context >= self.min_support - CHOICE_MARGIN]
        best = ranked[0].choice
        picked: list[Ranked] = []
        for r in ranked:
            s = r.sentence
            if len(picked) == self.max_sentences or r.choice < best - CLOSE_SAME_DOCUMENT:
                break
            if any(p.sentence.passage.source == s.passage.source and p.sentence.start < s.end
                   and s.start < p.sentence.end for p in picked):
                continue
            if s.passage.source != ranked[0].sentence.passage.source and (
                    r.choice < best - CLOSE_OTHER_DOCUMENT or ranked[0].span is not None):
                # A sentence of another document is more often off the subject: only a very close second, and
                # only when the best sentence does not already hold the answer words.
                continue
            if picked and _DANGLING.match(s.text) and not _follows(picked[-1].sentence, s):
                continue  # its "he" or "Additionally" would lean on the wrong sentence
            if any(p.sentence.text.split() == s.text.split() for p in picked):
                continue  # the same sentence in another document (a copy): quoted once
            if picked and _title_like(s.text):
                continue  # a title or heading ("Newcastle upon Tyne") quoted second adds nothing to the answer
            picked.append(r)
        if picked and _LEANS_BACK.match(picked[0].sentence.text):
            # "It is a theoretical device that ..." says what "it" is only with the sentence before it: quoted
            # first when retrieved, so the answer reads in the document's order.
            lead = picked[0].sentence
            before = next((r for r in everything if _follows(r.sentence, lead)), None)
            if before is not None:
                picked = [before] + [p for p in picked if p.sentence != before.sentence]
        return picked

    def compose(self, question: str, passages: list[Passage], background: Sequence[Passage] = ()) -> tuple[str, list[Citation]]:
        """The cited answer text and its citations, or the not-found sentence and none."""
        parts = list(self.stream(question, passages, background))
        if not parts:
            return NOT_FOUND, []
        return " ".join(t for t, _ in parts), [c for _, c in parts]

    def stream(self, question: str, passages: list[Passage], background: Sequence[Passage] = ()
               ) -> Iterator[tuple[str, Citation]]:
        """Yields (sentence with its marker, citation) one at a time, in answer order."""
        for n, r in enumerate(self.choose(self.rank(question, passages, background)), start=1):
            s, p = r.sentence, r.passage
            yield with_marker(as_read(s.text, p.source), n), Citation(
                id=n, source=p.source, start=s.start, end=s.end, text=s.text, score=round(r.in_context, 4),
                passage_start=p.start, passage_end=p.end, passage=p.text, location=p.location,
                answer_span=r.span,
            )


# A document's own reference marks ("by mass [1].", "in Paris[2] and", "1844.[3]", "Count Orlov [1] in 1821"):
# quoted in an answer they would read as its citations. Code ("x[1] = 2") keeps its brackets, and so do
# numbered things a sentence names ("Items [1] and [2] are shown", "as shown in [3] the").
_REF = "(?:" + _MARK + ")+"
_END = r"(?=[.,;:!?\"'”’)]|$)"
# "et al. [2] found", "by mass [1].", "Orlov [1] in 1821" (a mark before a word: see _reference)
_SPACED_REF = re.compile(r"\s+" + _REF + r"(?:" + _END + r"|(?=\s+[^\W\d_]))")
_GLUED_REF = re.compile(r"(?:(?<=[^\W\d_]{2})|(?<=[.,;:!?)\"'”’]))" + _REF + r"(?=\s|" + _END[3:])
_CODE = re.compile(r"[=`{}]")
_NAMES_IT = re.compile(r"\b(?:in|see|cf\.|of|from|and|or|to)\s*$", re.IGNORECASE)  # "shown in [3] the"
_LISTED = re.compile(r"\s+(?:and|or|to)\s+\[")  # "[1] and [2]"


def _reference(m: re.Match[str]) -> bool:
    """Whether a spaced mark is one of the document's references: before punctuation or the end, after
    "et al.", or before a lower-case word unless the sentence names it ("Items [1] and [2] are shown")."""
    before, after = m.string[:m.start()], m.string[m.end():].lstrip()
    if re.search(r"\bal\.$", before) or not after[:1].isalpha():
        return True
    return after[:1].islower() and not _LISTED.match(m.string, m.end()) and not _NAMES_IT.search(before)


def without_reference_marks(sentence: str) -> str:
    """The sentence without the document's own bracketed reference numbers (not in code)."""
    if _CODE.search(sentence):
        return sentence
    return _GLUED_REF.sub("", _SPACED_REF.sub(lambda m: "" if _reference(m) else m.group(), sentence))


def _follows(before: Sentence, s: Sentence) -> bool:
    """Whether `s` comes right after `before` in the same document (only spaces between them)."""
    if before.passage.source != s.passage.source or not before.end <= s.start:
        return False
    for p in (s.passage, before.passage):  # the text between them, from a passage that holds it
        if p.start <= before.end and s.start <= p.end:
            return not p.text[before.end - p.start:s.start - p.start].strip()
    return False


MARKDOWN = (".md", ".markdown")
_LIST_MARK = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)]|>)\s+")
_markdown: Any = None


def as_read(sentence: str, source: str) -> str:
    """A sentence quoted from a Markdown file as its reader sees it: emphasis and code marks, link targets,
    images' addresses (their alt text stays), inline HTML tags and a list item's marker dropped, so the
    answer reads "installed upright" where the file has "installed *upright*". Its citation keeps the
    exact text. Other sources, and a sentence that would read as nothing, are as written."""
    global _markdown
    if not source.lower().endswith(MARKDOWN):
        return sentence
    if _markdown is None:
        from markdown_it import MarkdownIt

        _markdown = MarkdownIt("commonmark")
    kept = {"text", "code_inline", "image"}  # an image's content is its alt text
    parts = [t.content if t.type in kept else " " if t.type in ("softbreak", "hardbreak") else ""
             for line in _markdown.parseInline(_LIST_MARK.sub("", sentence)) for t in line.children or ()]
    text = re.sub(r"[ \t]+", " ", "".join(parts)).strip()
    return text if any(c.isalnum() for c in text) else sentence


def with_marker(sentence: str, n: int) -> str:
    """Put `[n]` before the sentence's closing punctuation: 'It rained [1].' Reference numbers the sentence
    had of its own are dropped, so that every `[n]` of an answer is one of its citations. A wrapped sentence's
    line breaks read as spaces (its citation keeps the exact text)."""
    sentence = re.sub(r"\s*\n\s*", " ", without_reference_marks(sentence))
    m = re.search(r"[.!?؟।。！？]+[\"'”’)»」』）]*$", sentence)
    if m:
        return f"{sentence[:m.start()]} [{n}]{sentence[m.start():]}"
    return f"{sentence} [{n}]"
