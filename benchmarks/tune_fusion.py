"""Try fusion modes and dense weights on one indexed BEIR set, reusing one dense and one BM25 run.

    python -m benchmarks.tune_fusion ../shared/data/scifact-train [--limit N] [--wide N]
    python -m benchmarks.tune_fusion ../shared/data/squad-dev --depths 20,40,50,80

The fused rankings come from LlamaIndex's own QueryFusionRetriever fusion functions, applied to
the two candidate lists, so the figures are those `qa eval` reports for the same settings.
`--depths` instead scores qa's own fusion (the settings' mode and dense weight) with each side's list
cut to each depth: the fused order depends on that depth (see qa.retrieval.MIN_CANDIDATES).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

from llama_index.core.llms import MockLLM
from llama_index.core.retrievers import QueryFusionRetriever

from qa import Assistant
from qa.evaluation import evaluate, load_benchmark, ndcg

from .common import machine

WEIGHTS = [0.3, 0.4, 0.5, 0.6, 0.7]
MODES = ["relative_score", "dist_based_score", "reciprocal_rerank"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--wide", type=int, default=40, help="candidates per side")
    ap.add_argument("--depths", help="comma-separated candidate depths per side: score qa's fusion at each")
    args = ap.parse_args()
    depths = sorted(int(d) for d in args.depths.split(",")) if args.depths else []
    if depths:
        args.wide = max(depths)
    # Make sure the cached eval index exists (and find it) by evaluating one query.
    evaluate(Assistant(), args.dir, limit=1)
    bench = load_benchmark(args.dir)
    cache = next(p for p in Path(".eval-cache").iterdir() if p.name.startswith(args.dir.name)
                 and p.stat().st_mtime == max(q.stat().st_mtime for q in Path(".eval-cache").iterdir()
                                              if q.name.startswith(args.dir.name)))
    a = Assistant(index_dir=cache)
    r = a.retriever()
    dense_ret = r.index.as_retriever(similarity_top_k=args.wide)
    bm25_ret = r.bm25.get(args.wide)
    queries = bench.queries[: args.limit] if args.limit else bench.queries
    runs = [(qid, dense_ret.retrieve(t), bm25_ret.retrieve(t)) for qid, t, _ in queries]
    print(f"{args.dir.name}: {len(runs)} queries, {args.wide} candidates per side", file=sys.stderr)
    if depths:
        by_depth(a, bench, queries, runs, depths)
        return
    print("| mode | dense weight | ndcg@10 | recall@5 | recall@10 |")
    print("|---|---|---|---|---|")

    def score(ranked_sources_per_query: list[list[str]], label: str) -> None:
        nd = r5 = r10 = 0.0
        for (qid, _, _), ranked in zip(runs, ranked_sources_per_query):
            rel = bench.qrels[qid]
            nd += ndcg(ranked, rel, 10)
            r5 += len(set(ranked[:5]) & set(rel)) / len(rel)
            r10 += len(set(ranked[:10]) & set(rel)) / len(rel)
        n = len(runs)
        print(f"| {label} | {nd / n:.4f} | {r5 / n:.4f} | {r10 / n:.4f} |")

    score([docs(d) for _, d, _ in runs], "dense | 1.0")
    score([docs(b) for _, _, b in runs], "bm25 | 0.0")
    for mode in MODES:
        for w in WEIGHTS if mode != "reciprocal_rerank" else [0.5]:
            f = QueryFusionRetriever([dense_ret, bm25_ret], llm=MockLLM(), mode=mode, num_queries=1,
                                     use_async=False, retriever_weights=[w, 1 - w])
            score([docs(fuse(f, mode, d, b)) for _, d, b in runs], f"{mode} | {w}")


def docs(nodes: list) -> list[str]:
    """The documents of ranked chunks, each once, where its best chunk ranks."""
    out: list[str] = []
    for x in nodes:
        s = x.node.metadata["source"]
        if s not in out:
            out.append(s)
    return out


def fuse(f: QueryFusionRetriever, mode: str, dense: list, keywords: list) -> list:
    """Two candidate lists fused by LlamaIndex's own function for the mode (copies: fusion edits scores)."""
    res = {("q", 0): copy.deepcopy(dense), ("q", 1): copy.deepcopy(keywords)}
    if mode == "reciprocal_rerank":
        return f._reciprocal_rerank_fusion(res)
    return f._relative_score_fusion(res, dist_based=mode == "dist_based_score")


def by_depth(a: Assistant, bench: Any, queries: list, runs: list, depths: list[int]) -> None:
    """Per depth: document ndcg@10, recall@1 and @5, and how often a top-5 passage holds a gold answer."""
    s = a.settings
    f = QueryFusionRetriever([a.retriever().index.as_retriever(), a.retriever().bm25.get(1)], llm=MockLLM(),
                             mode=s.fusion, num_queries=1, use_async=False,
                             retriever_weights=[s.dense_weight, 1 - s.dense_weight])
    print(f"{s.fusion}, dense weight {s.dense_weight}, {machine()}")
    print("| candidates per side | ndcg@10 | recall@1 | recall@5 | a top-5 passage holds the answer |")
    print("|---|---|---|---|---|")
    for d in depths:
        nd = r1 = r5 = held = 0.0
        answerable = 0
        for (qid, dense, keywords), (_, _, gold) in zip(runs, queries):
            out = fuse(f, s.fusion, dense[:d], keywords[:d])
            ranked = docs(out)
            rel = bench.qrels[qid]
            nd += ndcg(ranked, rel, 10)
            r1 += len(set(ranked[:1]) & set(rel)) / len(rel)
            r5 += len(set(ranked[:5]) & set(rel)) / len(rel)
            if gold:
                answerable += 1
                held += any(g.lower() in x.node.get_content().lower() for x in out[:5] for g in gold)
        n = len(runs)
        print(f"| {d} | {nd / n:.4f} | {r1 / n:.4f} | {r5 / n:.4f} | "
              f"{f'{held / answerable:.4f}' if answerable else '-'} |", flush=True)


if __name__ == "__main__":
    main()
