"""Verification of generated sentences against passages, with the real embedding model.

A scripted chat model stands in for the LLM here (it only replays a given reply); the real models
are exercised in test_generation.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qa.answering import ExtractiveComposer
from qa.generation import GenerativeComposer, build_messages, with_markers
from qa.prompts import NOT_FOUND
from qa.types import Passage
from qa.verify import Verifier, parse_markers, split_claims

from .conftest import SEED_FILE

DOC = SEED_FILE.read_text(encoding="utf-8")


def _paragraph(word: str) -> Passage:
    """The seed article's line holding `word`, as a passage with exact document offsets."""
    start = DOC.rindex("\n", 0, DOC.index(word)) + 1
    end = DOC.index("\n", start)
    return Passage(source=str(SEED_FILE), start=start, end=end, text=DOC[start:end], score=1.0)


VIETNAM = _paragraph("Vietnam")
BELOUSOV = _paragraph("Belousov")
MUNITIONS = _paragraph("11,000 containers")
CHA = _paragraph("greatest threat")
PASSAGES = [BELOUSOV, VIETNAM, MUNITIONS, CHA]  # [1] [2] [3] [4] in the prompt


@pytest.fixture(scope="module")
def embedder():
    from qa.embedding import load_embedder

    return load_embedder("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def verifier(embedder) -> Verifier:
    return Verifier(embedder)


class Scripted:
    """A chat model that replays a fixed reply a few characters at a time, as a server streams it."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.messages: list[dict[str, str]] = []

    def stream(self, messages: list[dict[str, str]], max_tokens: int) -> Iterator[str]:
        self.messages = messages
        for i in range(0, len(self.reply), 3):
            yield self.reply[i:i + 3]


def _compose(embedder, verifier, reply: str, question: str, keep_unverified: bool = False,
             min_support: float = 0.45):
    composer = GenerativeComposer(Scripted(reply), verifier, ExtractiveComposer(embedder, min_support=min_support),
                                  keep_unverified=keep_unverified)
    drafts = list(composer.drafts(question, PASSAGES))
    assert drafts[-1].final and not any(d.final for d in drafts[:-1])
    return drafts


def _assert_exact(citations) -> None:
    for c in citations:
        assert DOC[c.start:c.end] == c.text
        assert c.passage[c.start - c.passage_start:c.end - c.passage_start] == c.text


def test_claims_split_with_their_markers() -> None:
    text = "Putin met U.S. officials [1]. He left. [2] Then it rained [3, 4].\nLast one [1"
    assert split_claims(text) == ["Putin met U.S. officials [1].", "He left. [2]", "Then it rained [3, 4].",
                                  "Last one [1"]
    assert parse_markers("Then it rained [3, 4].") == ("Then it rained.", [3, 4])
    assert parse_markers("He left. [2][2]") == ("He left.", [2])
    assert parse_markers("Last one [1") == ("Last one", [])
    assert with_markers("It rained.", [1, 2]) == "It rained [1][2]."


@pytest.mark.parametrize("marker", ["[Passage 2]", "(2)", "[^2]", "(Source 2)", "\u30102\u3011", "[passage 2]",
                                    "[Source 2, Source 9]"])
def test_common_citation_styles_are_read_as_markers(embedder, verifier, marker: str) -> None:
    question = "Where will Putin travel after North Korea?"
    for reply in (f"Putin will travel to Vietnam on June 19-20 {marker}.", f"Putin will travel to Vietnam on June 19-20. {marker}"):
        final = _compose(embedder, verifier, reply, question)[-1]
        assert final.text == "Putin will travel to Vietnam on June 19-20 [1]." and final.verified == final.total == 1
        assert final.citations[0].passage_start == VIETNAM.start
    assert parse_markers("It was built in 1987 (1987).", shown=4) == ("It was built in 1987 (1987).", [])
    assert parse_markers("It rained (5).", shown=4) == ("It rained (5).", [])


def test_right_passage_supports_and_wrong_passage_is_flagged(verifier: Verifier) -> None:
    claim = "Putin will travel to Vietnam after his visit to North Korea."
    right = verifier.check(claim, VIETNAM)
    assert right is not None and right.verified
    assert "Vietnam" in right.sentence.text and DOC[right.sentence.start:right.sentence.end] == right.sentence.text
    for wrong in (BELOUSOV, MUNITIONS, CHA):
        s = verifier.check(claim, wrong)
        assert s is not None and not s.verified, wrong.text[:40]


@pytest.mark.parametrize("claim", [
    "North Korea allegedly provided over 12,000 containers of munitions to Russia.",  # wrong number
    "The Russian Defence Minister is Sergei Shoigu.",  # wrong name
    "Putin will travel to China on June 19-20.",  # wrong place
])
def test_changed_numbers_and_names_are_not_supported(verifier: Verifier, claim: str) -> None:
    assert not any(s.verified for s in verifier.evidence(PASSAGES).supports(claim))


# Hand-written documents for contradictions: each claim below is refuted by the very sentence it shares
# its words with, while another sentence of the same passage holds the number or word it needs.
LAB = Passage(source="lab-safety.txt", start=0, end=0, score=1.0, text=(
    "All students must wear safety goggles when handling chemicals. Lab coats are required at all times "
    "inside the laboratory. Food and drink are strictly prohibited in the laboratory. Visitors are not "
    "allowed to touch the equipment."))
FERRY = Passage(source="ferries.md", start=0, end=0, score=1.0, text=(
    "A single adult ticket costs 4.50 euros; children under 12 travel free. The ferry Marianne was built "
    "in 1987 and carries up to 320 passengers. The company does not sell tickets on board. "
    "Bicycles are allowed on board for a fee of 2 euros."))


@pytest.mark.parametrize("claim", [
    "Safety goggles are not required when handling chemicals.",  # a negation the passage does not have
    "Students never wear safety goggles when handling chemicals.",
    "Lab coats are optional inside the laboratory.",  # an opposite word
    "Food and drink are allowed in the laboratory.",
    "Visitors are allowed to touch the equipment.",  # the passage's negation reaches the claim's words
    "Visitors can touch the equipment.",
    "The company sells tickets on board.",
    "A single adult ticket costs 2 euros.",  # the number is in another sentence of the passage
    "The ferry Marianne was built in 1987 and carries up to 2 passengers.",
])
def test_a_sentence_the_passage_contradicts_is_not_supported(verifier: Verifier, claim: str) -> None:
    found = verifier.evidence([LAB, FERRY]).supports(claim)
    assert found and not any(s.verified for s in found), found[0].sentence.text


@pytest.mark.parametrize("claim,cited", [
    ("Students must wear safety goggles when handling chemicals.", "All students must wear safety goggles"),
    ("Food and drink are prohibited in the laboratory.", "Food and drink are strictly prohibited"),
    ("Visitors are not allowed to touch the equipment.", "Visitors are not allowed"),
    ("Lab coats are required at all times in the laboratory.", "Lab coats are required"),
    ("An adult ticket costs 4.50 euros.", "A single adult ticket costs 4.50 euros"),
    ("Children under 12 travel free.", "A single adult ticket"),
    ("Bicycles are allowed on board for a fee of 2 euros.", "Bicycles are allowed on board"),
    ("The company sells no tickets on board.", "The company does not sell tickets on board."),
])
def test_a_supported_sentence_is_cited_to_the_sentence_that_says_it(verifier: Verifier, claim: str,
                                                                     cited: str) -> None:
    best = verifier.evidence([LAB, FERRY]).supports(claim)[0]
    assert best.verified and best.sentence.text.startswith(cited)
    assert best.sentence.text == best.sentence.passage.text[best.sentence.start:best.sentence.end]


def test_sentence_citing_the_wrong_passage_is_recited_to_the_one_that_supports_it(embedder, verifier) -> None:
    # [3] is the munitions paragraph; the Vietnam sentence is in [2].
    drafts = _compose(embedder, verifier, "Putin will travel to Vietnam on June 19-20 [3].",
                      "Where will Putin travel after North Korea?")
    final = drafts[-1]
    assert final.answered and final.verified == final.total == 1
    assert [c.id for c in final.citations] == [1]
    (c,) = final.citations
    assert c.verified and c.passage_start == VIETNAM.start and "Vietnam" in c.text
    assert final.text == "Putin will travel to Vietnam on June 19-20 [1]."
    _assert_exact(final.citations)


def test_unsupported_sentences_are_dropped_or_flagged(embedder, verifier) -> None:
    reply = ("Putin will travel to Vietnam on June 19-20 [2]. "
             "Putin will also meet the Pope in Rome in July [2].")
    question = "Where will Putin travel after North Korea?"
    final = _compose(embedder, verifier, reply, question)[-1]
    assert final.text == "Putin will travel to Vietnam on June 19-20 [1]."
    assert (final.verified, final.total) == (1, 2)
    flagged = _compose(embedder, verifier, reply, question, keep_unverified=True)[-1]
    assert "Pope" in flagged.text and [c.verified for c in flagged.citations] == [True, False]
    assert flagged.citations[1].passage_start == VIETNAM.start  # the passage its marker named
    _assert_exact(flagged.citations)


def test_markers_renumbered_by_first_use_and_dangling_ones_dropped(embedder, verifier) -> None:
    reply = ("Victor Cha said the summit poses the greatest threat to U.S. national security [4]. "
             "Putin will travel to Vietnam on June 19-20 [9]. "
             "Andrei Belousov, the Russian Defence Minister, will be part of the delegation [1].")
    # A question every sentence answers a part of; no relevance cut-off (tested below).
    drafts = _compose(embedder, verifier, reply, "What did Victor Cha say, where will Putin travel, and "
                      "who is in the delegation?", min_support=0.0)
    final = drafts[-1]
    assert [c.id for c in final.citations] == [1, 2, 3]
    assert [c.passage_start for c in final.citations] == [CHA.start, VIETNAM.start, BELOUSOV.start]
    assert "[9]" not in final.text and final.text.count("[") == 3
    assert all(c.verified for c in final.citations)
    _assert_exact(final.citations)
    # Streamed one verified sentence at a time, each draft extending the last.
    assert [len(d.citations) for d in drafts] == [1, 2, 3]
    for before, after in zip(drafts, drafts[1:]):
        assert after.text.startswith(before.text)


def test_not_found_reply_and_nothing_verified(embedder, verifier) -> None:
    final = _compose(embedder, verifier, f"{NOT_FOUND}", "What is the capital of France?")[-1]
    assert not final.answered and final.text == NOT_FOUND and final.citations == ()
    # A hallucination nothing supports: the extractive answer stands in (here: nothing relevant either).
    final = _compose(embedder, verifier, "The capital of France is Paris [1].", "What is the capital of France?")[-1]
    assert not final.answered and final.text == NOT_FOUND and (final.verified, final.total) == (0, 1)


def test_nothing_verified_falls_back_to_the_extractive_answer(embedder, verifier) -> None:
    question = "How many containers of munitions did North Korea allegedly provide to Russia?"
    final = _compose(embedder, verifier, "North Korea provided 1,200,000 containers [3].", question)[-1]
    assert final.answered and "11,000" in final.text and (final.verified, final.total) == (0, 1)
    assert all(c.verified for c in final.citations)
    _assert_exact(final.citations)


def test_off_topic_and_echoed_sentences_are_not_kept(embedder, verifier) -> None:
    question = "Where will Putin travel after North Korea?"
    reply = ("Where will Putin travel after North Korea? "
             "Both Moscow and Pyongyang have denied any arms transfers [3]. "
             "Putin will travel to Vietnam [2].")
    final = _compose(embedder, verifier, reply, question)[-1]
    assert final.text == "Putin will travel to Vietnam [1]."


def test_a_long_conversation_is_cut_to_the_context_window_oldest_questions_first(embedder, verifier) -> None:
    model = Scripted("Putin will travel to Vietnam on June 19-20 [2].")
    composer = GenerativeComposer(model, verifier, ExtractiveComposer(embedder), context_chars=3000)
    history = [f"Question {i}: what about the ferry timetable, the tickets, bicycles and dogs? " * 5 for i in range(12)]
    final = list(composer.drafts("Where will Putin travel after North Korea?", PASSAGES, history))[-1]
    assert final.answered and sum(len(m["content"]) for m in model.messages) <= 3000
    prompt = model.messages[-1]["content"]
    assert "Question 11:" in prompt and "Question 0:" not in prompt  # the latest questions stay
    assert all(f"[{n}] " in prompt for n in range(1, len(PASSAGES) + 1))  # before any passage goes
    # A question too long for any history leaves the best passage at least.
    list(composer.drafts("Where will Putin travel after North Korea? " + "Please answer. " * 150, PASSAGES, history))
    assert "Question 11:" not in model.messages[-1]["content"] and "[1] " in model.messages[-1]["content"]


def test_prompt_numbers_the_passages_and_carries_earlier_questions() -> None:
    messages = build_messages("What did he urge?", PASSAGES, ["Who is Victor Cha?"])
    user = messages[-1]["content"]
    assert "[2] Following his visit to North Korea" in user and "[4] Victor Cha" in user
    assert "Who is Victor Cha?" in user and user.endswith("Question: What did he urge?")
    assert NOT_FOUND in messages[0]["content"]
