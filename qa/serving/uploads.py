"""Uploaded files (UI and HTTP API alike): safe names, staged apart, put in place when indexed.

An upload is saved whole into a staging folder of its own, `<index>/uploads/.staging/<id>/`, before
anything in `uploads/` changes: a name the filesystem refuses or a full disk part way leaves the
library as it was, and the upload fails with one message. The writer moves a job's files into
`uploads/` when it starts indexing them, not when they are queued: an upload that replaces a file
and waits behind others would otherwise leave the index citing text the file no longer holds.
Files of one upload that share a name are kept apart as "notes.txt", "notes (2).txt", ...
"""

from __future__ import annotations

import errno
import re
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO

from ..errors import DiskFullError, QAError
from ..types import FileResult

if TYPE_CHECKING:
    from ..assistant import Assistant

STAGING = ".staging"  # under uploads/: hidden, so ingest, --watch and rebuild never take it for a document
MAX_NAME_BYTES = 200  # of a saved name in UTF-8 (filesystems allow 255: room for " (2)")
STALE_SECONDS = 86_400  # staging folders older than this are left from a server that stopped mid-upload


@dataclass(frozen=True)
class Staged:
    """An upload saved apart: (staged file, where it goes) pairs, and the files refused (too large)."""

    folder: Path
    files: tuple[tuple[Path, Path], ...]
    refused: tuple[FileResult, ...] = ()

    @property
    def destinations(self) -> list[Path]:
        return [dest for _, dest in self.files]


def uploads_dir(assistant: Assistant) -> Path:
    """Where uploaded files are kept: a folder inside the index they were added to."""
    return Path(assistant.settings.index_dir).absolute() / "uploads"


def safe_name(name: str) -> str:
    """A bare file name: no folders (either slash), no control characters, never '.' or '..', at most
    MAX_NAME_BYTES of UTF-8 (a longer name keeps its extension and the start of its stem)."""
    base = re.sub(r"[\x00-\x1f\x7f]", "", PurePosixPath(name.replace("\\", "/")).name).strip()
    if not base.strip("."):
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
    try:
        clear_stale(uploads)
        folder.mkdir(parents=True)
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
        shutil.rmtree(folder, ignore_errors=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"No room to save the upload in {uploads}; nothing was added. Free some disk "
                                "space and upload again.") from None
        raise QAError(f"Cannot save the upload in {uploads}: {e.strerror or e}; nothing was added.") from None
    return Staged(folder, tuple(staged), tuple(refused))


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
    shutil.rmtree(staged.folder, ignore_errors=True)


def discard(staged: Staged) -> None:
    """Drop an upload that will not be indexed (refused by a full queue)."""
    shutil.rmtree(staged.folder, ignore_errors=True)


def clear_stale(uploads: Path) -> None:
    """Remove staging folders a stopped server left behind (older than a day: a replica's may be live)."""
    root = uploads / STAGING
    if not root.is_dir():
        return
    for d in root.iterdir():
        try:
            if time.time() - d.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass
