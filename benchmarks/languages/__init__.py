"""Documents and questions in 13 languages: how many are answered right, per language.

    python -m benchmarks languages [--show]

Indexes benchmarks/languages/docs/ (German, French, Spanish, Russian, Chinese, Japanese, Arabic, Hebrew,
Greek, Turkish, Vietnamese, Hindi and mixed files; cp1252, Latin-1, cp1251, Shift-JIS and UTF-16 files,
NFD text and names) in a scratch folder and asks the 114 questions of questions.py in process. A question
is answered right when the answer holds an accepted string (compared in NFC) and it cites; one no document
answers is right when it is refused. Every citation must be the exact text of its document at its offsets.
"""

from __future__ import annotations

import argparse
import unicodedata
from pathlib import Path

from ..common import machine, row, scratch
from .questions import Q

DOCS = Path(__file__).parent / "docs"


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def main(argv: list[str] | None = None) -> list[str]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks languages", description=__doc__.splitlines()[0])
    ap.add_argument("--show", action="store_true", help="print each question answered wrong")
    args = ap.parse_args(argv)
    from qa import Assistant

    right: dict[str, list[int]] = {}
    refused = [0, 0]
    inexact = 0
    with scratch() as tmp:
        a = Assistant(index_dir=tmp / "index")
        a.ingest(DOCS)
        for qid, lang, source, question, accepted in Q:
            ans = a.ask(question)
            for c in ans.citations:
                inexact += a.document_text(c.source)[c.start:c.end] != c.text
            if source is None:
                ok = not ans.answered
                refused[0] += ok
                refused[1] += 1
            else:
                ok = ans.answered and bool(ans.citations) and any(nfc(x) in nfc(ans.answer) for x in accepted)
            tally = right.setdefault(lang, [0, 0])
            tally[0] += ok
            tally[1] += 1
            if args.show and not ok:
                print(f"{qid} {question} | expected {accepted[:1] or 'not found'}\n    {ans.answer[:200]}")
    total = sum(r for r, _ in right.values()), sum(n for _, n in right.values())
    print(f"{total[0]}/{total[1]} right ({refused[0]}/{refused[1]} of the unanswerable refused), "
          f"{inexact} inexact citations, {machine()}")
    print(" · ".join(f"{lang} {r}/{n}" for lang, (r, n) in right.items()))
    return [row("languages: questions in 13 languages answered right", f"**{total[0]}/{total[1]}** "
                f"(unanswerable refused {refused[0]}/{refused[1]}; inexact citations {inexact})", "-",
                "python -m benchmarks languages")]
