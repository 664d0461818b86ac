"""Query latency p50/p95 of retrieval and of a full extractive answer at about 2k, 20k and 100k chunks.

    python -m benchmarks latency [--sizes 1,10,50] [--queries 100] [--keep DIR]

The 2k index is a real ingest of the first squad-dev paragraphs; the larger ones hold that index
plus copies of it under distinct ids (`<id>#<n>`), written through `Store.add_chunks`/`commit`
with the vectors of the 2k ingest, so 100k chunks need not be embedded (an hour on this machine).
Each size is opened by a fresh Assistant; its first query (which builds or loads BM25) is timed
apart, then every question is retrieved (top_k 5), then every question is answered.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from qa import Assistant
from qa.embedding import token_counter
from qa.evaluation import load_benchmark
from qa.reading.formats import Chunk, SourceText, make_splitter, split
from qa.store import chunk_text

from .common import DATA, pct, row, scratch, texts

TARGET_MS = 100.0
BASE_CHUNKS = 2000


def base_index(folder: Path, dataset: str) -> Assistant:
    """A real ingest of the first documents of `dataset` that make BASE_CHUNKS chunks (reused if there)."""
    a = Assistant(index_dir=folder)
    if not (folder / "chroma.sqlite3").exists():
        s = a.settings
        splitter = make_splitter(s.chunk_size, s.chunk_overlap, token_counter(a.embedder))
        docs, n = [], 0
        for d in texts(dataset):
            if n >= BASE_CHUNKS:
                break
            docs.append(d)
            n += len(split(d, splitter))
        a.ingest_texts(docs)
    return a


def copies(base: Assistant, folder: Path, n: int) -> Assistant:
    """An index of the base chunks n times over: the original, then copies with ids `<id>#<k>`."""
    a = Assistant(index_dir=folder)
    if (folder / "chroma.sqlite3").exists():
        return a
    src = base.store()
    got = src.chunks.get(include=["embeddings", "documents", "metadatas"])
    by_doc: dict[str, list[tuple[Chunk, Any]]] = {}
    for text, meta, vec in zip(got["documents"], got["metadatas"], got["embeddings"]):
        c = Chunk(meta["source"], int(meta["index"]), int(meta["start"]), int(meta["end"]), chunk_text(text, meta))
        by_doc.setdefault(c.source, []).append((c, vec))
    store = a.store(create=True)
    for k in range(n):
        batch = []
        for source, items in by_doc.items():
            text, pages = src.document(source) or ("", ())
            doc = SourceText(f"{source}#{k}" if k else source, text, f"copy{k}", pages)
            items.sort(key=lambda cv: cv[0].index)
            batch.append((doc, [Chunk(doc.path, c.index, c.start, c.end, c.text) for c, _ in items],
                          [v for _, v in items]))
        store.add_chunks(batch)
        store.commit([(d, len(cs)) for d, cs, _ in batch], [])
    store.set_state(1, dirty=False)
    return a


def timed(fn: Any, questions: list[str]) -> list[float]:
    """Milliseconds of fn(question) for each question."""
    out = []
    for q in questions:
        t0 = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main(argv: list[str] | None = None) -> list[str]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks latency", description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="squad-dev")
    ap.add_argument("--sizes", default="1,10,50", help="copies of the ~2k-chunk base index")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--no-answers", action="store_true", help="time retrieval only")
    ap.add_argument("--keep", type=Path, help="build (or reuse) the indexes here instead of a temp folder")
    args = ap.parse_args(argv)
    questions = [t for _, t, _ in load_benchmark(DATA / args.dataset).queries[: args.queries]]
    rows = []
    with scratch() as tmp:
        root = args.keep or tmp
        base = base_index(root / "x1", args.dataset)
        for n in (int(x) for x in args.sizes.split(",")):
            a = copies(base, root / f"x{n}", n) if n > 1 else Assistant(index_dir=root / "x1")
            chunks = a.store().count()
            t0 = time.perf_counter()
            a.retriever().retrieve(questions[0], 5)
            first = time.perf_counter() - t0
            ret = timed(lambda q, a=a: a.retriever().retrieve(q, 5), questions)
            label = f"{chunks / 1000:.0f}k chunks" if chunks >= 10000 else f"{chunks} chunks"
            print(f"{label}: first query {first:.1f}s (opens the store, builds or loads BM25); retrieval p50 "
                  f"{pct(ret, 50):.1f} ms p95 {pct(ret, 95):.1f} ms", flush=True)
            rows.append(row(f"retrieval latency, {label}", f"p50 {pct(ret, 50):.0f} ms, p95 **{pct(ret, 95):.0f} ms**",
                            f"p95 < {TARGET_MS:.0f} ms at 100k"))
            print(rows[-1], flush=True)
            if not args.no_answers:
                a.ask(questions[0])
                ans = timed(a.ask, questions)
                rows.append(row(f"answer latency (extractive), {label}",
                                f"p50 {pct(ans, 50):.0f} ms, p95 {pct(ans, 95):.0f} ms", "—"))
                print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    main()
