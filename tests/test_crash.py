"""SIGKILL during `qa ingest`: the next run finishes the job and the index equals a clean run's."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qa import Assistant

from .conftest import DATA, ROOT, needs_data

pytestmark = [pytest.mark.slow, needs_data]


def corpus_as_files(folder: Path, n: int) -> Path:
    folder.mkdir()
    with gzip.open(DATA / "squad-dev" / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for line, _ in zip(f, range(n)):
            d = json.loads(line)
            (folder / f"{d['_id']}.txt").write_text(f"{d['title']}\n\n{d['text']}", encoding="utf-8")
    return folder


def ingest(index: Path, docs: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "qa", "ingest", "--quiet", str(docs)], cwd=ROOT,
                            env={**os.environ, "QA_INDEX_DIR": str(index)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def snapshot(index: Path) -> tuple[list[tuple], set[str]]:
    a = Assistant(index_dir=index, retrieval="bm25")
    rows = sorted((m["source"], m["digest"], m["index"], m["start"], m["end"], t)
                  for _, t, m in a.store().all_chunks())
    bm25_ids = {c["node_id"] for c in a.retriever().bm25.get(1).corpus}
    return rows, bm25_ids


def kill_at_random_points(index: Path, docs: Path, rng: random.Random, took: float, runs: int,
                          latest: float) -> int:
    """Start `qa ingest` `runs` times, each SIGKILLed at a random point between 15% and `latest` of a clean
    run's time `took` unless it has finished by then; the number of kills."""
    kills = 0
    for _ in range(runs):
        p = ingest(index, docs)
        time.sleep(rng.uniform(0.15, latest) * took)  # a run after a kill has less left to do
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait()
    return kills


def test_kills_at_random_points_leave_a_repairable_index(tmp_path: Path, say) -> None:
    docs = corpus_as_files(tmp_path / "squad-docs", 800)
    clean = tmp_path / "clean"
    started = time.monotonic()
    p = ingest(clean, docs)
    assert p.wait(timeout=1800) == 0, p.stderr.read()
    took = time.monotonic() - started  # a whole ingest, start-up included: each kill lands inside one
    clean_rows, _ = snapshot(clean)

    crashed = tmp_path / "crashed"
    kills = kill_at_random_points(crashed, docs, random.Random(1234), took, 4, 0.6)
    p = ingest(crashed, docs)
    assert p.wait(timeout=1800) == 0, p.stderr.read()
    rows, bm25_ids = snapshot(crashed)
    a = Assistant(index_dir=crashed)
    ids = set(a.store().chunks.get(include=[])["ids"])
    say(f"\ncrash test: {kills} SIGKILLs survived; clean run {len(clean_rows)} chunks, "
          f"after kills {len(rows)} chunks, identical={rows == clean_rows}, bm25 in sync={bm25_ids == ids}")
    assert kills >= 1
    assert rows == clean_rows  # no duplicates, no orphans, no missing chunks
    assert bm25_ids == ids


def test_sigterm_stops_an_ingest_as_ctrl_c_does(tmp_path: Path) -> None:
    """`kill` (a service manager, `docker stop`) used to end `qa ingest` silently and leave its writer lease,
    which made the next ingest wait up to 300 s where the pid was alive again (a container's pid 1)."""
    from qa.store import WRITER_ID

    docs = corpus_as_files(tmp_path / "squad-docs", 400)
    index = tmp_path / "index"
    p = ingest(index, docs)
    deadline = time.monotonic() + 300
    while not (index / "chroma.sqlite3").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # well inside the ingest (a whole one takes over 10 s here)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "interrupted: the files indexed so far are kept" in err, (p.returncode, err)
    a = Assistant(index_dir=index)
    assert not a.store().files.get(ids=[WRITER_ID])["ids"]  # the claim was given up
    again = ingest(index, docs)
    out, err = again.communicate(timeout=1800)
    assert again.returncode == 0 and "400 in" not in err, err
    assert Assistant(index_dir=index).status().documents == 400
