"""Answers that name the fact asked for: the expected answer kind, the cited sentence, the answer words."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from qa.question import absent_names, candidates, expect, name_forms, question_type
from qa.serving.ui import highlight
from qa.types import Answer, Citation

from .conftest import SEED_FILE

DOC = SEED_FILE.read_text(encoding="utf-8")

# (question, its type, a fact the first cited sentence must hold, the answer words when marked)
BY_TYPE = [
    ("Who clarified that the agreement would not be aimed against any particular country?", "who",
     "Yuri Ushakov", "Yuri Ushakov"),
    ("When did Russia and China veto the U.S.-led initiative for more sanctions?", "when", "May 2022", "May 2022"),
    ("How many containers of munitions did North Korea allegedly provide to Russia?", "how many", "11,000",
     "11,000 containers"),
    ("Where will Putin travel after North Korea?", "where", "Vietnam", "Vietnam"),
    ("What did commercial satellite images show North Korea preparing for?", "what", "military parade", None),
    ("In which newspaper was Putin's letter published?", "which", "Rodong Sinmun", "Rodong Sinmun"),
    ("Why has North Korea been subjected to U.N. sanctions?", "why", "ballistic missile and nuclear programs", None),
]


@pytest.mark.parametrize("question,qtype,fact,words", BY_TYPE)
def test_first_citation_names_the_fact(seeded, question: str, qtype: str, fact: str, words: str | None) -> None:
    assert question_type(question) == qtype
    ans = seeded.ask(question)
    assert ans.answered
    first = ans.citations[0]
    assert fact in first.text, f"{question} -> {first.text}"
    for c in ans.citations:  # still exact spans of the document
        assert DOC[c.start:c.end] == c.text
    if words is not None:
        assert first.answer_span is not None
        a, b = first.answer_span
        assert first.start <= a < b <= first.end and DOC[a:b] == words


def test_newspaper_question_cites_the_rodong_sinmun_sentence_not_the_one_with_more_words_in_common(seeded) -> None:
    ans = seeded.ask("In which newspaper was Putin's letter published?")
    assert ans.citations[0].text.startswith("The letter, featured in North Korea’s Rodong Sinmun")
    assert ans.answer.startswith("The letter, featured in North Korea’s Rodong Sinmun")


def test_expected_kind_from_the_question() -> None:
    assert expect("Who is the spokesperson?").kind == "name"
    assert expect("When did the visit start?").kind == "date"
    assert expect("In what year was Roger II made king?").kind == "date"
    assert expect("Which NFL team represented the AFC?").noun == "team"
    assert (e := expect("How many passing yards did Newton get?")).kind == "number" and "yards" in e.noun
    assert expect("Where did the meetings take place?").kind == "place"
    assert expect("What was the percentage of voters in favour?").kind == "number"
    assert expect("What did he urge Washington to do?").kind == ""
    # A fronted clause does not decide the question's type.
    assert question_type("When John Fox left as head coach, who replaced him?") == "who"
    assert question_type("Besides coffee, how many other competitors took part?") == "how many"


def test_candidates_are_new_to_the_question() -> None:
    q = "Who met Putin in Pyongyang?"
    words = {w.lower() for w in q.replace("?", "").split()}
    s = "In Pyongyang, Vladimir Putin met Kim Jong Un on Wednesday."
    found = [s[c.start:c.end] for c in candidates(s, expect(q), words)]
    assert found == ["Kim Jong Un"]  # "Vladimir Putin" names who the question is about, not its answer
    d = "The panel was renewed in March of this year and in May 2022, not in 2019."
    dates = [d[c.start:c.end] for c in candidates(d, expect("When was the panel renewed?"), {"panel", "renewed"})]
    assert dates == ["March", "May 2022", "2019"]


def test_answer_span_in_json_and_in_bold_in_the_ui(seeded, tmp_path) -> None:
    index = seeded.settings.index_dir
    out = subprocess.run([sys.executable, "-m", "qa", "--index-dir", str(index), "ask", "--json",
                          "How many containers of munitions did North Korea allegedly provide to Russia?"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout)["citations"][0]
    a, b = first["answer_span"]
    assert DOC[a:b] == "11,000 containers"
    plain = Answer("q", "a [1].", True, (Citation(1, "s", 0, 5, "hello", 1.0),)).to_dict()
    assert "answer_span" not in plain["citations"][0]  # only when known
    passage = "Where next? It was <Vietnam>."
    start = passage.index("It")
    c = Citation(1, "s", start, len(passage), passage[start:], 1.0, passage_start=0, passage_end=len(passage),
                 passage=passage, answer_span=(passage.index("<"), passage.index(">") + 1))
    assert highlight(c) == "Where next? <mark>It was <b>&lt;Vietnam&gt;</b>.</mark>"


def test_candidates_read_titles_initials_and_amounts() -> None:
    def found(sentence: str, question: str) -> list[str]:
        words = {w.lower() for w in question.replace("?", "").split()}
        return [sentence[c.start:c.end] for c in candidates(sentence, expect(question), words)]

    # A quoted title is one name, even when it shares a word with the question.
    s = 'Peter Capaldi took on the role after Matt Smith\'s exit in the 2013 Christmas special "The Time of the Doctor".'
    assert "The Time of the Doctor" in found(s, "Which episode was Matt Smith's final one as the Doctor?")
    # A title and initials do not end a name at their full stop.
    assert found("Webb recruited Dr. George E. Mueller for the job.", "Who did Webb recruit?") == ["Dr. George E. Mueller"]
    # Money carries its unit: it is the best answer to "how much" even without the noun.
    s = "Eventually, he sold Wardenclyffe for $20,000 ($472,500 in today's dollars) in 1917."
    assert found(s, "How much did Tesla receive from the sale of Wardenclyffe?")[0] == "$20,000"


def test_a_name_holding_the_noun_asked_for_is_an_answer() -> None:
    # "Which university": "Charles-Ferdinand University" shares only the noun asked for with the question.
    q = "Which university did Tesla audit in 1880?"
    words = {w.lower() for w in q.replace("?", "").split()}
    s = "He arrived too late to enroll at Charles-Ferdinand University; he never studied Greek."
    assert [s[c.start:c.end] for c in candidates(s, expect(q), words)][0] == "Charles-Ferdinand University"
    # A name sharing another word with the question still names its subject, not its answer.
    s = "Tesla University hosted him, and Charles-Ferdinand University did not."
    assert "Tesla University" not in [s[c.start:c.end] for c in candidates(s, expect(q), words)]


@pytest.mark.parametrize("question,text,absent", [
    ("What is the population of Krakow?", "Warsaw is larger than Kraków.", set()),
    ("What is the population of Krakow?", "Warsaw's population is 1.7 million.", {"Krakow"}),
    ("What did the U.S. say?", "The United States said no.", set()),
    ("Who runs the United Kingdom?", "The UK is run by its government.", set()),
    ("How many NFL teams went 15-1?", "The National Football League saw a 15\u20131 record.", set()),
    ("Who was MVP of Super Bowl 51?", "The MVP trophy returns for Super Bowl LI.", set()),
    ("Who was MVP of Super Bowl 51?", "Von Miller was MVP of Super Bowl 50.", {"51"}),
    ("When did Harvard's rivalry with Yale start?", "The Harvard\u2013Yale Regatta began in 1852.", set()),
    ("What happened in the 1970s?", "In 1977 the colleges merged.", set()),
    ("What is the allowance for Austria?", "For trips to Switzerland it is 64 euros.", {"Austria"}),
    ("What is the allowance for trips abroad?", "For trips to Switzerland it is 64 euros.", set()),
    # Letters NFKD cannot take the accent off are written as ASCII writes them; other scripts are compared too.
    ("When did Preussen end?", "Preußen endete 1947.", set()),
    ("Who was born in Lodz?", "Łódź ist eine Stadt.", set()),
    ("What does Ørsted build?", "Orsted builds wind farms.", set()),
    ("Where is Байкал?", "Озеро Байкал находится в Сибири.", set()),
    ("Where is Байкал?", "Озеро Ладога находится в России.", {"Байкал"}),
    # German capitalises nouns: not names; "¿" opens a sentence; other languages' names are names; a question
    # in capitals names only its numbers.
    ("Wann wurde der Fernsehturm in Betrieb genommen?", "Der Fernsehturm wurde 1969 eröffnet.", set()),
    ("¿Quién pintó Las Meninas?", "Velázquez pintó Las Meninas en 1656.", set()),
    ("¿Cuál es la capital de Argentina?", "Madrid es la capital de España.", {"Argentina"}),
    ("Thủ đô của Pháp là gì?", "Hà Nội là thủ đô của Việt Nam.", {"Pháp"}),
    ("WHO WAS MVP OF SUPER BOWL 50?", "Von Miller was MVP of Super Bowl 50.", set()),
    ("WHO WAS MVP OF SUPER BOWL 51?", "Von Miller was MVP of Super Bowl 50.", {"51"}),
])
def test_absent_names_read_a_name_in_its_other_forms(question: str, text: str, absent: set[str]) -> None:
    assert absent_names(question, name_forms(text)) == absent
