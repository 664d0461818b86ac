"""Backup, restore and moving a damaged index aside: whole-folder operations on an embedded index.

A backup is a folder that is itself a complete index (point QA_INDEX_DIR at it, or `qa restore` it):
SQLite files copied with SQLite's online backup API (a consistent snapshot even while readers are
open), vector segment folders and uploads copied while the index's writer lock is held, so no
ingest changes them in between, and `qa-backup.json` naming what was copied.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import IndexBusyError, QAError
from .integrity import LAYOUT, check_segment_files, check_sqlite_header, check_sqlite_pages, qa_version

MANIFEST = "qa-backup.json"
SQLITE_FILES = ("chroma.sqlite3", "conversations.sqlite3")
# Not copied: the writer lock, SQLite's side files (the backup API copies their content) and scratch.
SERVE_LOCK = ".serve.lock"
_SKIP = {".ingest.lock", SERVE_LOCK, ".write-test", MANIFEST}
_SKIP_SUFFIXES = ("-wal", "-shm", "-journal")


@contextmanager
def serving(index_dir: Path) -> Iterator[None]:
    """Held (shared) by `qa serve` while it runs: a restore or rebuild would swap the folder under it, and it
    would go on answering from (and writing uploads to) the old one."""
    import fcntl

    f = None
    try:
        if index_dir.is_dir():
            f = open(index_dir / SERVE_LOCK, "a+")  # noqa: SIM115 - held until the server stops
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:  # a read-only index, or a replacing restore holds it: served without the claim
        if f is not None:
            f.close()
        f = None
    try:
        yield
    finally:
        if f is not None:
            f.close()


def refuse_if_served(index_dir: Path, what: str) -> None:
    """Raise IndexBusyError while a `qa serve` holds the index (see `serving`)."""
    import fcntl

    lock = index_dir / SERVE_LOCK
    if not lock.exists():
        return
    try:
        with open(lock, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise IndexBusyError(f"qa serve is answering from {index_dir}; stop it, then run {what} again (it replaces "
                             "the index folder, which the server would go on using).") from None
    except OSError:
        return


@contextmanager
def writer_lock(index_dir: Path, what: str) -> Iterator[None]:
    """The lock `qa ingest` and uploads take on this folder: held, no ingest runs; readers go on."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(index_dir / ".ingest.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise IndexBusyError(f"An ingest is writing to {index_dir}; wait for it to finish, then run {what} again.") \
            from None
    except OSError as e:
        if e.errno != errno.EROFS:
            raise QAError(f"Cannot take the lock of the index at {index_dir} ({e.strerror or e}); {what} needs "
                          "write access to the index folder.") from None
        yield  # a read-only file system: no ingest can be writing to it
        return
    try:
        yield
    finally:
        lock.release()


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def _sqlite_copy(src: Path, dest: Path) -> None:
    """Copy a live SQLite database page-consistently (SQLite's online backup API)."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(dest)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def _copy_tree(src: Path, dest: Path) -> int:
    """Copy a folder's contents except SQLite files and scratch; returns bytes copied."""
    total = 0
    for entry in sorted(src.iterdir()):
        if entry.name in _SKIP or entry.name in SQLITE_FILES or entry.name.endswith(_SKIP_SUFFIXES):
            continue
        target = dest / entry.name
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, target, symlinks=True,
                            ignore=shutil.ignore_patterns(".ingest.lock", SERVE_LOCK, "*-wal", "*-shm", "*-journal", ".staging"))
            total += sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
        elif entry.is_file():
            shutil.copy2(entry, target)
            total += target.stat().st_size
    return total


