"""Disk space: refuse an ingest write the disk cannot hold, and say in one line what is needed.

Chroma does not fail cleanly when SQLite hits ENOSPC (its connection pool then waits on a lock the
failed write still holds), so the guard refuses a write before it starts; an ENOSPC that still
happens (another process filled the disk) is turned into the same message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under a folder (0 if it does not exist). A file or folder that goes while it is
    counted (an upload moved out of staging, a compaction) is not counted, never an error."""
    import os
    import stat

    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if not stat.S_ISLNK(st.st_mode):  # from the one lstat: no second system call per file
                total += st.st_size
    return total


def is_disk_full(e: BaseException | None) -> bool:
    """Whether an error (or one it was raised from) means the disk is full."""
    import errno

    seen = 0
    while e is not None and seen < 5:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(e).lower()
        if "disk is full" in text or "no space left" in text or "os error 28" in text:
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def nearly_full(folder: Path) -> bool:
    """Whether the disk of `folder` has less room than any write needs: Chroma then fails with errors that do
    not say so ("Error in compaction: Failed to apply logs to the metadata segment")."""
    import shutil

    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL_BYTES
    except OSError:
        return False


NEARLY_FULL_BYTES = 8 << 20
# What one write needs on disk, generously (SQLite's rollback journal, its full-text index and the HNSW
# files all grow): per chunk (vector in the log and in HNSW, text, metadata, full-text postings), per
# character of stored document text, and a fixed reserve.
CHUNK_BYTES = 8 << 10
TEXT_BYTES = 4
RESERVE_BYTES = 1 << 20


class SpaceGuard:
    """Refuses a write the disk cannot hold, before Chroma starts it: Chroma stalls on a full disk
    (its SQLite pool waits on a lock the failed write still holds) instead of failing."""

    def __init__(self, index_dir: Path, targets: Any) -> None:
        self.index_dir = index_dir
        self.targets = list(targets)
        self.before = folder_bytes(index_dir)
        db = index_dir / "chroma.sqlite3"
        self.since = db.stat().st_mtime if db.exists() else 0.0  # files older than the index's last write are in it

    def __call__(self, chunks: int, chars: int) -> None:
        import shutil

        need = chunks * CHUNK_BYTES + chars * TEXT_BYTES + RESERVE_BYTES
        where = self.index_dir.absolute()
        while not where.exists() and where != where.parent:  # a new index: the disk it will be made on
            where = where.parent
        try:
            free = shutil.disk_usage(where).free
        except OSError:
            return
        if free < need:
            raise disk_full(self.index_dir, self.targets, self.before, need - free, self.since)


def disk_full(index_dir: Path, targets: list[Path] | Any, before: int, short: int = 0,
              since: float = 0.0) -> Exception:
    """The one line for an ingest that ran out of space: the folder, what is free, about what is needed."""
    import shutil

    from .errors import DiskFullError
    from .reading.formats import discover

    try:
        free = shutil.disk_usage(index_dir if index_dir.exists() else index_dir.parent).free
    except OSError:
        free = 0
    files, _ = discover(list(targets))
    sizes = [f.stat() for f in files if f.exists()]
    source = sum(st.st_size for st in sizes if st.st_mtime >= since)
    # About one chunk per 550 characters of text (160 tokens, 32 overlapping); what this ingest wrote counts.
    total = source // 550 * CHUNK_BYTES + source * TEXT_BYTES + RESERVE_BYTES
    need = total - max(0, folder_bytes(index_dir) - before) - free
    need = max(need, short, 1 << 20)
    return DiskFullError(
        f"No space left on the disk of {index_dir.absolute()} ({free / 1e6:.1f} MB free); this ingest needs "
        f"about {need / 1e6:.0f} MB more. The index still answers as before: free space (or set QA_INDEX_DIR "
        "to a bigger disk) and run the same qa ingest again.")


def room_to_rebuild(index: Path) -> None:
    """Refuse a rebuild the disk cannot hold: the old index stays where it is (moved aside, it would answer no
    more, and the new one would stop half-way)."""
    import shutil

    from .errors import DiskFullError

    need = folder_bytes(index) + RESERVE_BYTES
    try:
        free = shutil.disk_usage(index).free
    except OSError:
        return
    if free < need:
        raise DiskFullError(f"Rebuilding the index at {index} needs about {need / 1e6:.0f} MB free on its disk (as "
                            f"much as the index holds); {free / 1e6:.1f} MB are free. Nothing was changed: free "
                            "space and run again.")
