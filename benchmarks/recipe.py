"""Ours against the plain LlamaIndex recipe a user would write, on the same documents: speed and quality.

    python -m benchmarks recipe [--dataset squad-dev] [--limit 1000] [--queries 200]

The recipe: `VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(
vector_store=ChromaVectorStore(...)), embed_model=HuggingFaceEmbedding(model_name=<bundled path>))`,
with LlamaIndex's defaults (1024-token chunks, batches of 10, dense retrieval only). Both sides get
the model already loaded; quality is recall@5 and nDCG@10 per document, as `qa eval` scores it, on
the queries whose relevant documents are all in the ingested slice. The recipe embeds with torch
(HuggingFaceEmbedding, as the tutorial does); ours with the configured backend (ONNX by default).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from qa import Assistant
from qa.embedding import resolve_model_path
from qa.evaluation import load_benchmark, ndcg

from .common import DATA, cpu, row, scratch, texts

TARGET = 1.5


def recipe_index(docs: list[Any], folder: str, embed_model: Any) -> Any:
    """What the LlamaIndex starter tutorial does, with Chroma as the vector store."""
    import chromadb
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.vector_stores.chroma import ChromaVectorStore

    client = chromadb.PersistentClient(path=folder)
    vector_store = ChromaVectorStore(chroma_collection=client.get_or_create_collection("recipe"))
    documents = [Document(text=d.text, id_=d.path) for d in docs]
    return VectorStoreIndex.from_documents(
        documents, storage_context=StorageContext.from_defaults(vector_store=vector_store), embed_model=embed_model)


def timed(fn: Any) -> tuple[tuple[float, float], Any]:
    """((wall, CPU) seconds, result) of fn()."""
    t0, c0 = time.perf_counter(), cpu()
    out = fn()
    return (time.perf_counter() - t0, cpu() - c0), out


def quality(search: Any, queries: list[tuple[str, str, list[str]]], qrels: dict[str, dict[str, int]]) -> str:
    """recall@5 / nDCG@10 of `search(question) -> ranked document ids`."""
    r5 = nd = 0.0
    for qid, text, _ in queries:
        ranked: list[str] = []
        for d in search(text):
            if d not in ranked:
                ranked.append(d)
        rel = qrels[qid]
        r5 += len(set(ranked[:5]) & set(rel)) / len(rel)
        nd += ndcg(ranked, rel, 10)
    return f"recall@5 {r5 / len(queries):.3f}, ndcg@10 {nd / len(queries):.3f}"


def main(argv: list[str] | None = None) -> list[str]:
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    ap = argparse.ArgumentParser(prog="python -m benchmarks recipe", description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="squad-dev")
    ap.add_argument("--limit", type=int, default=1000, help="first N documents (0: all)")
    ap.add_argument("--queries", type=int, default=200, help="queries scored for quality (0: none)")
    args = ap.parse_args(argv)
    docs = texts(args.dataset, args.limit or None)
    bench = load_benchmark(DATA / args.dataset)
    ids = {d.path for d in docs}
    queries = [q for q in bench.queries if set(bench.qrels[q[0]]) <= ids][: args.queries]
    with scratch() as tmp:
        ours = Assistant(index_dir=tmp / "ours")
        ours.embedder  # noqa: B018 - load the model before timing
        theirs = HuggingFaceEmbedding(model_name=str(resolve_model_path(ours.settings.embed_model)), device="cpu")
        # Ours runs before and after the recipe (into a second index) and its mean is used.
        (ours_s, ours_cpu), report = timed(lambda: ours.ingest_texts(docs))
        (recipe_s, recipe_cpu), index = timed(lambda: recipe_index(docs, str(tmp / "recipe"), theirs))
        (again_s, again_cpu), _ = timed(lambda: Assistant(ours.settings, index_dir=tmp / "again").ingest_texts(docs))
        print(f"{args.dataset}: {len(docs)} docs; ours {ours_s:.1f}s then {again_s:.1f}s "
              f"({report.chunks_embedded} chunks), recipe {recipe_s:.1f}s ({index.vector_store._collection.count()} "
              f"chunks); CPU ours {ours_cpu:.1f}s/{again_cpu:.1f}s, recipe {recipe_cpu:.1f}s", flush=True)
        ours_s, ours_cpu = (ours_s + again_s) / 2, (ours_cpu + again_cpu) / 2
        rows = [row(f"ingest vs LlamaIndex recipe, {args.dataset} ({len(docs)} docs)",
                    f"ours {len(docs) / ours_s:.1f} docs/s, recipe {len(docs) / recipe_s:.1f} docs/s = "
                    f"**{recipe_s / ours_s:.2f}x** (CPU time {recipe_cpu / ours_cpu:.2f}x)", f"≥ {TARGET}x")]
        if queries:
            dense = index.as_retriever(similarity_top_k=30)
            ours_q = quality(lambda q: [p.source for p in ours.retriever().retrieve(q, 30)], queries, bench.qrels)
            recipe_q = quality(lambda q: [n.node.ref_doc_id for n in dense.retrieve(q)], queries, bench.qrels)
            rows.append(row(f"quality vs LlamaIndex recipe, {args.dataset} ({len(queries)} queries)",
                            f"ours {ours_q}; recipe {recipe_q}", "ours ≥ recipe"))
    print("\n".join(rows), flush=True)
    return rows


if __name__ == "__main__":
    main()
