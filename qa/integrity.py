"""Index health: find a damaged, foreign or newer index before anything reads or writes it.

Every check returns a `Check`; `damage()` turns the first failed one (or a Chroma error) into the
one-line `IndexDamagedError` the CLI, the HTTP API and the UI show. The SQLite file is only ever
opened read-only here, so checking never changes a damaged index.
"""

from __future__ import annotations

import errno
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import openfiles
from .diskspace import is_disk_full, nearly_full
from .errors import DiskFullError, EmbeddingMismatchError, IndexDamagedError, IndexVersionError, QAError
from .reading.formats import file_digest
from .types import Check

# 1: indexes written before the layout was recorded (same format: read as they are, stamped on the
# next ingest); 2: qa version and layout kept in the state record; 3: a catalogue record packs the fields
# it only shows into one string (qa.store.record), which a qa reading layout 2 would show without pages
# or titles. This qa reads all three; records of before stay as they are.
LAYOUT = 3
REBUILD = "Run: qa ingest --rebuild (it moves the damaged index aside, never deletes it)"
SQLITE_MAGIC = b"SQLite format 3\x00"
HNSW_FILES = ("header.bin", "data_level0.bin", "length.bin", "link_lists.bin")
# header.bin of Chroma's hnswlib fork: a format version (uint32), then hnswlib's header: offsetLevel0,
# max_elements, cur_element_count, size_data_per_element, label_offset, offsetData (size_t), maxlevel (int),
# enterpoint_node (uint), maxM, maxM0, M (size_t), mult (double), ef_construction (size_t). data_level0.bin
# holds cur_element_count * size_data_per_element bytes, length.bin 4 bytes per element.
_HNSW_HEADER = struct.Struct("<I6QiI3QdQ")


def qa_version() -> str:
    """The installed qa's version, recorded in every index it writes."""
    import qa

    return qa.__version__


def _connect(db: Path) -> sqlite3.Connection:
    """A read-only connection: checking must never write (no journal, no WAL checkpoint)."""
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)


INTERRUPTED_WRITE = "an interrupted write, which SQLite rolls back when the index next opens for writing"


def _interrupted_write(e: sqlite3.Error) -> bool:
    """Whether a read-only connection failed only because a write was cut off (a process killed inside a
    transaction leaves a hot journal that only a writer may roll back): not damage."""
    return str(getattr(e, "sqlite_errorname", "")).startswith("SQLITE_READONLY") or "readonly database" in str(e)


# --- file-level checks: cheap, run before Chroma opens the folder -----------------------------------
def check_sqlite_header(index_dir: Path) -> Check:
    """The SQLite file starts with SQLite's header and is a whole number of pages."""
    db = index_dir / "chroma.sqlite3"
    try:
        with open(db, "rb") as f:
            head = f.read(100)
        size = db.stat().st_size
    except OSError as e:
        return Check("sqlite", False, f"cannot read {db.name}: {e.strerror}")
    if len(head) < 100 or head[:16] != SQLITE_MAGIC:
        return Check("sqlite", False, f"{db.name} does not start with an SQLite header (overwritten?)")
    journal = db.with_name(db.name + "-journal")
    if journal.exists() and journal.stat().st_size > 0:
        # A write in progress or cut off: until its journal is rolled back the file may be shorter or longer
        # than its header says, which is not damage.
        return Check("sqlite", True, f"{db.name}: header sane; {INTERRUPTED_WRITE}")
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    if page < 512 or size % page:
        return Check("sqlite", False, f"{db.name} is not a whole number of {page}-byte pages (truncated?)")
    if pages and int.from_bytes(head[24:28], "big") == int.from_bytes(head[92:96], "big") and pages * page > size:
        return Check("sqlite", False, f"{db.name} has {size // page} of its {pages} pages (truncated)")
    return Check("sqlite", True, f"{db.name}: header sane, {size // page} pages of {page} bytes")


