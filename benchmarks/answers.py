"""Extractive answer quality by question type, fast enough to iterate on the composer.

    python -m benchmarks.answers ../shared/data/squad-dev [--cache DIR]

The answer depends only on the retrieved passages, so they (and the sentence embeddings) are kept in
`--cache` after the first run; later runs only re-run the composer. As `Assistant.ask`, it retrieves
`passages_retrieved(top_k)` passages and quotes only the first top_k. Scores as `qa eval --answers`
does (answer holds a gold answer; a citation holds one or is from a relevant document), per
question type, for the even and the odd questions separately (tune on one half, check on the other).
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np

from qa import Assistant
from qa.answering import passages_retrieved
from qa.evaluation import evaluate, load_benchmark
from qa.question import TYPES, question_type
from qa.settings import Settings

from .common import machine


class _CachedEmbedder:
    """Sentence embeddings by text, kept between runs (any embedder `qa.embedding.encode` takes)."""

    def __init__(self, embedder: Any, memo: dict[str, np.ndarray]) -> None:
        self.embedder, self.memo = embedder, memo

    def encode(self, texts: list[str], **kw: Any) -> np.ndarray:
        from qa.embedding import encode

        new = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if new:
            for t, v in zip(new, encode(self.embedder, new)):
                self.memo[t] = v
        return np.stack([self.memo[t] for t in texts])


def cache_file(cache: Path, dataset: str) -> tuple[Path, int, int]:
    """Where a dataset's retrieved passages and sentence embeddings are cached, how many of each question's
    passages are quoted (top_k) and how many are retrieved, as Assistant.ask (qa.answering.passages_retrieved)."""
    k = Settings().top_k
    wide = passages_retrieved(k)
    return cache / f"{dataset}-{wide}.pickle", k, wide


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--cache", type=Path, default=Path(".answers-cache"))
    ap.add_argument("--show", choices=[*TYPES, "all"], help="print the misses of one question type")
    ap.add_argument("--timed", type=int, default=0, metavar="N",
                    help="also time the composer on the first N questions with the real embedder (no cache)")
    args = ap.parse_args()
    bench = load_benchmark(args.dir)
    args.cache.mkdir(parents=True, exist_ok=True)
    cached, k, wide = cache_file(args.cache, args.dir.name)
    if cached.exists():
        passages, memo = pickle.loads(cached.read_bytes())
    else:
        evaluate(Assistant(), args.dir, limit=1)  # builds or reuses the cached index
        index = max((p for p in Path(".eval-cache").iterdir() if p.name.startswith(args.dir.name)),
                    key=lambda p: p.stat().st_mtime)
        a = Assistant(index_dir=index)
        passages = {qid: a.retriever().retrieve(text, wide) for qid, text, _ in bench.queries}
        memo = {}
    a = Assistant(index_dir=args.cache / "unused")
    comp = a.composer()
    if args.timed:  # what an answer costs after retrieval: sentence embeddings and the composer
        timed = bench.queries[: args.timed]
        comp.compose(timed[0][1], passages[timed[0][0]][:k], passages[timed[0][0]][k:])  # warm-up
        wall, cpu = time.perf_counter(), time.process_time()
        for qid, text, _ in timed:
            comp.compose(text, passages[qid][:k], passages[qid][k:])
        print(f"{len(timed)} questions, composer with sentence embeddings "
              f"{(time.perf_counter() - wall) * 1000 / len(timed):.0f} ms/question wall, "
              f"{(time.process_time() - cpu) * 1000 / len(timed):.0f} ms CPU, {machine()}")
    comp.embedder = _CachedEmbedder(a.embedder, memo)
    rows: dict[tuple[str, int], list[list[float]]] = {}
    spans: list[float] = []  # per answered question with answer words marked: do they match a gold answer
    answered = 0
    started = time.perf_counter()
    for n, (qid, text, gold) in enumerate(bench.queries):
        answer, cites = comp.compose(text, passages[qid][:k], passages[qid][k:])
        rel = bench.qrels[qid]
        acc = float(bool(cites) and any(g.lower() in answer.lower() for g in gold))
        prec = [float(any(g.lower() in c.text.lower() for g in gold) or c.source in rel) for c in cites]
        r = rows.setdefault((question_type(text), n % 2), [[], [], []])
        r[0].append(acc)
        r[1].extend(prec)
        r[2].append(float(bool(cites)))
        answered += bool(cites)
        if cites and cites[0].answer_span:
            a0, b0 = cites[0].answer_span
            words = cites[0].text[a0 - cites[0].start:b0 - cites[0].start].lower()
            spans.append(float(any(g.lower() in words or words in g.lower() for g in gold)))
        if args.show in (question_type(text), "all") and not acc:
            print(f"MISS {text} | gold {gold[:2]}\n     {answer[:300]}")
    seconds = (time.perf_counter() - started) / len(bench.queries)
    cached.write_bytes(pickle.dumps((passages, memo)))

    def mean(xs: list[float]) -> str:
        return f"{sum(xs) / len(xs):.3f}" if xs else "-"

    print(f"{len(bench.queries)} questions, composer {seconds * 1000:.0f} ms/question (embeddings cached), "
          f"{machine()}")
    print(f"answer words marked in {len(spans)} of {answered} answers; they match a gold answer in "
          f"{sum(spans) / max(1, len(spans)):.3f} (the gold answer holds them or they hold it)")
    print("| type | n | accuracy even / odd | citation precision even / odd | answered even / odd |")
    print("|---|---|---|---|---|")
    for t in [*TYPES, "all"]:
        half = [[sum((v[i] for (q, h), v in rows.items() if (q == t or t == "all") and h == k), [])
                 for i in range(3)] for k in (0, 1)]
        if not half[0][2] and not half[1][2]:
            continue
        n = len(half[0][2]) + len(half[1][2])
        print(f"| {t} | {n} | " + " | ".join(f"{mean(half[0][i])} / {mean(half[1][i])}" for i in range(3)) + " |")
    every = [sum((v[i] for v in rows.values()), []) for i in range(3)]
    print(f"all questions: answer_accuracy {mean(every[0])}, citation_precision {mean(every[1])}, "
          f"answered_rate {mean(every[2])}")


if __name__ == "__main__":
    main()
