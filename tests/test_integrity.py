"""A damaged index is reported in one line, never written to, and `--rebuild` gives back a working one."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from qa import Assistant
from qa.errors import IndexDamagedError, IndexVersionError
from qa.integrity import LAYOUT

from .conftest import ROOT, SEEDS

QUESTION = "Where will Putin travel after North Korea?"


def files(index: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file of the index folder with its SHA-256: two equal snapshots mean nothing was written."""
    return {str(p.relative_to(index)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(index.rglob("*")) if p.is_file() and not str(p.relative_to(index)).startswith(skip)}


def reopen(index: Path, like: Assistant) -> Assistant:
    a = Assistant(index_dir=index)
    a._embedder = like.embedder  # the same model, loaded once per test
    return a


def vector_folder(index: Path, collection: str = "documents") -> Path:
    con = sqlite3.connect(index / "chroma.sqlite3")
    seg = con.execute("SELECT s.id FROM segments s JOIN collections c ON s.collection = c.id "
                      "WHERE c.name = ? AND s.scope = 'VECTOR'", (collection,)).fetchone()[0]
    con.close()
    return index / seg


def overwrite(path: Path, offset: int, size: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(random.Random(19).randbytes(size))  # the same damage every run


def damage_sqlite_header(index: Path) -> None:
    overwrite(index / "chroma.sqlite3", 0, 4096)  # "a few KB overwritten", as a bad shutdown can do


def damage_sqlite_pages(index: Path) -> None:
    db = index / "chroma.sqlite3"
    overwrite(db, (db.stat().st_size // 4096 // 2) * 4096, 3 * 4096)


def damage_vector_files(index: Path) -> None:
    (vector_folder(index) / "header.bin").write_bytes(b"\x00" * 40)  # truncated


def damage_catalogue_record(index: Path) -> None:
    con = sqlite3.connect(index / "chroma.sqlite3")  # the record of seeds/ now vouches for 3 chunks too many
    con.execute("UPDATE embedding_metadata SET int_value = int_value + 3 WHERE key = 'chunks'")
    con.commit()
    con.close()


DAMAGE = {"sqlite header": (damage_sqlite_header, "does not start with an SQLite header"),
          "sqlite pages": (damage_sqlite_pages, "chroma.sqlite3"),
          "vector files": (damage_vector_files, "header.bin"),
          "catalogue record": (damage_catalogue_record, "the catalogue of 1 documents vouches for")}


NOTES_CHUNK = 32  # tokens: the notes make well over Chroma's sync threshold of 1,000 chunks


def write_notes(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    words = "harbour lantern orchard meadow river stone copper violet ember falcon willow tundra".split()
    r = random.Random(3)
    (folder / "notes.txt").write_text("".join(
        f"Note {i}. " + " ".join(r.choice(words) for _ in range(30)) + ".\n\n" for i in range(1100)))
    return folder


@pytest.fixture(scope="module")
def persisted_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed article and 1,100 short notes: over the sync threshold, so Chroma writes its vector files."""
    index = tmp_path_factory.mktemp("persisted") / "index"
    notes = write_notes(tmp_path_factory.mktemp("notes"))
    Assistant(index_dir=index, chunk_size=NOTES_CHUNK).ingest(SEEDS, notes)
    return index


@pytest.fixture
def persisted(persisted_index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Assistant:
    index = tmp_path / "persisted-index"
    shutil.copytree(persisted_index, index)
    monkeypatch.setenv("QA_CHUNK_SIZE", str(NOTES_CHUNK))  # a rebuild chunks as the index was built
    return Assistant(index_dir=index)


@pytest.mark.parametrize("part", list(DAMAGE))
def test_damage_is_one_line_nothing_is_written_and_rebuild_answers_like_clean(
        request: pytest.FixtureRequest, part: str) -> None:
    # Chroma reads vector files only once it has persisted them (a row in max_seq_id); the 8-chunk seed index
    # keeps its vectors in the log, so damage to its files would change nothing.
    seeded = request.getfixturevalue("persisted" if part == "vector files" else "seeded")
    index = Path(seeded.settings.index_dir)
    clean = seeded.ask(QUESTION).to_dict()
    documents = len(seeded.documents())
    kept = seeded.conversation()  # a saved conversation: the readers' own, not derived from the documents
    kept.ask(QUESTION)
    damage, what = DAMAGE[part]
    damage(index)
    before = files(index)

    damaged = reopen(index, seeded)
    with pytest.raises(IndexDamagedError) as asked:
        damaged.ask(QUESTION)
    message = str(asked.value)
    assert "\n" not in message and "qa ingest --rebuild" in message and str(index) in message
    assert what in message  # names the damaged part
    with pytest.raises(IndexDamagedError):
        damaged.ingest(SEEDS)
    failed = [c for c in damaged.check() if not c.ok]
    assert failed, "qa status --check must report the damage"
    assert files(index) == before  # asking, ingesting and checking wrote nothing

    # Without a readable catalogue (its pages overwritten) it does not know the files: the user names them.
    from qa.backup import catalogue_sources

    paths = [] if catalogue_sources(index, "documents") else [SEEDS]
    assert paths == [] or part.startswith("sqlite")
    report = reopen(index, seeded).rebuild(*paths)
    moved = Path(report.moved_to)
    assert moved.name.startswith(f"{index.name}.damaged-") and files(moved) == before  # kept as it was
    assert report.report.count("added") == documents and not report.missing
    rebuilt = reopen(index, seeded)
    assert rebuilt.ask(QUESTION).to_dict() == clean
    assert all(c.ok for c in rebuilt.check())
    assert [t.question for t in rebuilt.conversation(kept.id).turns] == [QUESTION]  # taken along (was left behind)


@pytest.mark.slow
def test_rebuild_keeps_the_key_of_the_readers_ui_settings(seeded: Assistant) -> None:
    """`qa ingest --rebuild` left the chat UI's key (`ui-secret`) in the moved-aside folder: the next `qa serve`
    drew a new one, and every browser's saved settings, scope and open conversation were lost."""
    from qa.serving.ui import browser_secret

    index = Path(seeded.settings.index_dir)
    key = browser_secret(index)  # as `qa serve` makes it
    assert key
    r = run_qa("ingest", "--rebuild", index=index)
    assert r.returncode == 0, r.stderr
    assert (index / "ui-secret").stat().st_mode & 0o777 == 0o600
    assert browser_secret(index) == key


def run_qa(*args: str, index: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qa", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "QA_INDEX_DIR": str(index)}, timeout=600)


@pytest.mark.slow
def test_cli_says_what_is_wrong_and_rebuild_prints_where_the_old_index_went(seeded: Assistant) -> None:
    index = Path(seeded.settings.index_dir)
    clean = run_qa("ask", "--json", QUESTION, index=index)
    assert clean.returncode == 0, clean.stderr
    damage_sqlite_header(index)
    before = files(index)
    for args in (["ask", QUESTION], ["status"], ["ingest", str(SEEDS)]):
        r = run_qa(*args, index=index)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1, r.stderr
        assert lines[0].startswith(f"error: The index at {index} is damaged: chroma.sqlite3 does not start "
                                   "with an SQLite header") and "Run: qa ingest --rebuild" in lines[0]
        assert "Traceback" not in r.stderr
    check = run_qa("status", "--check", index=index)
    assert check.returncode == 1 and "FAIL  sqlite:" in check.stdout
    assert files(index) == before

    r = run_qa("ingest", "--rebuild", "--quiet", index=index)  # the catalogue is in the overwritten page
    assert r.returncode == 1 and "qa ingest --rebuild PATH" in r.stderr and files(index) == before
    r = run_qa("ingest", "--rebuild", "--quiet", str(SEEDS), index=index)
    assert r.returncode == 0, r.stderr
    moved = next(line.split(" to ", 1)[1].split(" (")[0] for line in r.stdout.splitlines() if "moved" in line)
    assert Path(moved).is_dir() and files(Path(moved)) == before
    assert "1 added" in r.stdout
    again = run_qa("ask", "--json", QUESTION, index=index)
    assert again.returncode == 0 and again.stdout == clean.stdout
    assert run_qa("status", "--check", index=index).stdout.strip().endswith("index is healthy")


def test_damaged_bm25_copy_is_reported_then_rebuilt_from_chroma(seeded: Assistant) -> None:
    index = Path(seeded.settings.index_dir)
    clean = seeded.ask(QUESTION).to_dict()
    copy = index / "bm25" / "documents"
    assert (copy / "generation.json").exists()
    corpus = copy / "corpus.jsonl"
    corpus.write_bytes(corpus.read_bytes()[: corpus.stat().st_size // 3])  # cut short
    chroma = files(index, skip=("bm25",))

    damaged = reopen(index, seeded)
    bm25 = next(c for c in damaged.check() if c.name == "bm25")
    assert not bm25.ok and "BM25 copy" in bm25.detail
    # The copy is derived data: the next question rebuilds it from Chroma and answers as before.
    assert damaged.ask(QUESTION).to_dict() == clean
    assert files(index, skip=("bm25",)) == chroma  # Chroma's files untouched
    assert all(c.ok for c in reopen(index, seeded).check())


def test_an_upload_a_stopped_server_had_not_indexed_is_pending_not_damage(seeded: Assistant, tmp_path: Path) -> None:
    """Uploads are put in place whole (a rename from staging) when their job starts: a server killed before the
    job's commit leaves a newer file than the index holds. The check says it waits, the next server indexes
    it, and a rebuild indexes it as it is (it used to drop it as "half-written", and the check advised that
    rebuild)."""
    from qa.serving.server import resume_uploads
    from qa.serving.writer import Writer

    index = Path(seeded.settings.index_dir)
    uploads = index / "uploads"
    uploads.mkdir()
    upload = uploads / "harbour.txt"
    upload.write_text("The harbour of Valdoria was rebuilt in 1923 by the engineer Ilse Marrow. " * 20)
    seeded.ingest(upload)
    assert "Ilse Marrow" in seeded.ask("Who rebuilt the harbour of Valdoria?").answer
    upload.write_text("The harbour of Valdoria was rebuilt in 1931 by the engineer Oskar Brandt. " * 20)
    (uploads / "quay.txt").write_text("The quay of Valdoria is 412 metres long and was paved with basalt.")
    before = files(index)

    stopped = reopen(index, seeded)
    result = next(c for c in stopped.check() if c.name == "uploads")
    assert result.ok and "2 not indexed yet" in result.detail and "qa serve indexes them" in result.detail
    assert [p.name for p in stopped.pending_uploads()] == ["harbour.txt", "quay.txt"]
    assert "Ilse Marrow" in stopped.ask("Who rebuilt the harbour of Valdoria?").answer  # the index is intact
    assert files(index) == before  # checking wrote nothing

    writer = Writer(stopped)  # what `qa serve` does when it starts
    job = resume_uploads(stopped, writer)
    assert job is not None and writer.wait(job.id, timeout=300).state == "done"
    writer.close()
    assert stopped.pending_uploads() == []
    assert "Oskar Brandt" in stopped.ask("Who rebuilt the harbour of Valdoria?").answer
    assert "412" in stopped.ask("How long is the quay of Valdoria?").answer

    upload.write_text("The harbour of Valdoria was rebuilt in 1947 by the engineer Maren Holt. " * 20)
    report = reopen(index, seeded).rebuild()
    assert not report.missing
    rebuilt = reopen(index, seeded)
    assert "Maren Holt" in rebuilt.ask("Who rebuilt the harbour of Valdoria?").answer
    assert all(c.ok for c in rebuilt.check()) and rebuilt.pending_uploads() == []


def test_uploads_a_killed_server_had_queued_are_indexed_by_the_next_once(seeded: Assistant) -> None:
    """Queued uploads wait in staging folders (put in place when their job runs). A server killed with uploads
    queued left them there for good, never indexed; its successor queued an upload of its own twice when it
    came in during start-up (placed by its job, not yet indexed, so it looked left over)."""
    import io

    from qa.serving.server import resume_uploads
    from qa.serving.uploads import STAGING, stage
    from qa.serving.writer import Writer

    from .test_writer import GatedAssistant

    index = Path(seeded.settings.index_dir)
    uploads = index / "uploads"
    # A server process that staged two uploads (its jobs queued) and was killed.
    killed = ("import io, os, sys; from pathlib import Path; from qa.serving.uploads import stage; "
              "u = Path(sys.argv[1]); "
              "stage([('mill.txt', io.BytesIO(b'The mill of Orsk grinds 40 tonnes of rye a day.'))], u, 10); "
              "stage([('kiln.txt', io.BytesIO(b'The kiln of Orsk was fired first in 1788.'))], u, 10); os._exit(9)")
    assert subprocess.run([sys.executable, "-c", killed, str(uploads)], cwd=ROOT, timeout=120).returncode == 9
    assert len([d for d in (uploads / STAGING).iterdir() if d.is_dir()]) == 2
    # A live replica's queued upload (its lock held) is its own.
    live = stage([("replica.txt", io.BytesIO(b"The replica's upload."))], uploads, 10)

    stopped = reopen(index, seeded)
    writer = Writer(stopped)
    job = resume_uploads(stopped, writer)
    assert job is not None and sorted(Path(f).name for f in job.files) == ["kiln.txt", "mill.txt"]
    assert writer.wait(job.id, timeout=300).state == "done"
    writer.close()
    assert "40 tonnes" in stopped.ask("How much rye does the mill of Orsk grind?").answer
    assert "1788" in stopped.ask("When was the kiln of Orsk fired first?").answer
    assert live.folder.exists() and not (uploads / "replica.txt").exists()
    assert sorted(p.name for p in (uploads / STAGING).iterdir()) == sorted([live.folder.name, live.folder.name + ".lock"])

    # An upload this server's writer is indexing right now (in place, not yet committed) is not queued again.
    gated = GatedAssistant()
    busy = Writer(gated)  # type: ignore[arg-type]
    (uploads / "own.txt").write_text("An upload of this server, being indexed.")
    own = busy.submit([uploads / "own.txt"])
    assert gated.started.acquire(timeout=10)
    assert stopped.pending_uploads() == [uploads / "own.txt"] and resume_uploads(stopped, busy) is None
    assert [j.id for j in busy.jobs()] == [own.id]
    gated.gates[0].set()
    busy.close()


def test_a_write_waits_its_turn_before_it_reads_the_pages_another_thread_is_writing(seeded: Assistant,
                                                                                  tmp_path: Path) -> None:
    """`qa serve` removed a document while its writer thread indexed an upload: the removal's page check read,
    through Python's SQLite, pages Chroma's SQLite was writing in the same process (their file locks do not see
    each other), and the upload failed with "The index at ... is damaged: database disk image is malformed"."""
    import threading

    from qa import integrity
    from qa.errors import IndexBusyError

    doc = tmp_path / "long.txt"
    doc.write_text("".join(f"Paragraph {i} tells of the granary of Tolvek and its {i} sacks.\n\n" for i in range(400)))
    index = Path(seeded.settings.index_dir)
    writing, go_on = threading.Event(), threading.Event()
    checked_while_writing = []
    real = integrity.precheck

    def precheck(*a: object, **kw: object) -> None:
        checked_while_writing.append(writing.is_set() and not go_on.is_set())
        real(*a, **kw)

    def progress(done: float, total: int, item: str) -> None:
        writing.set()
        go_on.wait(30)

    integrity.precheck = precheck  # type: ignore[assignment]
    try:
        ingest = threading.Thread(target=seeded.ingest, args=(doc,), kwargs={"progress": progress})
        ingest.start()
        assert writing.wait(60)
        with pytest.raises(IndexBusyError):
            reopen(index, seeded).remove(str(SEEDS / "putin-north-korea-letter.txt"))
        go_on.set()
        ingest.join(120)
    finally:
        integrity.precheck = real  # type: ignore[assignment]
    assert not any(checked_while_writing)
    assert "Tolvek" in seeded.ask("What does paragraph 7 tell of?").answer


def _set_state(index: Path, like: Assistant, **meta: object) -> None:
    store = reopen(index, like).store()
    got = store.files.get(ids=["\x00state"], include=["metadatas"])
    new = {k: v for k, v in {**got["metadatas"][0], **meta}.items() if v is not None}
    store.files.delete(ids=["\x00state"])
    store.files.add(ids=["\x00state"], documents=[""], embeddings=[[0.0]], metadatas=[new])


def test_index_from_a_newer_qa_is_refused_with_how_to_go_on(seeded: Assistant) -> None:
    index = Path(seeded.settings.index_dir)
    _set_state(index, seeded, layout=99, qa_version="9.0.0")
    before = files(index)
    newer = reopen(index, seeded)
    with pytest.raises(IndexVersionError, match=r"written by qa 9\.0\.0 in index layout 99.*Upgrade qa"):
        newer.ask(QUESTION)
    with pytest.raises(IndexVersionError):
        newer.ingest(SEEDS)
    assert files(index) == before
    assert reopen(index, seeded).rebuild().report.count("added") == 1  # rebuilt for this version


def test_older_layout_is_read_and_stamped_at_the_next_ingest(seeded: Assistant, tmp_path: Path) -> None:
    index = Path(seeded.settings.index_dir)
    clean = seeded.ask(QUESTION).to_dict()
    _set_state(index, seeded, layout=None, qa_version=None)  # as written before layouts were recorded
    old = reopen(index, seeded)
    assert "older layout" in next(c.detail for c in old.check() if c.name == "version")
    assert old.ask(QUESTION).to_dict() == clean
    extra = tmp_path / "note.txt"
    extra.write_text("The lighthouse keeper of Orvik is named Tomas Brell.")
    old.ingest(extra)
    version = next(c for c in reopen(index, seeded).check() if c.name == "version")
    assert version.ok and version.detail.startswith(f"layout {LAYOUT}, written by qa ")


def test_vector_files_chroma_has_not_persisted_yet_are_not_called_damage(seeded: Assistant) -> None:
    """A SIGKILL during Chroma's first write of a segment's files can leave a 0-byte header.bin. Chroma has not
    recorded that segment as persisted (no max_seq_id row) and answers from its log: not damage."""
    index = Path(seeded.settings.index_dir)
    before = seeded.ask(QUESTION).to_dict()
    (vector_folder(index) / "header.bin").write_bytes(b"")
    again = reopen(index, seeded)
    assert again.ask(QUESTION).to_dict() == before
    assert all(c.ok for c in again.check())
    assert again.ingest(SEEDS).count("unchanged") == 1


def test_truncated_vector_file_is_caught_although_chroma_would_answer_from_it(tmp_path: Path) -> None:
    """A persisted HNSW segment (over Chroma's sync threshold) cut short: Chroma still answers, wrongly."""
    import chromadb
    import numpy as np
    from chromadb.config import Settings

    from qa.integrity import check_segment_files

    index = tmp_path / "raw"
    client = chromadb.PersistentClient(path=str(index), settings=Settings(anonymized_telemetry=False))
    col = client.get_or_create_collection("documents", metadata={"hnsw:space": "cosine"})
    vectors = np.random.default_rng(0).normal(size=(1500, 16))
    for i in range(0, 1500, 500):
        col.add(ids=[str(j) for j in range(i, i + 500)], embeddings=vectors[i:i + 500].tolist())
    assert check_segment_files(index).ok
    data = vector_folder(index) / "data_level0.bin"
    assert data.stat().st_size > 0
    del client, col
    shutil.copytree(index, tmp_path / "damaged")
    damaged = vector_folder(tmp_path / "damaged") / "data_level0.bin"
    os.truncate(damaged, damaged.stat().st_size // 2)
    result = check_segment_files(tmp_path / "damaged")
    assert not result.ok and "data_level0.bin" in result.detail and "truncated" in result.detail


_KILLED_WRITER = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1])
con.execute("PRAGMA cache_size=1")  # the change spills into the file: the journal left behind is hot
con.execute("BEGIN")
con.execute("UPDATE embedding_metadata SET string_value = string_value || 'x' WHERE key = 'source'")
con.execute("CREATE TABLE scratch(x)")
con.executemany("INSERT INTO scratch VALUES (?)", [("y" * 200,)] * 20000)
print("inside", flush=True)
time.sleep(60)
"""


def test_a_write_killed_mid_transaction_is_rolled_back_not_called_damage(seeded: Assistant) -> None:
    """A process killed inside an SQLite transaction (`qa ingest` under SIGKILL, a power cut) leaves a hot
    journal. The read-only checks cannot roll it back ("attempt to write a readonly database"); that is an
    interrupted write, which Chroma's next connection rolls back, not a damaged index."""
    import signal

    index = Path(seeded.settings.index_dir)
    before = seeded.ask(QUESTION)
    seeded._store = None
    p = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(index / "chroma.sqlite3")],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "inside"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert (index / "chroma.sqlite3-journal").exists()
    a = reopen(index, seeded)
    assert a.ask(QUESTION).answer == before.answer
    assert a.ingest(SEEDS).count("unchanged") >= 1
    assert all(c.ok for c in a.check())


def test_a_file_shorter_than_its_header_says_is_damage_unless_a_journal_is_rolling_it_back(
        seeded: Assistant, tmp_path: Path) -> None:
    """SIGKILL during a commit can leave the file shorter than its header says, beside the hot journal that
    restores it: an interrupted write. The same file without a journal is truncated: damage."""
    from qa.integrity import check_sqlite_header

    index = tmp_path / "copy"
    shutil.copytree(seeded.settings.index_dir, index)
    db = index / "chroma.sqlite3"
    page = int.from_bytes(db.read_bytes()[16:18], "big")
    with open(db, "r+b") as f:
        f.truncate(db.stat().st_size - 3 * page)
    assert not check_sqlite_header(index).ok and "truncated" in check_sqlite_header(index).detail
    (index / "chroma.sqlite3-journal").write_bytes(b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7" + b"\x00" * 504)
    assert check_sqlite_header(index).ok and "interrupted write" in check_sqlite_header(index).detail


def test_an_interrupted_ingest_is_not_called_damage(seeded: Assistant, tmp_path: Path) -> None:
    """Killed mid-ingest, Chroma holds chunks no record vouches for yet (and the BM25 copy rightly not): the
    check says the next run repairs it, instead of sending the user to a full rebuild."""
    from qa.reading.formats import SourceText

    index = Path(seeded.settings.index_dir)
    seeded.ask(QUESTION)  # the BM25 copy of this generation
    a = reopen(index, seeded)
    store = a.store()
    state = store.state()
    store.set_state(state["generation"], dirty=True)  # as an ingest does before it writes
    text = "A half-indexed note about herons."
    note = SourceText(path=str(tmp_path / "note.txt"), text=text, digest="d" * 64)
    from qa.reading.formats import Chunk

    store.add_chunks([(note, [Chunk(source=note.path, index=0, start=0, end=len(text), text=text)],
                       a.embedder.get_text_embedding_batch([text]))])  # killed before the commit
    checks = {c.name: c for c in reopen(index, seeded).check()}
    assert checks["bm25"].ok and "interrupted" in checks["bm25"].detail, checks["bm25"]
    before = seeded.status()
    after = reopen(index, seeded).status()  # the uncommitted chunk is not counted (qa docs agrees)
    assert after.chunks == before.chunks == sum(d.chunks for d in a.documents()) and after.documents == before.documents
