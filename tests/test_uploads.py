"""Uploads (UI and HTTP API): safe names, files of one upload kept apart, saved all or nothing, and put in
the library only when the writer indexes them."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import pytest

from qa.errors import DiskFullError
from qa.serving.uploads import MAX_NAME_BYTES, STAGING, discard, distinct, place, safe_name, stage
from qa.serving.writer import Writer

from .test_writer import GatedAssistant


@pytest.mark.parametrize(("name", "expected"), [
    ("notes.txt", "notes.txt"), ("../../etc/passwd", "passwd"), ("..\\..\\win.ini", "win.ini"),
    ("/abs/path/x.md", "x.md"), ("..", "upload"), ("", "upload"), ("a\x00b\n.txt", "ab.txt"),
    # never hidden: a folder's ingest and a rebuild skip hidden files, and .staging is the uploads' own
    (".staging", "staging"), (".hidden.txt", "hidden.txt"), ("...", "upload"),
    # a right-to-left override showed "report\u202efdp.exe" as "reportexe.pdf"; Hebrew and Arabic names stay
    ("report\u202efdp.exe", "reportfdp.exe"), ("\u2067x\u2069.txt", "x.txt"), ("חיפה.txt", "חיפה.txt"),
])
def test_safe_name_keeps_only_the_base_name(name: str, expected: str) -> None:
    assert safe_name(name) == expected


@pytest.mark.parametrize("name", ["b" * 300 + ".txt", "é" * 200 + ".md", "x" * 400, "a" * 250 + ".tar.gzipped-way-too-long"])
def test_a_long_name_is_shortened_keeping_its_extension(name: str, tmp_path: Path) -> None:
    short = safe_name(name)
    assert len(short.encode("utf-8")) <= MAX_NAME_BYTES and name.startswith(short[:50])
    ext = Path(name).suffix
    if len(ext) <= 16:
        assert short.endswith(ext)
    (tmp_path / short).write_text("fits")  # the filesystem takes it
    (tmp_path / distinct([short, short])[1]).write_text("so does its twin")


def test_files_of_one_upload_with_the_same_name_are_kept_apart() -> None:
    assert distinct(["notes.txt", "a.md", "notes.txt", "notes.txt", "notes (2).txt"]) == [
        "notes.txt", "a.md", "notes (2).txt", "notes (3).txt", "notes (2) (2).txt"]


def test_stage_refuses_big_files_and_touches_nothing_in_the_library(tmp_path: Path) -> None:
    small, big = tmp_path / "in" / "small.txt", tmp_path / "in" / "big.txt"
    small.parent.mkdir()
    small.write_text("hello")
    big.write_bytes(b"x" * 3000)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "small.txt").write_text("the old text, still indexed")
    staged = stage([("small.txt", small), ("big.txt", big), ("big.txt", io.BytesIO(b"y" * 3000))], uploads,
                   max_mb=0.002)
    assert [(r.path, r.status) for r in staged.refused] == [("big.txt", "failed"), ("big (2).txt", "failed")]
    assert "0.003 MB is over the 0.002 MB limit" in staged.refused[0].reason
    assert staged.destinations == [uploads / "small.txt"]
    assert (uploads / "small.txt").read_text() == "the old text, still indexed"  # not yet
    assert sorted(p.name for p in uploads.iterdir()) == [STAGING, "small.txt"]
    place(staged)
    assert (uploads / "small.txt").read_text() == "hello" and sorted(p.name for p in uploads.iterdir()) == [
        STAGING, "small.txt"] and not any((uploads / STAGING).iterdir())
    place(staged)  # again: nothing to do


class FullDisk(io.RawIOBase):
    """A stream whose reading stands for a write that fails part way (the disk fills up)."""

    def __init__(self) -> None:
        self.calls = 0

    def read(self, n: int = -1) -> bytes:
        self.calls += 1
        if self.calls > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return b"z" * 1000


def test_an_upload_that_cannot_be_saved_whole_saves_nothing(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "a.txt").write_text("indexed a")
    with pytest.raises(DiskFullError, match="nothing was added"):
        stage([("a.txt", io.BytesIO(b"new a")), ("b.txt", FullDisk())], uploads, max_mb=1)
    assert (uploads / "a.txt").read_text() == "indexed a" and not any((uploads / STAGING).iterdir())


def test_a_queued_upload_replaces_its_file_only_when_the_writer_runs_it(tmp_path: Path) -> None:
    """The index keeps citing the old text while the upload that replaces it waits behind another job."""
    a = GatedAssistant()
    w = Writer(a)  # type: ignore[arg-type]
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "notes.txt").write_text("old notes")
    first = w.submit(stage([("other.txt", io.BytesIO(b"other"))], uploads, max_mb=1))
    assert a.started.acquire(timeout=10)
    second = w.submit(stage([("notes.txt", io.BytesIO(b"new notes"))], uploads, max_mb=1))
    assert w.job(second.id).files == (str(uploads / "notes.txt"),)
    assert (uploads / "notes.txt").read_text() == "old notes"  # queued: the library is as indexed
    a.gates[0].set()
    assert w.wait(first.id, timeout=10).state == "done"
    assert a.started.acquire(timeout=10)
    assert (uploads / "notes.txt").read_text() == "new notes"  # running: in place for the ingest
    a.gates[1].set()
    assert w.wait(second.id, timeout=10).state == "done"
    w.close()


def test_a_refused_upload_leaves_nothing_behind(tmp_path: Path) -> None:
    a = GatedAssistant()
    w = Writer(a, max_jobs=1)  # type: ignore[arg-type]
    uploads = tmp_path / "uploads"
    w.submit(stage([("a.txt", io.BytesIO(b"a"))], uploads, max_mb=1))
    assert a.started.acquire(timeout=10)
    with pytest.raises(Exception, match="already queued"):
        w.submit(stage([("b.txt", io.BytesIO(b"b"))], uploads, max_mb=1))
    assert sorted(p.name for p in (uploads / STAGING).iterdir()) == [] and not (uploads / "b.txt").exists()
    a.gates[0].set()
    w.close()


def test_a_staged_upload_is_locked_until_it_is_placed_or_discarded(tmp_path: Path) -> None:
    """The lock beside a staging folder tells a live server's queued upload from one a stopped server left
    (`adopt`, tested with a killed process in test_integrity.py)."""
    from qa.serving.uploads import Claim, adopt

    uploads = tmp_path / "uploads"
    kept, dropped = (stage([(n, io.BytesIO(b"x"))], uploads, max_mb=1) for n in ("kept.txt", "dropped.txt"))
    assert adopt(uploads) == []  # both locked: a live server's
    with pytest.raises(BlockingIOError):
        Claim(kept.folder.with_name(kept.folder.name + ".lock"))
    place(kept)
    place(kept)  # again: a no-op, and no second close of the lock's descriptor
    discard(dropped)
    assert (uploads / "kept.txt").exists() and not (uploads / "dropped.txt").exists()
    assert list((uploads / STAGING).iterdir()) == []
    # A folder without a lock (left by a version before the locks): a stopped server's.
    (uploads / STAGING / "old").mkdir()
    (uploads / STAGING / "old" / "kept.txt").write_text("newer")
    assert adopt(uploads) == [uploads / "kept.txt"] and (uploads / "kept.txt").read_text() == "newer"
    assert list((uploads / STAGING).iterdir()) == []


def test_the_size_of_an_index_counts_around_a_file_that_goes_meanwhile(tmp_path: Path, monkeypatch) -> None:
    """`GET /v1/status` answered 500 (FileNotFoundError) when an upload moved out of staging while the
    index folder was being added up."""
    from qa.diskspace import folder_bytes

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "kept.bin").write_bytes(b"x" * 100)
    (tmp_path / "a" / "moved.bin").write_bytes(b"y" * 50)
    real = os.lstat

    def lstat(path, *a, **kw):  # type: ignore[no-untyped-def]
        if str(path).endswith("moved.bin"):
            raise FileNotFoundError(path)
        return real(path, *a, **kw)

    monkeypatch.setattr(os, "lstat", lstat)
    assert folder_bytes(tmp_path) == 100
