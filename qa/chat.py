"""Conversation context: turn a follow-up question into one that stands on its own for retrieval."""

from __future__ import annotations

import re
from collections.abc import Sequence

_FOLLOW_UP = re.compile(
    r"^(and|but|also|so|what about|how about|why|then)\b|\b(it|its|they|them|their|he|him|his|she|her|"
    r"this|that|these|those|there|the same|the other|who else|else)\b",
    re.IGNORECASE,
)


def is_follow_up(question: str) -> bool:
    """A question that leans on earlier turns: it opens with a connective or refers back with a pronoun."""
    return bool(_FOLLOW_UP.search(question)) or len(question.split()) <= 3


def condense(question: str, history: Sequence[str]) -> str:
    """The question to retrieve with: a follow-up carries the previous question along with it."""
    if not history or not is_follow_up(question):
        return question
    return f"{question} ({history[-1]})"