def check_sqlite_pages(index_dir: Path) -> Check:
    """SQLite's own `PRAGMA quick_check` over every page (reads the whole file)."""
    db = index_dir / "chroma.sqlite3"
    try:
        con = _connect(db)
        try:
            rows = [r[0] for r in con.execute("PRAGMA quick_check(5)")]
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        if _interrupted_write(e):
            return Check("sqlite pages", True, f"{db.name}: {INTERRUPTED_WRITE}")
        return Check("sqlite pages", False, f"{db.name}: {e}")
    if rows != ["ok"]:
        return Check("sqlite pages", False, f"{db.name}: {' '.join(' '.join(rows).split())[:200]}")
    return Check("sqlite pages", True, f"{db.name}: PRAGMA quick_check ok")


def vector_segments(index_dir: Path) -> list[tuple[str, str, bool]]:
    """(segment id, collection name, whether Chroma has recorded its files as written) of every vector segment.

    A segment is written once it has a row in `max_seq_id`; if that table cannot be read, every segment counts
    as written (its files are checked)."""
    con = _connect(index_dir / "chroma.sqlite3")
    try:
        segs = con.execute(
            "SELECT s.id, c.name FROM segments s JOIN collections c ON s.collection = c.id "
            "WHERE s.scope = 'VECTOR'").fetchall()
        try:
            written = {row[0] for row in con.execute("SELECT segment_id FROM max_seq_id")}
        except sqlite3.DatabaseError:
            return [(seg, name, True) for seg, name in segs]
        return [(seg, name, seg in written) for seg, name in segs]
    finally:
        con.close()


def check_segment_files(index_dir: Path) -> Check:
    """Each persisted HNSW segment folder has its four files, each as long as its header says."""
    try:
        segments = vector_segments(index_dir)
    except sqlite3.DatabaseError as e:
        if _interrupted_write(e):
            return Check("vector files", True, f"not checked: {INTERRUPTED_WRITE}")
        return Check("vector files", False, f"cannot list the vector segments: {e}")
    problems, seen = [], 0
    for seg, name, written in segments:
        folder = index_dir / seg
        if not written or not folder.is_dir():
            # Not persisted yet: Chroma keeps a small collection's vectors in its log and ignores the files in
            # this folder (empty ones, or half-written ones when a kill landed in its first persist).
            continue
        seen += 1
        problem = _hnsw_problem(folder)
        if problem:
            problems.append(f"collection {name!r} ({seg[:8]}…): {problem}")
    if problems:
        return Check("vector files", False, "; ".join(problems))
    waiting = sum(not written for _, _, written in segments)
    return Check("vector files", True, f"{seen} vector segment folder(s) complete" + (
        f"; {waiting} not written yet (Chroma keeps a small collection's vectors in its log)" if waiting else ""))


def _hnsw_problem(folder: Path) -> str | None:
    sizes = {}
    for f in HNSW_FILES:
        try:
            sizes[f] = (folder / f).stat().st_size
        except OSError:
            return f"{f} is missing"
    try:
        with open(folder / "header.bin", "rb") as fh:
            raw = fh.read(_HNSW_HEADER.size)
    except OSError as e:
        return f"header.bin unreadable ({e.strerror})"
    if len(raw) < _HNSW_HEADER.size:
        return f"header.bin is {len(raw)} bytes, shorter than a header (truncated)"
    (_, _, max_elements, count, per_element, _, _, _, _, _, _, m, _, _) = _HNSW_HEADER.unpack(raw)
    if count > max_elements or not 0 < per_element < 1 << 20 or not 0 < m < 1 << 12:
        return "header.bin holds impossible values (overwritten?)"
    if sizes["data_level0.bin"] < count * per_element:
        return (f"data_level0.bin is {sizes['data_level0.bin']} bytes, {count} vectors need "
                f"{count * per_element} (truncated)")
    if sizes["length.bin"] < count * 4:
        return f"length.bin is {sizes['length.bin']} bytes, {count} vectors need {count * 4} (truncated)"
    pickle = folder / "index_metadata.pickle"  # Chroma's id map, when it has written one
    try:
        if pickle.exists():
            with open(pickle, "rb") as fh:
                fh.seek(-1, 2)
                if fh.read(1) != b".":  # every pickle ends with the STOP opcode
                    return "index_metadata.pickle is cut short (truncated)"
    except OSError as e:
        return f"index_metadata.pickle unreadable ({e.strerror or 'empty'})"
    return None


