"""Try fusion modes and dense weights on one indexed BEIR set, reusing one dense and one BM25 run.

    python -m benchmarks.tune_fusion ../shared/data/scifact-train [--limit N]

The fused rankings come from LlamaIndex's own QueryFusionRetriever fusion functions, applied to
the two candidate lists, so the figures are those `qa eval` reports for the same settings.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

from llama_index.core.llms import MockLLM
from llama_index.core.retrievers import QueryFusionRetriever

from qa import Assistant
from qa.evaluation import evaluate, load_benchmark, ndcg

WEIGHTS = [0.3, 0.4, 0.5, 0.6, 0.7]
MODES = ["relative_score", "dist_based_score", "reciprocal_rerank"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--wide", type=int, default=40, help="candidates per side")
    args = ap.parse_args()
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

    def docs(nodes: list) -> list[str]:
        out: list[str] = []
        for x in nodes:
            s = x.node.metadata["source"]
            if s not in out:
                out.append(s)
        return out

    score([docs(d) for _, d, _ in runs], "dense | 1.0")
    score([docs(b) for _, _, b in runs], "bm25 | 0.0")
    for mode in MODES:
        for w in WEIGHTS if mode != "reciprocal_rerank" else [0.5]:
            f = QueryFusionRetriever([dense_ret, bm25_ret], llm=MockLLM(), mode=mode, num_queries=1,
                                     use_async=False, retriever_weights=[w, 1 - w])
            fused = []
            for _, d, b in runs:
                res = {("q", 0): copy.deepcopy(d), ("q", 1): copy.deepcopy(b)}
                if mode == "reciprocal_rerank":
                    out = f._reciprocal_rerank_fusion(res)
                else:
                    out = f._relative_score_fusion(res, dist_based=mode == "dist_based_score")
                fused.append(docs(out))
            score(fused, f"{mode} | {w}")


if __name__ == "__main__":
    main()
