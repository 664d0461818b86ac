"""Backup while questions are answered, restore elsewhere, and an ingest that runs out of disk space."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from qa import Assistant, QAError
from qa.errors import DiskFullError, IndexBusyError

QUESTIONS = ["Where will Putin travel after North Korea?", "Who denied the arms transfers?",
             "Who is Victor Cha?", "What did Matthew Miller say?"]


def reopen(index: Path, like: Assistant) -> Assistant:
    a = Assistant(index_dir=index)
    a._embedder = like.embedder
    return a


def test_backup_while_20_questions_run_restores_elsewhere_answering_identically(
        seeded: Assistant, tmp_path: Path) -> None:
    index = Path(seeded.settings.index_dir)
    (index / "uploads").mkdir()
    (index / "uploads" / "note.txt").write_text("The lighthouse keeper of Orvik is named Tomas Brell.")
    seeded.ingest(index / "uploads" / "note.txt")
    with sqlite3.connect(index / "conversations.sqlite3") as con:  # the chats branch's store, once it exists
        con.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, text TEXT)")
        con.execute("INSERT INTO messages (text) VALUES ('who keeps the lighthouse?')")
    questions = [*QUESTIONS * 5][:19] + ["Who keeps the lighthouse of Orvik?"]
    clean = {q: seeded.ask(q).to_dict() for q in set(questions)}

    answers: list[tuple[float, dict]] = []
    errors: list[BaseException] = []
    reader = reopen(index, seeded)

    def ask_all() -> None:
        try:
            for q in questions:
                answers.append((time.monotonic(), reader.ask(q).to_dict()))
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    thread = threading.Thread(target=ask_all)
    thread.start()
    while len(answers) < 3 and thread.is_alive():
        time.sleep(0.01)
    started = time.monotonic()
    manifest = seeded.backup(tmp_path / "backup")
    finished = time.monotonic()
    thread.join(timeout=600)
    assert not errors and len(answers) == 20
    assert answers[0][0] < started and answers[-1][0] > finished  # it ran while questions were answered
    assert [a for _, a in answers] == [clean[q] for q in questions]  # readers were never disturbed
    assert {"chroma.sqlite3", "conversations.sqlite3", "uploads/note.txt"} <= set(manifest["files"])

    elsewhere = tmp_path / "elsewhere" / "index"
    assert reopen(elsewhere, seeded).restore(tmp_path / "backup") is None
    restored = reopen(elsewhere, seeded)
    assert {q: restored.ask(q).to_dict() for q in clean} == clean
    assert all(c.ok for c in restored.check())
    with sqlite3.connect(elsewhere / "conversations.sqlite3") as con:
        assert con.execute("SELECT text FROM messages").fetchall() == [("who keeps the lighthouse?",)]


def test_restore_refuses_a_non_empty_index_without_force(seeded: Assistant, tmp_path: Path) -> None:
    index = Path(seeded.settings.index_dir)
    seeded.backup(tmp_path / "backup")
    with pytest.raises(QAError, match="not empty; add --force"):
        reopen(index, seeded).restore(tmp_path / "backup")
    moved = reopen(index, seeded).restore(tmp_path / "backup", force=True)
    assert moved is not None and (moved / "chroma.sqlite3").exists()  # the replaced index is kept
    assert reopen(index, seeded).ask(QUESTIONS[0]).answered
    with pytest.raises(QAError, match="not empty"):
        seeded.backup(tmp_path / "backup")  # never over an earlier backup


def test_restore_and_rebuild_refuse_while_qa_serve_answers_from_the_index(seeded: Assistant, tmp_path: Path) -> None:
    """Both swap the index folder: a running server went on answering from the old one, and its uploads failed
    with "attempt to write a readonly database"."""
    from qa.backup import serving

    index = Path(seeded.settings.index_dir)
    seeded.backup(tmp_path / "backup")
    with serving(index.absolute()):  # what `qa serve` holds while it runs
        with pytest.raises(IndexBusyError, match="qa serve is answering from .*stop it, then run qa restore again"):
            reopen(index, seeded).restore(tmp_path / "backup", force=True)
        with pytest.raises(IndexBusyError, match="run qa ingest --rebuild again"):
            reopen(index, seeded).rebuild()
        with serving(index.absolute()):  # a second server (or replica) shares it
            pass
        assert reopen(index, seeded).ask(QUESTIONS[0]).answered
        assert not [p for p in index.parent.iterdir() if ".replaced-" in p.name or ".damaged-" in p.name]
    assert reopen(index, seeded).restore(tmp_path / "backup", force=True) is not None  # once it stopped


def test_backup_waits_for_no_ingest_and_ingest_waits_for_backup(seeded: Assistant, tmp_path: Path) -> None:
    from qa.backup import writer_lock

    index = Path(seeded.settings.index_dir)
    with writer_lock(index, "test"):  # what a running ingest holds
        with pytest.raises(IndexBusyError, match="wait for it to finish, then run qa backup again"):
            seeded.backup(tmp_path / "backup")
    assert not (tmp_path / "backup").exists()


def _mount_tmpfs(folder: Path, mb: int) -> None:
    folder.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mb}m", "tmpfs", str(folder)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here (needs root and CAP_SYS_ADMIN): {r.stderr.strip()}")


@pytest.mark.slow
def test_ingest_that_runs_out_of_space_stops_in_one_line_and_the_index_answers_as_before(
        seeded: Assistant, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, 16)
    try:
        index = disk / "index"
        shutil.copytree(seeded.settings.index_dir, index)
        a = reopen(index, seeded)
        before = {q: a.ask(q).to_dict() for q in QUESTIONS}
        filler = disk / "filler"
        free = shutil.disk_usage(disk).free
        filler.write_bytes(b"\0" * (free - 1_000_000))  # leave 1 MB: the index grows past it
        docs = tmp_path / "docs"
        docs.mkdir()
        words = ["harbour", "engine", "river", "council", "winter", "market", "signal", "orchard", "ledger"]
        for n in range(4):
            text = " ".join(f"In year {1000 + n * 1000 + i} the {words[(n + i) % 9]} of town {n} counted {i * 37} "
                            f"{words[(n * i) % 9]}s." for i in range(300))
            (docs / f"town-{n}.txt").write_text(text)

        with pytest.raises(DiskFullError) as full:
            a.ingest(docs)
        message = str(full.value)
        assert "\n" not in message and str(index.absolute()) in message and "MB more" in message
        assert {q: a.ask(q).to_dict() for q in QUESTIONS} == before  # the same process answers as before
        assert {q: reopen(index, seeded).ask(q).to_dict() for q in QUESTIONS} == before  # and a new one

        filler.unlink()
        report = reopen(index, seeded).ingest(docs)
        assert report.count("failed") == 0 and report.count("added") + report.count("unchanged") == 4
        after = reopen(index, seeded)
        assert "In year 4003 the" in after.ask("What did town 3 count in year 4003?").answer
        used = sum(f.stat().st_size for f in index.rglob("*") if f.is_file())
        print(f"disk-full test: index {used / 1e6:.1f} MB after the ingest the guard first refused")
        assert all(c.ok for c in after.check())
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


@pytest.mark.slow
def test_a_full_disk_is_not_called_damage_and_a_rebuild_there_is_refused(seeded: Assistant, tmp_path: Path) -> None:
    """On a full disk Chroma cannot even open an index to read it. That used to read "Chroma could not read the
    index ... Run: qa ingest --rebuild", and the rebuild moved the index aside, then stopped for want of
    space: no index left where it was."""
    import os
    import sys

    disk = tmp_path / "disk"
    _mount_tmpfs(disk, 12)
    try:
        index = disk / "index"
        shutil.copytree(seeded.settings.index_dir, index)
        before = reopen(index, seeded).ask(QUESTIONS[0]).to_dict()
        filler = _fill(disk)

        def qa(*args: str) -> subprocess.CompletedProcess[str]:  # a new process: Chroma opens the index afresh
            return subprocess.run([sys.executable, "-m", "qa", "--index-dir", str(index), *args],
                                  capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})

        asked = qa("ask", QUESTIONS[0])
        assert asked.returncode == 1 and "is full" in asked.stderr and "not damaged" in asked.stderr, asked.stderr
        assert "--rebuild" not in asked.stderr and len(asked.stderr.strip().splitlines()) == 1
        checked = qa("status", "--check")
        assert checked.returncode == 1 and "is full" in checked.stderr and "--rebuild" not in checked.stderr + checked.stdout
        with pytest.raises(DiskFullError, match="Nothing was changed"):
            reopen(index, seeded).rebuild()
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "index"]  # nothing moved aside

        filler.unlink()
        assert reopen(index, seeded).ask(QUESTIONS[0]).to_dict() == before
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow
def test_a_read_only_index_says_so_and_can_still_be_backed_up(seeded: Assistant, tmp_path: Path) -> None:
    """A read-only mount of an index: Chroma cannot open it (it opens for writing). It used to read "Cannot write
    to index folder ...; choose another QA_INDEX_DIR", `status --check` called it damaged and advised a rebuild,
    and `qa backup` blamed the backup's folder."""
    import os
    import sys

    src, index = tmp_path / "src", tmp_path / "ro"
    shutil.copytree(seeded.settings.index_dir, src)
    index.mkdir()
    r = subprocess.run(["mount", "--bind", str(src), str(index)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root): {r.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(index)], check=True)

        def qa(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "qa", "--index-dir", str(index), *args],
                                  capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})

        asked = qa("ask", QUESTIONS[0])
        assert asked.returncode == 1 and "is read-only" in asked.stderr and "copy it" in asked.stderr, asked.stderr
        checked = qa("status", "--check")
        assert checked.returncode == 1 and "--rebuild" not in checked.stdout + checked.stderr
        backed = qa("backup", str(tmp_path / "backup"))
        assert backed.returncode == 0, backed.stderr
        copy = reopen(tmp_path / "copy", seeded)
        copy.restore(tmp_path / "backup")
        assert copy.ask(QUESTIONS[0]).answered
    finally:
        subprocess.run(["umount", "-l", str(index)], check=False)
