"""Embedding backends side by side: torch, ONNX fp32, ONNX int8 (smoothed), ONNX int8-v1 (plain) — encode speed
and agreement with torch.

    python -m benchmarks backends [--dataset squad-dev] [--limit 600] [--rounds 2]

Each backend encodes the same chunks (the first `limit` documents, split as ingest splits them) in
batches of `embed_batch_size`, in one process, after a warm-up; the rounds alternate backends so
a change of load hits them alike, and each backend's best round is reported. Agreement is the cosine
of each vector to torch's. Retrieval quality per backend comes from `qa eval` (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from qa.embedding import encode, load_embedder, token_counter
from qa.reading.formats import make_splitter, split
from qa.settings import Settings

from .common import row, texts

VARIANTS = (("torch", "torch", "fp32"), ("ONNX fp32", "onnx", "fp32"), ("ONNX int8", "onnx", "int8"),
            ("ONNX int8-v1", "onnx", "int8-v1"))


def encode_all(embedder: Any, chunks: list[str]) -> tuple[float, Any]:
    """Seconds to encode every chunk in full batches (no single-thread switch: this is ingest's path)."""
    t0 = time.perf_counter()
    if hasattr(embedder, "encode"):
        vecs = embedder.encode(chunks)
    else:
        vecs = encode(embedder, chunks)
    return time.perf_counter() - t0, vecs


def main(argv: list[str] | None = None) -> list[str]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks backends", description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="squad-dev")
    ap.add_argument("--limit", type=int, default=600, help="first N documents")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    s = Settings()
    models = {name: load_embedder(s.embed_model, s.embed_batch_size, backend, precision, s.embed_cache)
              for name, backend, precision in VARIANTS}
    splitter = make_splitter(s.chunk_size, s.chunk_overlap, token_counter(models["ONNX fp32"]))
    docs = texts(args.dataset, args.limit)
    chunks = [c.text for d in docs for c in split(d, splitter)]
    best: dict[str, float] = {}
    vectors: dict[str, Any] = {}
    for m in models.values():
        encode_all(m, chunks[:64])  # warm-up
    for _ in range(args.rounds):
        for name, m in models.items():
            seconds, vectors[name] = encode_all(m, chunks)
            best[name] = min(best.get(name, float("inf")), seconds)
            print(f"{name}: {len(chunks) / seconds:.1f} chunks/s", flush=True)
    rows = []
    for name in models:
        cos = (vectors[name] * vectors["torch"]).sum(1)
        rows.append(row(f"encode {args.dataset} ({len(docs)} docs, {len(chunks)} chunks), {name}",
                        f"**{len(chunks) / best[name]:.1f} chunks/s** ({best['torch'] / best[name]:.2f}x torch); "
                        f"cosine to torch min {cos.min():.4f}, mean {cos.mean():.4f}", "—"))
        print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    main()
