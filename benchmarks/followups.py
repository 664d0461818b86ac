"""Follow-up questions that refer to the previous answer, made from a BEIR set with gold answers.

    python -m benchmarks.followups ../shared/data/squad-dev [--limit N] [--show]

A pair is two questions about the same article where the first one's gold answer is written in the
second ("Who was named MVP?" -> Von Miller; "How many tackles did Von Miller record?"). The second is
asked as a follow-up with that name replaced by a pronoun ("How many tackles did they record?") and
scored as `qa eval --answers` scores answers (a gold answer in the answered text), with the previous
question as history (as a conversation asks it), with none, and, as the ceiling, as first written.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from qa import Assistant
from qa.evaluation import evaluate, load_benchmark

from .common import machine

PRONOUN = {True: ("they", "their"), False: ("it", "its")}  # a capitalised name (person, team) or a thing


def pairs(folder: Path) -> list[tuple[str, str, list[str], str]]:
    """(first question, follow-up with a pronoun, the follow-up's gold answers, the follow-up as written).

    The two questions are about the same article (SQuAD's document ids are article_paragraph): squad-dev
    keeps every 20th question, so two about one paragraph are rare."""
    bench = load_benchmark(folder)
    by_doc: dict[str, list[tuple[str, list[str]]]] = {}
    for qid, text, gold in bench.queries:
        if gold and len(bench.qrels[qid]) == 1:
            by_doc.setdefault(next(iter(bench.qrels[qid])).split("_")[0], []).append((text.strip(), gold))
    out = []
    for questions in by_doc.values():
        for q1, gold1 in questions:
            for q2, gold2 in questions:
                if q1 == q2:
                    continue
                for name in sorted(set(gold1), key=len, reverse=True):
                    if (len(name) < 3 or not name[0].isupper() or name.lower() in q1.lower()
                            or any(name.lower() in g.lower() for g in gold2)):
                        continue
                    # the whole noun phrase: "the Carolina Panthers", not "Cam [Newton]"
                    found = re.search(rf"(?<![\w-])(?:[Tt]he )?{re.escape(name)}(?:'s|’s)?(?![\w-])", q2)
                    if found is None or re.search(r"[A-Z]\w*\s$", q2[:found.start()]):
                        continue
                    subject, owner = PRONOUN[name[:1].isupper() and " " in name]
                    word = owner if found.group().endswith(("'s", "’s")) else subject
                    out.append((q1, q2[:found.start()] + word + q2[found.end():], gold2, q2))
                    break
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--limit", type=int, default=0, help="the first N pairs only")
    ap.add_argument("--show", action="store_true", help="print each pair where the histories disagree")
    args = ap.parse_args()
    found = pairs(args.dir)[: args.limit or None]
    evaluate(Assistant(), args.dir, limit=1)  # builds or reuses the cached index
    index = max((p for p in Path(".eval-cache").iterdir() if p.name.startswith(args.dir.name)),
                key=lambda p: p.stat().st_mtime)
    a = Assistant(index_dir=index)
    right = {m: 0 for m in ("none", "question", "written")}
    started = time.perf_counter()
    for q1, q2, gold, written in found:
        first = a.ask(q1)
        answers = {"none": a.ask(q2), "question": a.ask(q2, history=[q1]), "written": a.ask(written)}
        ok = {m: ans.answered and any(g.lower() in ans.answer.lower() for g in gold) for m, ans in answers.items()}
        for m in ok:
            right[m] += ok[m]
        if args.show and len(set(ok.values())) > 1:
            print(f"{q1} -> {q2} | gold {gold[:2]}\n    first: {first.answer[:160]}")
            for m, ans in answers.items():
                print(f"    {'+' if ok[m] else '-'} {m}: {ans.answer[:160]}")
    n = max(1, len(found))
    print(f"{len(found)} follow-up pairs from {args.dir.name}, {(time.perf_counter() - started) / n:.2f} s a pair, "
          f"{machine()}")
    print("| history | answer accuracy |\n|---|---|")
    for m, label in (("question", "the previous question"), ("none", "none"),
                     ("written", "(ceiling: the question as written, no pronoun)")):
        print(f"| {label} | {right[m] / n:.3f} ({right[m]}/{len(found)}) |")


if __name__ == "__main__":
    main()