# --- checks that read the collections through Chroma -------------------------------------------------
def check_version(meta: dict[str, Any], where: str) -> Check:
    """The layout recorded in the state record is one this qa reads."""
    layout = int(meta.get("layout", 1))
    written_by = meta.get("qa_version", "before 0.1.0")
    if layout > LAYOUT:
        return Check("version", False, f"written by qa {written_by} in index layout {layout}; this qa "
                     f"{qa_version()} reads layouts up to {LAYOUT}")
    note = "" if layout == LAYOUT else " (older layout: read as it is, recorded at the next ingest)"
    return Check("version", True, f"layout {layout}, written by qa {written_by}{note}")


def check_catalogue(store: Any, full: bool) -> Check:
    """Chunks match the catalogue: the total (cheap), or per document and digest (`full`)."""
    from .store import _get_all

    try:
        records = store.records()
        if store.state()["dirty"]:
            return Check("catalogue", True, f"{len(records)} documents; an ingest is running or was "
                         "interrupted: the next ingest tidies its uncommitted chunks")
        total = store.count()
    except (KeyError, ValueError, TypeError) as e:
        return Check("catalogue", False, f"a catalogue record is unreadable ({type(e).__name__}: {e})")
    expected = sum(r.chunks for r in records.values())
    if total != expected:
        return Check("catalogue", False, f"{total} chunks in the index, the catalogue of {len(records)} "
                     f"documents vouches for {expected}")
    if full:
        seen: dict[tuple[str, str], int] = {}
        for _, _, m in _get_all(store.chunks, ["metadatas"]):
            key = (m.get("source", ""), m.get("digest", ""))
            seen[key] = seen.get(key, 0) + 1
        bad = [s for s, r in records.items() if seen.get((s, r.digest), 0) != r.chunks]
        if bad:
            return Check("catalogue", False, f"{len(bad)} catalogue record(s) do not match their chunks, "
                         f"e.g. {bad[0]}")
    return Check("catalogue", True, f"{len(records)} documents, {total} chunks, as catalogued")


def check_bm25(store: Any, cache_dir: Path) -> Check:
    """The BM25 copy beside the index holds the same chunks as Chroma (or is stale and rebuilt on use)."""
    import json

    stamp_file = cache_dir / "generation.json"
    if not stamp_file.exists():
        return Check("bm25", True, "no BM25 copy yet: built at the first question")
    try:
        stamp = json.loads(stamp_file.read_text())
        state = store.state()
        if state["dirty"]:  # Chroma holds chunks no record vouches for yet; the copy does not, rightly
            return Check("bm25", True, "an ingest was interrupted: the next run drops its uncommitted chunks "
                                       "and rebuilds the BM25 copy")
        from .retrieval import _bm25_class, bm25_stamp

        if stamp != bm25_stamp(store, state["generation"]):
            return Check("bm25", True, "BM25 copy is of an earlier generation: rebuilt at the next question")

        retriever = _bm25_class().from_persist_dir(str(cache_dir), show_progress=False)
        ids = {c["node_id"] for c in retriever.corpus}
    except Exception as e:  # noqa: BLE001 - any failure to load the copy is what this check reports
        return Check("bm25", False, f"BM25 copy in {cache_dir} is unreadable ({type(e).__name__})")
    chroma = set(store.chunks.get(include=[])["ids"])
    if ids != chroma:
        return Check("bm25", False, f"BM25 copy holds {len(ids)} chunks, Chroma {len(chroma)} "
                     f"({len(ids ^ chroma)} differ)",
                     fix=f"delete {cache_dir} (a copy of the index's text: the next question rebuilds it)")
    return Check("bm25", True, f"BM25 copy holds the same {len(ids)} chunks as Chroma")


def _uploaded(uploads: Path) -> list[Path]:
    """The uploaded files, in order (not the staging folder or other hidden entries)."""
    return sorted(p for p in uploads.iterdir() if p.is_file() and not p.name.startswith(".")) \
        if uploads.is_dir() else []


