"""Uploaded files (UI and HTTP API alike): safe names, staged apart, put in place when indexed.

An upload is saved whole into a staging folder of its own, `<index>/uploads/.staging/<id>/`, before
anything in `uploads/` changes: a name the filesystem refuses or a full disk part way leaves the
library as it was, and the upload fails with one message. The writer moves a job's files into
`uploads/` when it starts indexing them, not when they are queued: an upload that replaces a file
and waits behind others would otherwise leave the index citing text the file no longer holds.
Files of one upload that share a name are kept apart as "notes.txt", "notes (2).txt", ...

The server that staged an upload holds a lock on `<id>.lock` beside its folder until the files are in
place. A folder whose lock is free was left by a server stopped with the upload queued: the next
`qa serve` puts its files in place and indexes them (`adopt`), as it does for files a stopped job had
put in place; a replica's queued upload, locked, is left to it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO

from ..errors import DiskFullError, QAError
from ..types import FileResult

if TYPE_CHECKING:
    from ..assistant import Assistant

STAGING = ".staging"  # under uploads/: hidden, so ingest, --watch and rebuild never take it for a document
MAX_NAME_BYTES = 200  # of a saved name in UTF-8 (filesystems allow 255: room for " (2)")


@dataclass(frozen=True)
class Staged:
    """An upload saved apart: (staged file, where it goes) pairs, and the files refused (too large)."""

    folder: Path
    files: tuple[tuple[Path, Path], ...]
    refused: tuple[FileResult, ...] = ()
    lock: Claim | None = field(default=None, compare=False)  # held on `<folder>.lock` until placed (see above)

    @property
    def destinations(self) -> list[Path]:
        return [dest for _, dest in self.files]


def uploads_dir(assistant: Assistant) -> Path:
    """Where uploaded files are kept: a folder inside the index they were added to."""
    return Path(assistant.settings.index_dir).absolute() / "uploads"


def safe_name(name: str) -> str:
    """A bare file name: no folders (either slash), no control characters, no direction overrides (which
    show "report" U+202E "fdp.exe" as "reportexe.pdf"), not hidden (no leading dot: a folder's ingest and a rebuild
    skip hidden files, and ".staging" is the uploads' own), at most MAX_NAME_BYTES of UTF-8 (a longer name
    keeps its extension and the start of its stem)."""
    base = re.sub(r"[\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]", "",
                  PurePosixPath(name.replace("\\", "/")).name).strip().lstrip(".").strip()
    if not base:
        return "upload"
    if len(base.encode("utf-8")) <= MAX_NAME_BYTES:
        return base
    p = PurePosixPath(base)
    ext = p.suffix if 1 < len(p.suffix.encode("utf-8")) <= 16 else ""
    stem = base[:len(base) - len(ext)].encode("utf-8")[:MAX_NAME_BYTES - len(ext.encode("utf-8"))]
    return stem.decode("utf-8", "ignore").rstrip() + ext


def distinct(names: Sequence[str]) -> list[str]:
    """The names with repeats told apart: the second "notes.txt" becomes "notes (2).txt"."""
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 1
        while candidate in seen:
            n += 1
            p = PurePosixPath(name)
            candidate = f"{p.stem} ({n}){p.suffix}"
        seen.add(candidate)
        out.append(candidate)
    return out


def stage(files: Sequence[tuple[str, Path | BinaryIO]], uploads: Path, max_mb: float) -> Staged:
    """Save (name, file path or stream) pairs apart under `uploads`; a file over `max_mb` is refused (a
    `failed` result naming the limit). Raises DiskFullError or QAError, with nothing saved, if any
    file cannot be written."""
    folder = uploads / STAGING / uuid.uuid4().hex[:16]
    limit = max_mb * 1e6
    staged: list[tuple[Path, Path]] = []
    refused: list[FileResult] = []
    lock = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock = Claim(_lock_path(folder))  # before the folder exists: no one takes it for a stopped server's
        folder.mkdir()
        for (_, src), name in zip(files, distinct([safe_name(n) for n, _ in files])):
            tmp = folder / name
            if _copy(src, tmp, limit):
                staged.append((tmp, uploads / name))
            else:
                tmp.unlink(missing_ok=True)
                size = src.stat().st_size if isinstance(src, Path) else None
                over = f"{size / 1e6:.3g} MB is over" if size is not None else "over"
                refused.append(FileResult(name, "failed", reason=f"{over} the {max_mb:g} MB limit (QA_MAX_FILE_MB)"))
    except OSError as e:
        _drop(folder, lock)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"No room to save the upload in {uploads}; nothing was added. Free some disk "
                                "space and upload again.") from None
        raise QAError(f"Cannot save the upload in {uploads}: {e.strerror or e}; nothing was added.") from None
    return Staged(folder, tuple(staged), tuple(refused), lock)


def _copy(src: Path | BinaryIO, dest: Path, limit: float) -> bool:
    """Copy a file or stream to `dest`; False (part written) once it is over `limit` bytes."""
    if isinstance(src, Path):
        if src.stat().st_size > limit:
            return False
        shutil.copyfile(src, dest)
        return True
    written = 0
    with dest.open("wb") as out:
        while block := src.read(1 << 20):
            written += len(block)
            if written > limit:
                return False
            out.write(block)
    return True


def place(staged: Staged) -> None:
    """Move staged files into `uploads/` (each an atomic rename over any file of that name); again is a no-op."""
    for tmp, dest in staged.files:
        if tmp.exists():
            tmp.replace(dest)
    _drop(staged.folder, staged.lock)


def discard(staged: Staged) -> None:
    """Drop an upload that will not be indexed (refused by a full queue)."""
    _drop(staged.folder, staged.lock)


def adopt(uploads: Path) -> list[Path]:
    """Put in place the files of uploads a stopped server had staged and queued (their folders' locks are
    free), oldest first, so a later upload of a name wins as it would have; the files put in place."""
    root = uploads / STAGING
    if not root.is_dir():
        return []
    placed: list[Path] = []
    for folder in sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime):
        try:
            lock = Claim(_lock_path(folder))
        except BlockingIOError:
            continue  # a live server's queued upload
        files = [f for f in folder.iterdir() if f.is_file()]
        place(Staged(folder, tuple((f, uploads / f.name) for f in files), (), lock))
        placed += [uploads / f.name for f in files if uploads / f.name not in placed]
    for stray in root.glob("*.lock"):  # a lock whose folder is gone (a server stopped between the two)
        if not stray.with_suffix("").exists():
            try:
                _drop(stray.with_suffix(""), Claim(stray))
            except BlockingIOError:
                pass
    return placed


def _lock_path(folder: Path) -> Path:
    return folder.with_name(folder.name + ".lock")


class Claim:
    """An exclusive `flock` on a file (created if missing), held until `release` (or the process ends)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None  # set first: __del__ runs for a claim that failed too
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: another process holds it
        except OSError:
            os.close(fd)
            raise
        self.fd = fd

    def release(self) -> None:
        """Delete the lock file, then let go of it; again is a no-op."""
        if self.fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None

    def __del__(self) -> None:  # an upload dropped without place or discard: its folder is adopted later
        if self.fd is not None:
            os.close(self.fd)


def _drop(folder: Path, lock: Claim | None) -> None:
    """Remove a staging folder, then its lock."""
    shutil.rmtree(folder, ignore_errors=True)
    if lock is not None:
        lock.release()
