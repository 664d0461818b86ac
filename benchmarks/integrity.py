"""What the index checks cost: the checks every open runs (SQLite header, PRAGMA quick_check, vector files)
and a backup, on a Chroma index of N chunk-like records (random vectors, ~700-character texts).

    python -m benchmarks integrity [--chunks 20000]

No embedding model is involved: the figures are the checks' own cost as the index grows.
"""

from __future__ import annotations

import argparse
import time

from .common import row, scratch


def main(argv: list[str]) -> list[str]:
    import chromadb
    import numpy as np
    from chromadb.config import Settings

    from qa.backup import backup
    from qa.integrity import check_segment_files, check_sqlite_header, check_sqlite_pages, precheck

    p = argparse.ArgumentParser(prog="python -m benchmarks integrity")
    p.add_argument("--chunks", type=int, default=20000)
    args = p.parse_args(argv)
    rows = []
    with scratch() as d:
        index = d / "index"
        client = chromadb.PersistentClient(path=str(index), settings=Settings(anonymized_telemetry=False))
        col = client.get_or_create_collection("documents", metadata={"hnsw:space": "cosine"})
        rng = np.random.default_rng(0)
        words = "the of harbour engine river council winter market signal orchard ledger".split()
        for i in range(0, args.chunks, 2000):
            n = min(2000, args.chunks - i)
            col.add(ids=[str(j) for j in range(i, i + n)], embeddings=rng.normal(size=(n, 384)).tolist(),
                    documents=[" ".join(rng.choice(words, 120)) for _ in range(n)],
                    metadatas=[{"source": f"/docs/{j // 40}.txt", "digest": "x" * 64, "index": j % 40,
                                "start": 0, "end": 700, "location": ""} for j in range(i, i + n)])
        size = sum(f.stat().st_size for f in index.rglob("*") if f.is_file())
        timings = {}
        for name, fn in (("header", check_sqlite_header), ("quick_check", check_sqlite_pages),
                         ("vector files", check_segment_files), ("precheck (all, at open)",
                                                                  lambda i: precheck(i, pages=True))):
            t = time.perf_counter()
            fn(index)
            timings[name] = time.perf_counter() - t
        t = time.perf_counter()
        backup(index, d / "backup")
        timings["qa backup"] = time.perf_counter() - t
        for name, s in timings.items():
            rows.append(row(f"integrity: {name}", f"{s * 1000:.0f} ms on {args.chunks} chunks "
                            f"({size / 1e6:.0f} MB index)", "open < 10% of a cold qa ask"))
    return rows


if __name__ == "__main__":
    print("\n".join(main([])))