def unindexed_uploads(records: dict[str, Any], uploads: Path, files: list[Path] | None = None) -> list[Path]:
    """Uploaded files (`files`, else all of them) the index does not hold as they are: put in place by a server
    that stopped before it indexed them (a file its ingest refuses is deleted again, so anything else here is
    pending)."""
    out = []
    for f in _uploaded(uploads) if files is None else files:
        rec = records.get(str(f.absolute()))
        if rec is None or rec.digest != file_digest(f):
            out.append(f)
    return out


def check_uploads(store: Any, uploads: Path) -> Check:
    """Uploaded files are the ones their catalogue records vouch for, or wait to be indexed."""
    if not uploads.is_dir():
        return Check("uploads", True, "no uploads")
    files = _uploaded(uploads)
    pending = unindexed_uploads(store.records(), uploads, files)
    n = len(files) - len(pending)
    extra = (f"; {len(pending)} not indexed yet, e.g. {pending[0].name} (qa serve indexes them when it starts, "
             f"or run: qa ingest {uploads})") if pending else ""
    return Check("uploads", True, f"{n} uploaded file(s) match the catalogue{extra}")


# --- putting it together ------------------------------------------------------------------------------
def precheck(index_dir: Path, pages: bool = False) -> None:
    """Raise IndexDamagedError if the files of an embedded index are visibly damaged (before Chroma opens it)."""
    if not (index_dir / "chroma.sqlite3").exists():
        return
    checks = [check_sqlite_header]
    if pages:
        checks.append(check_sqlite_pages)
    checks.append(check_segment_files)
    for c in checks:
        result = c(index_dir)
        if not result.ok:
            if openfiles.near_limit():  # the check could not open the files, which says nothing of them
                raise openfiles.too_many(index_dir)
            raise damaged(index_dir, result.detail)


def damaged(where: Path | str, what: str) -> IndexDamagedError:
    """The one-line error for a damaged index."""
    return IndexDamagedError(f"The index at {where} is damaged: {what}. Nothing was changed. {REBUILD}")


def opened(store: Any, where: Path | str) -> None:
    """Checks run once when a store opens: layout version, and chunk total against the catalogue."""
    got = store.files.get(ids=["\x00state"], include=["metadatas"])
    version = check_version(got["metadatas"][0] if got["ids"] else {}, str(where))
    if not version.ok:
        raise IndexVersionError(f"The index at {where} was {version.detail}. Upgrade qa, or rebuild it "
                                "for this version: qa ingest --rebuild (the index is moved aside, not deleted)")
    catalogue = check_catalogue(store, full=False)
    if not catalogue.ok:
        raise damaged(where, catalogue.detail)


def explain(index_dir: Path | None, error: BaseException) -> QAError:
    """The one line for an error Chroma raised while reading or writing the index."""
    if openfiles.reached(error):  # before the checks below, which would fail to open the files as Chroma did
        return openfiles.too_many(index_dir or "the server")
    if index_dir is not None and (index_dir / "chroma.sqlite3").exists():
        for c in (check_sqlite_header, check_sqlite_pages, check_segment_files):
            result = c(index_dir)
            if not result.ok:
                return damaged(index_dir, result.detail)
    reason = " ".join(str(error).split())[:200] or type(error).__name__
    where = index_dir or "the server"
    # SQLite cannot even open an index to read it without room for its journal.
    if is_disk_full(error) or index_dir is not None and nearly_full(index_dir):
        return DiskFullError(f"The disk of the index at {where} is full; Chroma needs some free space even to "
                             "read it. Free space and run again: the index is not damaged.")
    if _read_only(error):
        from .store import read_only

        return read_only(where, reason)
    return IndexDamagedError(f"Chroma could not read the index at {where} ({reason}). "
                             f"Nothing was changed. See: qa status --check; {REBUILD}")


def _read_only(e: BaseException) -> bool:
    text = str(e).lower()
    return isinstance(e, OSError) and e.errno == errno.EROFS or "readonly database" in text or \
        "read-only file system" in text


