"""What a question asks for, and the phrases of a sentence that could be its answer.

Rules, no model: the wh-word (and the noun of "which X" / "what X" / "how many X") gives the expected
answer kind: a name (person, organisation, thing), a place, a date or a number with its unit. A
sentence that holds a phrase of that kind which is not already in the question is more likely to
answer it. Names are capitalised spans, dates and numbers are found by regular expressions. A name of
the question that a text writes in no form (absent_names) says the text is about something else.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(r"\w+(?:[-'’.&]\w+)*", re.UNICODE)
_POSSESSIVE = re.compile(r"['’]s$")
_AUX = frozenset("is are was were be been being do does did has have had can could will would shall should "
                 "may might must".split())
# Question words, in the form the per-type report uses.
TYPES = ("who", "when", "how many", "where", "what", "which", "why", "other")
_WH = re.compile(r"\b(how\s+(?:many|much)|who|whom|whose|when|where|what|which|why)\b", re.IGNORECASE)

_DATE_NOUNS = frozenset("year years date day days month months century centuries decade decades time era "
                        "period season age dynasty".split())
_NUMBER_NOUNS = frozenset("number numbers percentage percent amount rate size population temperature "
                          "distance height length speed cost price value total ratio proportion share "
                          "fraction score depth weight area rating record average salary budget revenue income capacity "
                          "count margin".split())
_PLACE_NOUNS = frozenset("city cities country countries state states place places region regions town towns "
                         "continent location locations area island islands river rivers county province "
                         "nation capital village street building mountain ocean sea lake park".split())
_MONTHS = ("January|February|March|April|May|June|July|August|September|October|November|December|"
           "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec")
_DATE = re.compile(
    rf"\b(?:(?:{_MONTHS})\b\.?(?:\s+\d{{1,2}}(?:st|nd|rd|th)?(?!\d))?(?:,?\s+\d{{3,4}})?"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:{_MONTHS})\b(?:,?\s+\d{{3,4}})?"
    r"|(?:1\d|20)\d{2}s?|\d{3}s?\s*(?:AD|BC|BCE|CE)\b|(?:AD|BC)\s+\d{1,4}"
    r"|\d{1,2}(?:st|nd|rd|th)[\s-]+centur(?:y|ies)|(?:first|second|third|fourth|fifth|sixth|seventh|eighth|"
    r"ninth|tenth|eleventh|twelfth|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|"
    r"nineteenth|twentieth|twenty-first)[\s-]+centur(?:y|ies)"
    r"|(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)\b|\d{1,2}(?::\d{2})?\s*(?:a\.m\.|p\.m\.))",
)
_NUMWORDS = ("one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
             "sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|"
             "hundred|hundreds|thousand|thousands|million|millions|billion|billions|trillion|dozen|dozens|"
             "half|quarter|twice|once")
_NUMBER = re.compile(
    rf"(?<![\w.])(?:[$€£¥]\s?)?\d+(?:[.,]\d+)*(?:\s*(?:%|percent|per\s+cent))?(?:\s+(?:million|billion|trillion|"
    rf"thousand|hundred))?|\b(?:{_NUMWORDS})(?:[\s-]+(?:{_NUMWORDS}))*\b",
    re.IGNORECASE,
)
# Capitalised words that are rarely an answer on their own: demonyms and directions ("North Korean state media").
_WEAK_NAME = re.compile(r"^(?:(?:North|South|East|West|Central|Northern|Southern|Eastern|Western)\s+)?"
                        r"(?:[A-Z]\w*(?:ean|ian|ese|ish)|French|German|Dutch|Greek|Swiss|Arab|Norse|Roman|Thai|"
                        r"American|African|Mexican|Western|Eastern|Northern|Southern|Central)$")
# A capitalised word that its full stop does not end: an initial, a title, an abbreviation ("U.S.").
_INITIAL = re.compile(r"^(?:[A-Z]|[A-Z](?:\.[A-Z])+|Dr|Mr|Mrs|Ms|St|Gen|Col|Capt|Lt|Sgt|Prof|Rev|Jr|Sr|Mt|Ft)$")
# A title in quotes ("The Time of the Doctor"): one name, whatever its words.
_QUOTED = re.compile(r"[\"“]([A-Z][^\"“”]{1,80}?)[\"”]")
_CONNECTORS = frozenset("of the de du la von van der and for".split())


@dataclass(frozen=True)
class Expectation:
    """The kind of phrase that answers a question ('' when any), and the noun of 'which X' or 'how many X'."""

    kind: str  # "name" | "place" | "date" | "number" | ""
    noun: str = ""
    qtype: str = "other"


@dataclass(frozen=True)
class Candidate:
    """A phrase of a sentence (offsets within the sentence) that fits the expected kind, with how well."""

    start: int
    end: int
    fit: float


def _main_wh(question: str) -> re.Match[str] | None:
    """The wh-word of the main clause: 'When Fox left, who replaced him?' asks who, not when."""
    found = list(_WH.finditer(question))
    if not found:
        return None
    after_comma = [m for m in found if re.search(r",\s*(?:and\s+|then\s+)?$", question[:m.start()])]
    return after_comma[0] if after_comma and found[0].start() == 0 and len(found) > 1 else found[0]


_OPENERS = ".?!(:;\"“‘'¿¡«„‹「『"  # after one of these a capital opens a sentence or a quote ("¿Quién ...?")
# German capitalises every noun, so a German question's capitals are not its names. A question is German when
# it has two of these words and none of the English ones ("What was ...?" is English).
_GERMAN = frozenset("der die das den dem des ein eine einen einem einer und ist sind war wurde wurden wird nicht "
                    "mit von vom zu zum zur im am auf für über wie wann wo woher wohin warum welche welcher welches "
                    "wer wen wem wessen hat haben gibt seit viele".split())
_ENGLISH = frozenset("what who whom whose when where which why how is are were do does did the of and has have "
                     "had can could would should".split())


def question_names(question: str) -> set[str]:
    """The names of a question as written: its capitalized words and words with digits, but a word that
    opens a sentence or a bracket ("What did he say? (Who is Matthew Miller?)" names Matthew Miller). A
    question in capitals names only its words with digits."""
    cased = [c for c in question if c.lower() != c.upper()]
    shouted = len(cased) >= 8 and all(c.isupper() for c in cased)
    names = set()
    for m in _TOKEN.finditer(question):
        w, before = m.group(), question[:m.start()].rstrip()
        opens = not before or before[-1] in _OPENERS
        if (any(c.isdigit() for c in w) or (w[0].isupper() and not opens and not shouted)) and w != "I":
            names.add(_POSSESSIVE.sub("", w))
    return names


def is_german(question: str) -> bool:
    """Whether a question reads as German (two of its commonest words, none of English's)."""
    words = {w.lower() for w in _TOKEN.findall(question)}
    return len(words & _GERMAN) >= 2 and not words & _ENGLISH


def name_words(text: str) -> set[str]:
    """The words of a text as question_names writes them (as written, without a possessive 's)."""
    return {_POSSESSIVE.sub("", w) for w in _TOKEN.findall(text)}


_DASHES = re.compile(r"[\u2010-\u2015\u2212]")
_ROMAN = ((1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"), (50, "l"), (40, "xl"),
          (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i"))
_SMALL = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
          "seventeen eighteen nineteen twenty").split()
_ORDINAL = ("zeroth first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
            "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth").split()


# Letters that are not an ASCII letter with accents (NFKD would drop them): as they are written in ASCII.
_LETTERS = str.maketrans({"ß": "ss", "ẞ": "SS", "ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE",
                          "œ": "oe", "Œ": "OE", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "Th",
                          "ı": "i", "ħ": "h", "Ħ": "H"})


def plain(text: str) -> str:
    """Text as words are compared: NFKC (one form for "é" typed either way), accents and other combining
    marks off ("Vịnh Hạ Long" = "Vinh Ha Long"), letters ASCII lacks as ASCII writes them. Other scripts
    keep their letters."""
    if text.isascii():
        return text
    t = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).translate(_LETTERS))
    return "".join(c for c in t if not unicodedata.combining(c))


def fold(word: str) -> str:
    """A word as names are compared: no accents, case, possessive 's, dots, hyphens or '&' ("U.S." = "US");
    a letter ASCII lacks as it is written in ASCII ("Preußen" = "Preussen", "Łódź" = "Lodz"). A word in
    another script is kept as it is (lower case, NFKC)."""
    base = unicodedata.normalize("NFKC", _POSSESSIVE.sub("", word)).translate(_LETTERS)
    w = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode().lower()
    if not w.strip("-.'’&,") and base.strip():
        w = base.lower()  # "Байкал", "北京": nothing of it is ASCII
    return re.sub(r"[-.'’&,]", "", w)


def name_forms(text: str) -> set[str]:
    """The ways a text can write a question's names: its folded words, and the initials of its capitalised
    runs ("National Football League" -> nfl, "Victoria and Albert" -> va)."""
    text = _DASHES.sub("-", text)
    forms, run, end = set(), [], 0
    for m in _TOKEN.finditer(text):
        t = m.group()
        forms.add(fold(t))
        forms.update(fold(part) for part in t.split("-"))  # "Harvard-Yale Regatta", "15-year" hold Yale, 15
        if text[end:m.start()].strip():
            run = []  # punctuation between two words ends a run
        end = m.end()
        if t[0].isupper():
            run.append(t[0].lower())
            forms.update("".join(run[i:]) for i in range(len(run) - 1))
        elif t.lower() not in _CONNECTORS:
            run = []
    return forms


def _variants(name: str) -> set[str]:
    """A name and the other ways to write it: a number as a Roman numeral or a word ("51" -> li, "4" -> four)."""
    out = {name}
    if re.fullmatch(r"\d0s?", name):  # "the late 80's": the 1980s
        out |= {f"19{name[:2]}s", f"{name[:2]}s"}
    digits = re.fullmatch(r"(\d+)(st|nd|rd|th)?", name)
    if digits and 0 < (n := int(digits.group(1))) < 4000:
        roman, left = "", n
        for value, letters in _ROMAN:
            roman, left = roman + letters * (left // value), left % value
        out.add(roman)
        if n < len(_SMALL):
            out.add((_ORDINAL if digits.group(2) else _SMALL)[n])
    return out


def _near(a: str, b: str) -> bool:
    """Whether two long words differ by at most one letter (a typo: "Goverment", "Krugmen")."""
    if abs(len(a) - len(b)) > 1 or min(len(a), len(b)) < 6:
        return False
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return a[i + 1:] == b[i + 1:] or a[i + 1:] == b[i:] or a[i:] == b[i + 1:]


def absent_names(question: str, forms: set[str]) -> set[str]:
    """The names of the question (question_names) that a text, given as its name_forms, holds in no form.

    A name is found as written, without accents, case or punctuation; as a longer or shorter form of
    at least four letters ("Korea"/"Korean", "1970"/"1970s"); with one letter off when long; a number as
    a Roman numeral or a word; a run of names by its initials ("United Kingdom" / "UK"). Not for a German
    question (`is_german`): "Wann wurde der Fernsehturm in Betrieb genommen?" capitalises a noun."""
    if is_german(question):
        return set()
    names = question_names(question)
    found: set[str] = set()
    for run in re.finditer(r"[A-Z][\w'’.&-]*(?:\s+(?:of\s+|and\s+|the\s+)*[A-Z][\w'’.&-]*)+", question):
        words = [w for w in _TOKEN.findall(run.group()) if w[0].isupper()]
        if "".join(w[0].lower() for w in words) in forms:
            found |= {_POSSESSIVE.sub("", w) for w in words}
    out = set()
    for name in names - found:
        if _WEAK_NAME.match(name):
            continue  # "What famous Indian's actions ...?" is answered by "Gandhi's Satyagraha ..."
        f = fold(name)
        if not f or _variants(f) & forms:
            continue
        decade = re.fullmatch(r"(\d{3})0s", f)  # "the 1970s" is found in "in 1977"
        if any(len(x) >= 4 and len(f) >= 4 and (x.startswith(f) or f.startswith(x)) or _near(f, x)
               or decade and re.fullmatch(decade.group(1) + r"\d", x) for x in forms):
            continue
        out.add(name)
    return out


def question_type(question: str) -> str:
    """The question's wh-word as the evaluation report groups it: who, when, how many, where, what, which, why, other."""
    m = _main_wh(question)
    if m is None:
        return "other"
    w = " ".join(m.group(1).lower().split())
    return {"whom": "who", "whose": "who", "how much": "how many"}.get(w, w)


def _noun_after(question: str, pos: int, words: int = 1) -> str:
    """The first lower-case content words after `pos` ('which NFL team' -> 'team'), none past an auxiliary."""
    out: list[str] = []
    for t in _TOKEN.findall(question[pos:])[:4]:
        low = t.lower()
        if low in _AUX or len(out) == words:
            break
        if low in _SKIP or t[0].isupper() or t[0].isdigit():
            continue
        out.append(low)
    return " ".join(out)


_SKIP = frozenset("the a an of kind type sort other more different additional total".split())


def expect(question: str) -> Expectation:
    """The expected answer kind of a question, from its wh-word and the noun that follows it."""
    qtype = question_type(question)
    m = _main_wh(question)
    if m is None:
        return Expectation("", "", qtype)
    w = " ".join(m.group(1).lower().split())
    low = question.lower()
    if w in ("how many", "how much"):
        return Expectation("number", _noun_after(question, m.end(), 2), qtype)
    if w in ("who", "whom", "whose"):
        return Expectation("name", "", qtype)
    if w == "when":
        return Expectation("date", "", qtype)
    if w == "where":
        return Expectation("place", "", qtype)
    if w in ("what", "which"):
        name_of = re.search(r"\bname\s+of\s+(?:the\s+|a\s+|an\s+)?(\w+)", low[m.end():])
        noun = name_of.group(1) if name_of else _noun_after(question, m.end())
        if noun in _DATE_NOUNS:
            return Expectation("date", noun, qtype)
        if noun in _NUMBER_NOUNS:
            return Expectation("number", noun, qtype)
        if noun in _PLACE_NOUNS:
            return Expectation("place", noun, qtype)
        if noun:
            return Expectation("name", noun, qtype)
        # "What was the percentage of ...", "What is Manning's passer rating": the noun after the verb says
        # the kind when it is a number, a date or a place.
        typed = re.match(r"\s+(?:is|was|are|were)\s+(?:the\s+|an?\s+|[\w.]+['’]s\s+)?((?:[\w/-]+\s+){0,2}?[\w/-]+)"
                         r"(?=\s+(?:of|in|for|at|on|that|when|did|does|do|to|by)\b|\s*\?)", low[m.end():])
        head = typed.group(1).split()[-1].split("/")[-1] if typed else ""
        for kind, nouns in (("date", _DATE_NOUNS), ("number", _NUMBER_NOUNS), ("place", _PLACE_NOUNS)):
            if head in nouns:
                return Expectation(kind, head, qtype)
    if re.search(r"\bhow\s+(?:long|far|old|large|big|tall|high|fast|often|deep|wide|heavy)\b", low):
        return Expectation("number", "", qtype)
    return Expectation("", "", qtype)


def _names(text: str) -> list[tuple[int, int, float]]:
    """Capitalised spans ('Rodong Sinmun', 'Center for Strategic and International Studies') with a fit."""
    toks = list(_TOKEN.finditer(text))
    spans: list[tuple[int, int, float]] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if not t.group()[0].isupper():
            i += 1
            continue
        j = i
        while (j + 1 < len(toks) and (text[toks[j].end():toks[j + 1].start()] in (" ", "-")
                                      or (text[toks[j].end():toks[j + 1].start()] == ". "  # "Dr. George E. Mueller"
                                          and _INITIAL.match(toks[j].group())))
               and not re.search(r"['’]s$", toks[j].group())):  # "North Korea’s Rodong Sinmun" is two names
            nxt = toks[j + 1].group()
            if nxt[0].isupper() or (nxt[0].isdigit() and j == i):
                j += 1
            elif (nxt.lower() in _CONNECTORS and j + 2 < len(toks) and toks[j + 2].group()[0].isupper()
                  and text[toks[j + 1].end():toks[j + 2].start()] == " "):
                j += 2
            else:
                break
        start, end = t.start(), toks[j].end()
        words = text[start:end].split()
        first = i == 0 or text[:t.start()].rstrip().endswith((".", ":", "\"", "“"))
        if first and j == i:
            fit = 0.0  # one capitalised word opening the sentence: as often a plain word as a name
        elif _WEAK_NAME.match(re.sub(r"['’]s$", "", " ".join(words))):
            fit = 0.3
        else:
            fit = 1.0
        if first and j > i and words[0].lower() in _STOP_OPENERS:
            start, fit = toks[i + 1].start(), 1.0 if j > i + 1 or not _WEAK_NAME.match(toks[i + 1].group()) else 0.3
        if poss := re.search(r"['’]s$", text[start:end]):  # a possessor ("North Korea’s") modifies the answer
            end, fit = start + poss.start(), min(fit, 0.5)
        if fit and not _DATE.match(text[start:end]):  # "Wednesday", "May 2022" are dates, not names
            spans.append((start, end, fit))
        i = j + 1
    quoted = [(m.start(1), m.end(1), 1.0) for m in _QUOTED.finditer(text)]
    return quoted + [sp for sp in spans if not any(a <= sp[0] and sp[1] <= b for a, b, _ in quoted)]


_STOP_OPENERS = frozenset("the a an in on at by for from after before during since when while although "
                          "however but and or if as this that these those it he she they his her its their "
                          "according following under both all each some many most several other another "
                          "prior formerly with to of during despite because later today there here".split())
# Words of a question that say nothing about where its answer sits in a sentence.
_Q_STOP = _STOP_OPENERS | _AUX | frozenset("who whom whose when where what which why how many much name did "
                                           "does do".split())


def candidates(sentence: str, exp: Expectation, question_words: set[str], stem: Any = None) -> list[Candidate]:
    """Phrases of the sentence that fit the expected kind and are not already in the question, best first.

    A phrase far from the words the sentence shares with the question fits less: answers sit beside them.
    """
    if not exp.kind:
        return []
    found: list[tuple[int, int, float]] = []
    if exp.kind == "date":
        found = [(m.start(), m.end(), 1.0) for m in _DATE.finditer(sentence)]
    elif exp.kind == "number":
        units = {_stem_of(w, stem) for w in exp.noun.split()}
        for m in _NUMBER.finditer(sentence):
            end, fit = m.end(), 0.7
            if re.fullmatch(r"(?:1\d|20)\d{2}", m.group()):
                fit = 0.3  # a year, rarely "how many"
            elif m.group()[0] in "$€£¥" or re.search(r"%|percent|per\s+cent", m.group(), re.IGNORECASE):
                fit = 1.0  # an amount of money or a percentage carries its unit
            for u in list(re.finditer(r"\s+([\w-]+)", sentence[m.end():m.end() + 40]))[:3]:
                if _stem_of(u.group(1), stem) in units:  # "11,000 containers": the number with its unit
                    end, fit = m.end() + u.end(), 1.0
                    break
            found.append((m.start(), end, fit))
    else:
        found = _names(sentence)
        if exp.noun:  # "the Rodong Sinmun newspaper", "the newspaper Rodong Sinmun": the noun beside a name
            noun = re.compile(rf"\b{re.escape(exp.noun)}s?\b", re.IGNORECASE)
            found = [(a, b, 1.0 if noun.search(sentence[max(0, a - 15):b + 15]) else f) for a, b, f in found]
    tokens = list(_TOKEN.finditer(sentence))
    q_stems = {_stem_of(w, stem) for w in question_words - _Q_STOP}
    anchors = [t.start() for t in tokens if _stem_of(t.group(), stem) in q_stems]
    out = []
    for a, b, fit in found:
        words = {w.lower() for w in _TOKEN.findall(re.sub(r"['’]s\b", "", sentence[a:b]))}
        quoted = a > 0 and sentence[a - 1] in "\"“" and sentence[b:b + 1] in ("\"", "”")
        if exp.kind in ("name", "place") and not quoted:  # a name sharing a word with the question is its subject
            # but for the noun the question asks for: "Which university ..." is answered by "X University".
            own = words - _CONNECTORS - {exp.noun, exp.noun + "s"} if exp.noun else words - _CONNECTORS
            new = bool(own) and not any(w in question_words or _prefix_match(w, question_words) for w in own)
        else:
            new = not words <= question_words
        if words and new:
            out.append(Candidate(a, b, fit * _nearness(tokens, anchors, a, b)))
    return sorted(out, key=lambda c: -c.fit)


def _nearness(tokens: list[re.Match[str]], anchors: list[int], a: int, b: int) -> float:
    """1 for a phrase within three words of a question word, down to 0.3 for one far from all of them."""
    if not anchors:
        return 0.7
    outside = [x for x in anchors if not a <= x < b]
    if not outside:
        return 0.7
    pos = [t.start() for t in tokens]
    ia = next((i for i, x in enumerate(pos) if x >= a), len(pos))
    ib = max((i for i, x in enumerate(pos) if x < b), default=ia)
    d = min(ia - pos.index(x) if x < a else pos.index(x) - ib for x in outside)
    return 1.0 if d <= 3 else max(0.3, 1.0 - (d - 3) / 15)


def _stem_of(word: str, stem: Any) -> str:
    w = word.lower()
    return stem(w) if callable(stem) else w.rstrip("s")


def _prefix_match(word: str, question_words: set[str]) -> bool:
    """'Korean' is in a question that says 'Korea'."""
    return any(len(q) >= 4 and (word.startswith(q) or q.startswith(word)) for q in question_words)
