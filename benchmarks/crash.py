"""SIGKILLs at random points of big ingests: does the next run repair the index, chunk for chunk?

    python -m benchmarks crash [--docs 2067] [--trials 4] [--kills 4] [--seed 7]

Each trial ingests the first N squad-dev paragraphs (one file each) into a fresh index, kills `qa ingest`
up to K times at a random point (15-70% of a clean run's time), then lets one run finish and compares every
chunk (source, digest, index, offsets, text) and the BM25 copy with a clean run's index. At 2,067 paragraphs
(3,065 chunks) Chroma writes its vector files three times, so kills land in later writes too, which the
slow test (`tests/test_crash.py`, 800 paragraphs, one write) does not reach.
"""

from __future__ import annotations

import argparse
import random
import time

from .common import row, scratch


def main(argv: list[str]) -> list[str]:
    from qa import Assistant
    from tests.test_crash import corpus_as_files, ingest, kill_at_random_points, snapshot

    p = argparse.ArgumentParser(prog="python -m benchmarks crash")
    p.add_argument("--docs", type=int, default=2067)
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--kills", type=int, default=4)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    with scratch() as d:
        docs = corpus_as_files(d / "docs", args.docs)
        started = time.monotonic()
        clean = ingest(d / "clean", docs)
        if clean.wait() != 0:
            raise SystemExit(f"the clean ingest failed: {clean.stderr.read().strip()[-300:]}")
        took = time.monotonic() - started
        clean_rows, _ = snapshot(d / "clean")
        kills = repaired = 0
        failures: list[str] = []
        for trial in range(args.trials):
            index = d / f"crashed-{trial}"
            kills += kill_at_random_points(index, docs, rng, took, args.kills, 0.7)
            last = ingest(index, docs)
            if last.wait() != 0:
                failures.append(f"trial {trial}: {last.stderr.read().strip()[-200:]}")
                continue
            rows, bm25 = snapshot(index)
            ids = set(Assistant(index_dir=index).store().chunks.get(include=[])["ids"])
            if rows == clean_rows and bm25 == ids:
                repaired += 1
            else:
                failures.append(f"trial {trial}: {len(rows)} chunks against {len(clean_rows)}")
        for f in failures:
            print(f)
    figure = (f"**{repaired}/{args.trials}** trials repaired chunk for chunk after {kills} SIGKILLs "
              f"({len(clean_rows)} chunks; a clean ingest {took:.0f} s)")
    return [row("crash: kills during big ingests", figure, f"{args.trials}/{args.trials}")]


if __name__ == "__main__":
    print("\n".join(main([])))
