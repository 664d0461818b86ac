"""Dense search against the exact nearest chunks: how much of the true top k Chroma's HNSW graph returns.

    python -m benchmarks hnsw [--dataset squad-dev] [--ef 10 --ef 200]

Indexes the whole dataset (`Assistant.ingest_texts`), embeds its questions, and ranks every chunk by
cosine similarity (the exact answer). Then, for each `--ef`, a fresh process sets the collection's
`ef_search` and queries Chroma for 40 chunks a question (what qa's dense side asks for top_k 10): the
share of the exact top 10 and top 40 it returns, how often the exact nearest chunk comes first, and the
time a query takes. A process of its own each, because Chroma keeps the setting of an index it has loaded.
qa's setting is qa.store.SEARCH_EF.
"""

from __future__ import annotations

import argparse
import ast
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .common import row, scratch, texts

K = 40  # top_k 10 x CANDIDATES_PER_SIDE (qa/retrieval.py)


def build(dataset: str, index: Path) -> None:
    """Index the dataset and save the chunk ids, the question vectors and the exact top K of each."""
    from qa import Assistant
    from qa.evaluation import load_benchmark

    from .common import DATA

    a = Assistant(index_dir=index)
    a.ingest_texts(texts(dataset))
    got = a.store().chunks.get(include=["embeddings"])
    ids, vectors = np.array(got["ids"]), np.asarray(got["embeddings"], dtype=np.float32)
    questions = [t for _, t, _ in load_benchmark(DATA / dataset).queries]
    q = np.asarray(a.embedder.encode(questions), dtype=np.float32)
    exact = np.argsort(-(q @ vectors.T), axis=1)[:, :K]
    (index / "exact.pickle").write_bytes(pickle.dumps((ids, q, exact, a.settings.collection)))


def measure(index: Path, ef: int) -> dict[str, float]:
    """In this process: set ef_search, reopen the collection, query, compare with the exact top K."""
    import chromadb
    from chromadb.config import Settings

    ids, q, exact, name = pickle.loads((index / "exact.pickle").read_bytes())
    client = chromadb.PersistentClient(str(index), settings=Settings(anonymized_telemetry=False))
    client.get_collection(name).modify(configuration={"hnsw": {"ef_search": ef}})
    collection = client.get_collection(name)
    collection.query(query_embeddings=q[:1], n_results=K, include=[])  # loads the index
    t0 = time.perf_counter()
    got = collection.query(query_embeddings=q, n_results=K, include=[])["ids"]
    ms = (time.perf_counter() - t0) * 1000 / len(q)
    return {"chunks": len(ids), "questions": len(q), "ms": ms,
            "top10": float(np.mean([len(set(g[:10]) & set(ids[e[:10]])) / 10 for g, e in zip(got, exact)])),
            "top40": float(np.mean([len(set(g) & set(ids[e])) / K for g, e in zip(got, exact)])),
            "first": float(np.mean([bool(g) and g[0] == ids[e[0]] for g, e in zip(got, exact)]))}


def main(argv: list[str] | None = None) -> list[str]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks hnsw", description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", action="append", help="BEIR folder under ../shared/data (repeatable)")
    ap.add_argument("--ef", type=int, action="append", help="ef_search values to compare (default: 10 and qa's)")
    ap.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)  # INDEX EF: the child process
    args = ap.parse_args(argv)
    if args.measure:
        print(repr(measure(Path(args.measure[0]), int(args.measure[1]))))
        return []
    from qa.store import SEARCH_EF

    rows = []
    for dataset in args.dataset or ["squad-dev", "scifact-train"]:
        with scratch() as tmp:
            build(dataset, tmp / "index")
            for ef in args.ef or [10, SEARCH_EF]:
                out = subprocess.run([sys.executable, "-m", "benchmarks.hnsw", "--measure", str(tmp / "index"), str(ef)],
                                     capture_output=True, text=True, check=True).stdout
                m = ast.literal_eval(out.strip().splitlines()[-1])
                label = " (qa's)" if ef == SEARCH_EF else " (Chroma's default)" if ef == 10 else ""
                rows.append(row(f"dense search, {dataset} ({m['chunks']:.0f} chunks, {m['questions']:.0f} questions), "
                                f"ef_search {ef}{label}",
                                f"exact top 10 found **{m['top10']:.4f}**, top {K} {m['top40']:.4f}, nearest first "
                                f"{m['first']:.4f}; {m['ms']:.2f} ms a question", "—"))
                print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    main()