def backup(index_dir: Path, dest: Path) -> dict[str, object]:
    """Write a consistent snapshot of the index folder to `dest` (new or empty); returns its manifest."""
    if not (index_dir / "chroma.sqlite3").exists():
        raise QAError(f"No index at {index_dir} to back up. Run: qa ingest seeds/")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise QAError(f"{dest} exists and is not empty; give a new folder for the backup.")
    if dest.resolve().is_relative_to(index_dir.resolve()):
        raise QAError(f"{dest} is inside the index folder; give a folder outside {index_dir}.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name and renamed at the end: a half-written backup never looks complete.
    tmp = dest.with_name(f".{dest.name}.partial-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        started = time.time()
        with writer_lock(index_dir, "qa backup"):
            copied = _copy_tree(index_dir, tmp)
            for name in SQLITE_FILES:
                if (index_dir / name).exists():
                    _sqlite_copy(index_dir / name, tmp / name)
                    copied += (tmp / name).stat().st_size
        for check in (check_sqlite_pages(tmp), check_segment_files(tmp)):
            if not check.ok:
                raise QAError(f"The backup's copy of the index fails a check ({check.detail}); the index itself "
                              "may be damaged: run qa status --check.")
        manifest: dict[str, object] = {
            "qa_version": qa_version(), "layout": LAYOUT, "source": str(index_dir.absolute()),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(time.time() - started, 2),
            "bytes": copied,
            "files": sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if dest.exists():
            dest.rmdir()  # checked empty above
        tmp.rename(dest)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise QAError(f"Cannot write the backup to {dest} ({e.strerror or e}); choose another folder.") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def restore(src: Path, index_dir: Path, force: bool = False) -> Path | None:
    """Put a backup in place of the index; a non-empty index needs `force` and is moved aside (returned)."""
    if not (src / "chroma.sqlite3").is_file():
        raise QAError(f"{src} is not a qa backup (no chroma.sqlite3); give the folder `qa backup` wrote.")
    for check in (check_sqlite_header(src), check_sqlite_pages(src), check_segment_files(src)):
        if not check.ok:
            raise QAError(f"The backup at {src} is damaged ({check.detail}); restore another one.")
    manifest = src / MANIFEST
    if manifest.exists():
        layout = int(json.loads(manifest.read_text()).get("layout", 1))
        if layout > LAYOUT:
            raise QAError(f"The backup at {src} was written by a newer qa (layout {layout}); upgrade qa to restore it.")
    occupied = index_dir.exists() and any(p.name not in _SKIP for p in index_dir.iterdir())
    if occupied and not force:
        raise QAError(f"The index at {index_dir} is not empty; add --force to replace it "
                      "(the current index is moved aside, not deleted).")
    refuse_if_served(index_dir, "qa restore")
    tmp = index_dir.with_name(f".{index_dir.name}.restoring-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir(parents=True)
        _copy_tree(src, tmp)
        for name in SQLITE_FILES:
            if (src / name).exists():
                _sqlite_copy(src / name, tmp / name)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise QAError(f"Cannot restore into {index_dir.parent} ({e.strerror or e}); nothing was changed.") from None
    moved = None
    if index_dir.exists():
        with writer_lock(index_dir, "qa restore"):
            moved = move_aside(index_dir, "replaced") if occupied else None
        if not occupied:
            shutil.rmtree(index_dir)
    forget_chroma(index_dir)
    tmp.rename(index_dir)
    return moved


def forget_chroma(index_dir: Path) -> None:
    """Drop Chroma's cached client of a folder about to be renamed, so that the next client opened at that
    path reads the files then there (Chroma keeps one client per path per process, with the SQLite file open)."""
    import sys

    if "chromadb" not in sys.modules:
        return
    from chromadb.api.shared_system_client import SharedSystemClient

    here = index_dir.absolute()
    for key in list(SharedSystemClient._identifier_to_system):
        if key and Path(key).absolute() == here:
            SharedSystemClient._identifier_to_system.pop(key, None)  # not stopped: others may still read from it
            SharedSystemClient._identifier_to_refcount.pop(key, None)


def move_aside(index_dir: Path, why: str) -> Path:
    """Rename the index folder to `<index>.<why>-<timestamp>` (never deleted); returns the new path."""
    forget_chroma(index_dir)
    target = index_dir.with_name(f"{index_dir.name}.{why}-{_stamp()}")
    n = 1
    while target.exists():
        n += 1
        target = index_dir.with_name(f"{index_dir.name}.{why}-{_stamp()}-{n}")
    os.rename(index_dir, target)
    return target


def catalogue_sources(index_dir: Path, collection: str) -> dict[str, str] | None:
    """source -> digest of every catalogued file, read from SQLite directly (Chroma may not open a
    damaged index); None if the catalogue cannot be read."""
    db = index_dir / "chroma.sqlite3"
    if not db.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            rows = con.execute(
                "SELECT e.embedding_id, m.string_value FROM embeddings e "
                "JOIN segments s ON e.segment_id = s.id JOIN collections c ON s.collection = c.id "
                "LEFT JOIN embedding_metadata m ON m.id = e.id AND m.key = 'digest' "
                "WHERE c.name = ? AND s.scope = 'METADATA'", (f"{collection}_files",)).fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return None
    return {source: digest or "" for source, digest in rows if not source.startswith("\x00")}
