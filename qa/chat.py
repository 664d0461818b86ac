"""Conversation context: turn a follow-up question into one that stands on its own for retrieval."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .answering import STOPWORDS, TERM  # TERM: "秦始皇什么时候开始连接各国的长城？" is not one word

_FOLLOW_UP = re.compile(
    r"^(and|but|also|so|what about|how about|why|then)\b|\b(it|its|they|them|their|he|him|his|she|her|"
    r"this|that|these|those|there|the same|the other|who else|else)\b",
    re.IGNORECASE,
)


# A follow-up with at most this many words of its own that carry meaning ("What position does he play?":
# position, play) is answered as it is searched, with the previous question; one that says more ("Who sacked
# him with 11 seconds left in the first half?") is answered on its own words: with the previous question's
# words too, the sentence that answered that question came back. `python -m benchmarks.followups` (19
# squad-dev questions whose subject is the answer to an earlier question of the article, replaced by a
# pronoun, asked with that question as history): 6/19 right when every follow-up was answered with the
# previous question, 14/19 now (the same as with no history; 17/19 with the subject written out). At most 3
# words: 13/19; 4: 11/19. The tester's short follow-ups: one better ("When did Priestley publish his findings?"
# quotes the 1775 sentence first), none worse; the seed article: "What did he say about the arms transfers?"
# after Matthew Miller now quotes the denial of the transfers instead of "not found".
OWN_WORDS = 2


def is_follow_up(question: str) -> bool:
    """A question that leans on earlier turns: it opens with a connective or refers back with a pronoun."""
    return bool(_FOLLOW_UP.search(question)) or len(TERM.findall(question)) <= 3


def condense(question: str, history: Sequence[str]) -> str:
    """The question to retrieve with: a follow-up carries the previous question along with it."""
    if not history or not is_follow_up(question):
        return question
    return f"{question} ({history[-1]})"


def answered_as(question: str, history: Sequence[str]) -> str:
    """The question whose sentences an extractive answer quotes: the search query for a follow-up that says
    little on its own (at most OWN_WORDS words that carry meaning), else the question itself."""
    query = condense(question, history)
    if query != question and len({w for w in TERM.findall(question.lower()) if w not in STOPWORDS}) > OWN_WORDS:
        return question
    return query