def is_storage_error(e: BaseException) -> bool:
    """Whether an exception comes from the store (Chroma, SQLite, hnswlib) rather than from qa's code."""
    if isinstance(e, QAError):
        return False
    if isinstance(e, sqlite3.DatabaseError):
        return True
    module = type(e).__module__ or ""
    return module.startswith(("chromadb", "hnswlib")) or module == "builtins" and "hnsw" in str(e).lower()


def from_store(e: BaseException) -> bool:
    """Whether a failure is the store's to explain: a storage error (not an interrupt), or running out of files,
    where Chroma panics (pyo3: a BaseException) as often as it raises."""
    return isinstance(e, Exception) and is_storage_error(e) or openfiles.says_so(e)


def run_all(index_dir: Path, embedded: bool, open_store: Callable[[], Any], cache_dir: Path,
            uploads: Path) -> list[Check]:
    """Every check, in order; a check that cannot run because an earlier one failed is reported as such."""
    try:
        results = _run_all(index_dir, embedded, open_store, cache_dir, uploads)
    except BaseException as e:  # a Chroma error (or panic) between the checks, while the process is out of files
        if not from_store(e) or not openfiles.reached(e):
            raise
        why = str(openfiles.too_many(index_dir))
        return [Check("open files", False, why, fix=why)]
    if any(not r.ok and not r.fix for r in results) and openfiles.near_limit():
        # The checks could not open the files: that says nothing of the index, and a rebuild is not the fix.
        why = str(openfiles.too_many(index_dir))
        return [*(r for r in results if r.ok), Check("open files", False, why, fix=why)]
    return results


def _run_all(index_dir: Path, embedded: bool, open_store: Callable[[], Any], cache_dir: Path,
             uploads: Path) -> list[Check]:
    results: list[Check] = []
    if embedded:
        if not (index_dir / "chroma.sqlite3").exists():
            # Not damage: nothing to check yet (a rebuild would have nothing to rebuild from).
            return [Check("index", False, f"no index at {index_dir}", fix=f"No index at {index_dir} yet. "
                          "Run: qa ingest seeds/ (or your own folder)")]
        results += [check_sqlite_header(index_dir), check_sqlite_pages(index_dir), check_segment_files(index_dir)]
        if not all(r.ok for r in results):
            return [*results, Check("collections", False, "not opened: the files above are damaged")]
    try:
        store = open_store()
    except EmbeddingMismatchError as e:
        return [*results, Check("embedding model", False, str(e))]
    except QAError as e:
        damage = isinstance(e, IndexDamagedError) and not is_disk_full(e)
        return [*results, Check("collections", False, str(e), fix="" if damage else str(e))]
    except Exception as e:  # noqa: BLE001 - reported as the result of the check
        return [*results, _not_damage(e, index_dir, embedded)
                or Check("collections", False, f"Chroma cannot open them: {type(e).__name__}: {e}")]
    except BaseException as e:  # Chroma panics (pyo3) when it runs out of files
        if not openfiles.says_so(e):
            raise
        return [*results, _not_damage(e, index_dir, embedded) or Check("collections", False, str(e))]
    results.append(Check("embedding model", True, f"{store.embed_model}, as recorded in the index"))
    got = store.files.get(ids=["\x00state"], include=["metadatas"])
    results.append(check_version(got["metadatas"][0] if got["ids"] else {}, str(index_dir)))
    for check in (lambda: check_catalogue(store, full=True), lambda: check_bm25(store, cache_dir),
                  lambda: check_uploads(store, uploads)):
        try:
            results.append(check())
        except Exception as e:  # noqa: BLE001
            if not is_storage_error(e):
                raise
            results.append(_not_damage(e, index_dir, embedded)
                           or Check("collections", False, f"Chroma failed reading them: {type(e).__name__}: {e}"))
    return results


def _not_damage(e: BaseException, index_dir: Path, embedded: bool) -> Check | None:
    """The failed check for a Chroma error that is not damage (a full disk, a read-only folder, too many open
    files), else None."""
    if not (is_disk_full(e) or _read_only(e) or openfiles.says_so(e)):
        return None
    why = str(explain(index_dir if embedded else None, e))
    return Check("collections", False, why, fix=why)
