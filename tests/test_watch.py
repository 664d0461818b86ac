"""The folder watcher on a real Chroma: added, edited, renamed and deleted files follow; bursts are one batch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qa import Assistant, ConfigError
from qa.types import IngestReport
from qa.watch import watch

FERRY = "The night ferry Nordlys sails from Tromsø to Svalbard every Tuesday at nine."
ORCA = "Orcas were seen in the Lyngen fjord on the fourteenth of November."


class Watcher:
    """`watch` in a thread, recording every batch it applies."""

    def __init__(self, a: Assistant, folder: Path, settle: float) -> None:
        self.batches: list[IngestReport] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=watch, args=(a, [folder]), daemon=True, kwargs={
            "stop": self.stop, "on_batch": self.batches.append, "on_error": self.errors.append, "settle": settle})
        self.thread.start()

    def statuses(self) -> list[tuple[str, str]]:
        return [(Path(f.path).name, f.status) for b in self.batches for f in b.files]


@pytest.fixture()
def watching(tmp_path: Path) -> Iterator[Callable[..., Watcher]]:
    started: list[Watcher] = []

    def start(a: Assistant, folder: Path, settle: float = 0.5) -> Watcher:
        w = Watcher(a, folder, settle)
        started.append(w)
        until(lambda: w.batches, "the initial ingest")
        return w

    yield start
    for w in started:
        w.stop.set()
        w.thread.join(timeout=30)
        assert not w.thread.is_alive()


def until(check: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def names(a: Assistant) -> list[str]:
    return [Path(d.source).name for d in a.documents()]


def test_add_edit_rename_delete_are_reflected(tmp_path: Path, watching: Callable[..., Watcher]) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "orca.txt").write_text(ORCA)
    a = Assistant()
    w = watching(a, docs)
    assert w.statuses() == [("orca.txt", "added")]

    (docs / "ferry.txt").write_text(FERRY)
    until(lambda: "ferry.txt" in names(a), "the added file")
    ans = a.ask("When does the night ferry Nordlys sail to Svalbard?")
    assert ans.answered and "Tuesday" in ans.answer

    (docs / "ferry.txt").write_text(FERRY.replace("Tuesday", "Friday"))
    until(lambda: ("ferry.txt", "updated") in w.statuses(), "the edit")
    assert "Friday" in a.ask("When does the night ferry Nordlys sail to Svalbard?").answer

    (docs / "ferry.txt").rename(docs / "nordlys.txt")
    until(lambda: names(a) == ["nordlys.txt", "orca.txt"], "the rename")
    ans = a.ask("When does the night ferry Nordlys sail to Svalbard?")
    assert {Path(c.source).name for c in ans.citations} == {"nordlys.txt"}

    (docs / "orca.txt").unlink()
    until(lambda: names(a) == ["nordlys.txt"], "the deletion")
    assert not a.ask("Where were orcas seen?", sources=["*"]).citations
    sub = docs / "sub"
    sub.mkdir()
    (sub / "orca.md").write_text(ORCA)
    until(lambda: "orca.md" in names(a), "a file in a new folder")
    (sub / "orca.md").rename(tmp_path / "outside.md")  # moved out of the watched folder: gone
    until(lambda: names(a) == ["nordlys.txt"], "the move out")
    assert not w.errors


def test_a_burst_is_one_batch_and_a_file_being_written_is_indexed_once_complete(
        tmp_path: Path, watching: Callable[..., Watcher]) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "orca.txt").write_text(ORCA)
    a = Assistant()
    w = watching(a, docs, settle=1.5)
    for i in range(20):
        (docs / f"note{i:02}.txt").write_text(f"Note {i}: the depot number {i} stores {i * 7} crates of apples.")
    until(lambda: len(w.batches) > 1, "the burst")
    time.sleep(2)
    assert len(w.batches) == 2 and w.batches[1].count("added") == 20

    # A slow writer: the first half, a pause shorter than the settle time, then the rest.
    big = docs / "log.txt"
    with open(big, "w") as f:
        f.write("The harbour log, first half: the tug Brage towed the barge at dawn.\n")
        f.flush()
        time.sleep(0.8)
        f.write("Second half: the barge carried timber to Narvik.\n")
    until(lambda: "log.txt" in names(a), "the slowly written file")
    time.sleep(2)  # nothing more should follow: it was indexed once, complete
    assert [s for s in w.statuses() if s[0] == "log.txt"] == [("log.txt", "added")]
    assert "Narvik" in a.document_text(str(big))
    assert not w.errors


def test_watching_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file or folder"):
        watch(Assistant(), [tmp_path / "missing"])


def _made_by_another_user(link: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make a symbolic link look made by another user: owned by another uid (as root), or qa running as another."""
    import os

    if os.geteuid() == 0:
        os.lchown(link, 4321, 4321)
    else:
        monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 1)


def test_another_users_links_are_not_followed(tmp_path: Path, watching: Callable[..., Watcher],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A colleague who may write to a watched folder but not read a file of the user qa runs as links it in
    (`notes.md -> /home/admin/private.md`, or a folder): qa read, indexed and quoted it to everyone."""
    docs, private, staging = tmp_path / "docs", tmp_path / "private", tmp_path / "staging"
    for folder in (docs, private, staging):
        folder.mkdir()
    secret = "The admin password of the Kestrel console is hunter2-kestrel."
    (private / "admin.md").write_text(secret)
    (docs / "orca.txt").write_text(ORCA)

    def link_in(name: str, target: Path) -> None:  # made apart, then moved in whole (as `mv` would)
        (staging / name).symlink_to(target)
        _made_by_another_user(staging / name, monkeypatch)
        (staging / name).rename(docs / name)

    link_in("notes.md", private / "admin.md")
    link_in("shared", private)
    a = Assistant()
    w = watching(a, docs)
    failed = {name for name, status in w.statuses() if status == "failed"}
    assert failed == {"notes.md", "shared"} and names(a) == ["orca.txt"], w.statuses()
    reasons = [f.reason for b in w.batches for f in b.files if f.status == "failed"]
    assert all("symbolic link made by another user" in r for r in reasons), reasons
    # Linked while watched, and a file added to a linked folder: not followed either.
    link_in("later.md", private / "admin.md")
    (private / "more.md").write_text(secret.replace("admin", "backup"))
    (docs / "ferry.txt").write_text(FERRY)
    until(lambda: "ferry.txt" in names(a), "the added file")
    until(lambda: ("later.md", "failed") in w.statuses(), "the link's refusal")
    time.sleep(2)  # what the watcher saw of shared/more.md is handled by now
    assert sorted(names(a)) == ["ferry.txt", "orca.txt"], w.statuses()
    assert "hunter2" not in a.ask("What is the admin password of the Kestrel console?").answer


def test_one_folder_given_alone_as_a_string(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "ferries.txt").write_text("The ferry to Bergen leaves at nine every Tuesday.\n", encoding="utf-8")
    stop, reports = threading.Event(), []

    def first_batch(report: IngestReport) -> None:
        reports.append(report)
        stop.set()

    # Was: "Cannot watch /…/t, /…/m, /…/p, …: no such file or folder", one path per character.
    watch(Assistant(), str(folder), stop=stop, on_batch=first_batch)
    assert [(Path(f.path).name, f.status) for f in reports[0].files] == [("ferries.txt", "added")]
