"""Calibrate the not-found threshold (QA_MIN_SUPPORT) of the extractive composer.

    python -m benchmarks.calibrate ../shared/data/squad-dev [--limit N]

Answerable: each SQuAD question against the whole corpus. Unanswerable: the same question with
every paragraph of its own article removed from the retrieved passages, so the documents do not
contain the answer but similar-looking text remains (a hard, in-domain negative). Prints the
support score distribution and, per threshold, how many answerable questions are still answered
(and correctly) and how many unanswerable ones are refused.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qa import Assistant
from qa.answering import passages_retrieved
from qa.evaluation import evaluate, load_benchmark


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--limit", type=int, default=300)
    args = ap.parse_args()
    evaluate(Assistant(), args.dir, limit=1)  # builds or reuses the cached index
    bench = load_benchmark(args.dir)
    cache = max((p for p in Path(".eval-cache").iterdir() if p.name.startswith(args.dir.name)),
                key=lambda p: p.stat().st_mtime)
    a = Assistant(index_dir=cache)
    comp = a.composer()
    pos, neg = [], []
    k, wide = a.settings.top_k, passages_retrieved(a.settings.top_k)  # as Assistant.ask
    for qid, text, gold in bench.queries[: args.limit]:
        article = next(iter(bench.qrels[qid])).split("_")[0]
        passages = a.retriever().retrieve(text, 40)
        own = passages[:wide]
        other = [p for p in passages if not p.source.startswith(article + "_")][:wide]
        # The composer answers with its preferred sentence among those whose support reaches the threshold.
        pos.append([(r.support, any(g.lower() in r.sentence.text.lower() for g in gold))
                    for r in comp.rank(text, own[:k], own[k:])])
        neg.append(max((r.support for r in comp.rank(text, other[:k], other[k:])), default=0.0))
    print(f"{len(pos)} answerable, {len(neg)} unanswerable (own article removed)")
    print("| min_support | answerable answered | answered and correct | unanswerable refused | balanced |")
    print("|---|---|---|---|---|")
    for t in sorted({x / 100 for x in range(30, 71, 3)} | {a.settings.min_support}):  # and the setting in force
        answered = sum(any(s >= t for s, _ in r) for r in pos) / len(pos)
        correct = sum(next((c for s, c in r if s >= t), False) for r in pos) / len(pos)
        refused = sum(s < t for s in neg) / len(neg)
        print(f"| {t:.2f} | {answered:.3f} | {correct:.3f} | {refused:.3f} | {(answered + refused) / 2:.3f} |")


if __name__ == "__main__":
    main()
