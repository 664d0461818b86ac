"""Fit the weights of the extractive composer's sentence choice (qa.answering.W_CHOICE).

    python -m benchmarks.fit_choice ../shared/data/squad-dev [--cache DIR] [--half 0] [--policy]

Uses the passages and embeddings cached by `python -m benchmarks.answers` (run it first, with the same
QA_EMBED_PRECISION). For each answered question of one half (even = 0, odd = 1) every sentence the
composer may choose (support in context >= min_support - CHOICE_MARGIN) gets the feature row of
`ExtractiveComposer._features`; a conditional logit (softmax over the question's sentences, score =
support in context + features . w, L2-regularised, temperature 0.1) is fitted by Adam to put the
sentences holding a gold answer first. Prints the weights to freeze in qa/answering.py and how often the
best-scored sentence holds the answer on both halves, with the frozen and the fitted weights (the other
half is the held-out check). `--policy` scores the second-sentence thresholds with the frozen weights.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from qa import Assistant, answering
from qa.evaluation import load_benchmark
from qa.settings import Settings

from .answers import _CachedEmbedder, cache_file


def _rows(comp: Any, bench: Any, passages: dict, floor: float | None = None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """(features, support in context, holds a gold answer, half, sources, source is relevant, answer words
    known) of the eligible sentences, per question."""
    captured: dict[str, Any] = {}
    original = answering.ExtractiveComposer._features

    def capture(*a: Any) -> np.ndarray:
        captured["x"], captured["sentences"] = original(*a), a[0]
        return captured["x"]

    answering.ExtractiveComposer._features = staticmethod(capture)
    out = []
    k = Settings().top_k
    try:
        for n, (qid, text, gold) in enumerate(bench.queries):
            ranked = comp.rank(text, passages[qid][:k], passages[qid][k:])
            if not ranked:
                continue
            row = {(s.passage.source, s.start): i for i, s in enumerate(captured["sentences"])}
            if not any(r.support >= comp.min_support for r in ranked):
                continue  # not found: the choice does not matter
            keep = [r for r in ranked if r.in_context >= (comp.min_support if floor is None else floor)]
            if not keep:
                continue
            idx = [row[(r.sentence.passage.source, r.sentence.start)] for r in keep]
            base = np.array([r.in_context for r in keep])
            hit = np.array([any(g.lower() in r.sentence.text.lower() for g in gold) for r in keep])
            rel = bench.qrels[qid]
            sources = [r.sentence.passage.source for r in keep]
            out.append((captured["x"][idx], base, hit, n % 2, sources, np.array([x in rel for x in sources]),
                        np.array([r.span is not None for r in keep])))
    finally:
        answering.ExtractiveComposer._features = staticmethod(original)
    return out


def fit(rows: list, l2: float = 0.01, steps: int = 3000, lr: float = 0.05) -> np.ndarray:
    """Conditional logit by Adam on the mean negative log-likelihood of a gold sentence."""
    rows = [r for r in rows if r[2].any() and not r[2].all()]
    w = np.zeros(rows[0][0].shape[1])
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t in range(1, steps + 1):
        grad = 2 * l2 * w
        for x, base, hit, *_ in rows:
            z = (base + x @ w) * 10.0
            p = np.exp(z - z.max())
            p /= p.sum()
            pg = p * hit / (p * hit).sum()
            grad += 10.0 * (x.T @ (p - pg)) / len(rows)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        w -= lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return w


def top1(rows: list, w: np.ndarray, half: int) -> float:
    """Share of a half's questions whose best-scored sentence holds a gold answer."""
    sel = [r for r in rows if r[3] == half]
    return sum(bool(r[2][np.argmax(r[1] + r[0] @ w)]) for r in sel) / max(1, len(sel))


def policy(rows: list, w: np.ndarray, same: float, other: float, half: int, n: int) -> tuple[float, float]:
    """(answer accuracy, citation precision) of a half's n questions when a second sentence joins the best
    one if it is from the same document and within `same`, or from another and within `other` while the best
    one holds no confident answer words (as ExtractiveComposer.choose with max_sentences 2). Questions not
    answered count as misses."""
    acc, cites = 0, []
    for x, base, hit, h, sources, rel, spans in rows:
        if h != half:
            continue
        score = base + x @ w
        order = np.argsort(-score, kind="stable")
        pick = [order[0]]
        for j in order[1:]:
            close = score[order[0]] - score[j]
            if close >= same:
                break
            if sources[j] == sources[order[0]] or (close < other and not spans[order[0]]):
                pick.append(j)
                break
        acc += any(hit[i] for i in pick)
        cites += [hit[i] or rel[i] for i in pick]
    return acc / n, float(np.mean(cites))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--cache", type=Path, default=Path(".answers-cache"))
    ap.add_argument("--half", type=int, default=0, help="fit on the even (0) or the odd (1) questions")
    ap.add_argument("--l2", type=float, default=0.0001)
    ap.add_argument("--margin", type=float, default=None,
                    help="choose among sentences down to min_support - margin (default: the composer's CHOICE_MARGIN)")
    ap.add_argument("--policy", action="store_true", help="also score second-sentence thresholds (frozen weights)")
    args = ap.parse_args()
    bench = load_benchmark(args.dir)
    passages, memo = pickle.loads(cache_file(args.cache, args.dir.name)[0].read_bytes())
    a = Assistant(index_dir=args.cache / "unused")
    comp = a.composer()
    comp.embedder = _CachedEmbedder(a.embedder, memo)
    margin = answering.CHOICE_MARGIN if args.margin is None else args.margin
    rows = _rows(comp, bench, passages, comp.min_support - margin)
    w = fit([r for r in rows if r[3] == args.half], l2=args.l2)
    for name, w0, w1 in zip(answering.FEATURES, answering.W_CHOICE, w):
        print(f"{name:>14} {w0:+.3f} -> {w1:+.3f}")
    print("W_CHOICE = np.array([" + ", ".join(f"{x:.3f}" for x in w) + "])")
    for h in (0, 1):
        print(f"best sentence holds the answer, {('even', 'odd')[h]} half: {top1(rows, answering.W_CHOICE, h):.3f} "
              f"(frozen weights) -> {top1(rows, w, h):.3f} (fitted on the {('even', 'odd')[args.half]} half)")
    if args.policy:
        n = [sum(1 for k in range(len(bench.queries)) if k % 2 == h) for h in (0, 1)]
        print("| same document | other document | accuracy even / odd | citation precision even / odd |")
        print("|---|---|---|---|")
        for same in (0.1, 0.3, 1.0, 1.5):
            for other in (0.0, 0.03, 0.06, 0.1, 0.2):
                (a0, p0), (a1, p1) = (policy(rows, answering.W_CHOICE, same, other, h, n[h]) for h in (0, 1))
                print(f"| {same} | {other} | {a0:.3f} / {a1:.3f} | {p0:.3f} / {p1:.3f} |")


if __name__ == "__main__":
    main()
