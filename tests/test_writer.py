"""The background writer: one ingest at a time, the others queued with their position, a full queue refused."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from qa.errors import IndexBusyError, QAError
from qa.serving.writer import QueueFullError, Writer
from qa.types import FileResult, IngestReport


class GatedAssistant:
    """Stands in for Assistant.ingest so a test decides when each ingest ends (the real one is tested in test_server)."""

    def __init__(self) -> None:
        self.gates: list[threading.Event] = []
        self.started = threading.Semaphore(0)
        self.running = 0
        self.most_at_once = 0
        self.embedder = object()

    def store(self, create: bool = False) -> None:
        return None

    busy_for = 0  # ingests refused as busy before the index is free (another ingest holds it)

    def ingest(self, *paths: Path, progress: Any = None) -> IngestReport:
        if self.busy_for > 0:
            self.busy_for -= 1
            raise IndexBusyError("Another qa ingest (pid 7 on host) is writing to the index; wait for it to "
                                 "finish and run again.")
        gate = threading.Event()
        self.gates.append(gate)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        self.started.release()
        gate.wait(30)
        self.running -= 1
        if any(p.name == "broken.txt" for p in paths):
            raise QAError("broken.txt cannot be read")
        progress(len(paths), len(paths), str(paths[-1]))
        return IngestReport(tuple(FileResult(str(p), "failed" if p.suffix == ".xyz" else "added", 1,
                                             "unsupported" if p.suffix == ".xyz" else "") for p in paths))


def files(tmp_path: Path, *names: str) -> list[Path]:
    out = []
    for n in names:
        (tmp_path / n).write_text("x")
        out.append(tmp_path / n)
    return out


def test_one_ingest_at_a_time_and_the_queue_shows_positions(tmp_path: Path) -> None:
    a = GatedAssistant()
    w = Writer(a, max_jobs=3)  # type: ignore[arg-type]
    first = w.submit(files(tmp_path, "a.txt", "b.xyz"))
    assert a.started.acquire(timeout=10)
    second = w.submit(files(tmp_path, "broken.txt"))
    third = w.submit(files(tmp_path, "c.txt"))
    assert [(j.id, j.state, j.position) for j in w.jobs()] == [
        (first.id, "running", 0), (second.id, "queued", 1), (third.id, "queued", 2)]
    with pytest.raises(QueueFullError, match="3 uploads"):
        w.submit(files(tmp_path, "d.txt"))
    a.gates[0].set()
    done = w.wait(first.id, timeout=10)
    assert done.state == "done" and [(Path(r.path).name, r.status) for r in done.results] == [
        ("a.txt", "added"), ("b.xyz", "failed")]
    assert not (tmp_path / "b.xyz").exists() and (tmp_path / "a.txt").exists()  # only what the index holds
    assert a.started.acquire(timeout=10)
    assert w.job(third.id).position == 1
    a.gates[1].set()
    failed = w.wait(second.id, timeout=10)
    assert failed.state == "failed" and "cannot be read" in failed.error
    assert a.started.acquire(timeout=10)  # the writer goes on after a failed job
    a.gates[2].set()
    assert w.wait(third.id, timeout=10).state == "done" and w.jobs() == []
    assert a.most_at_once == 1
    w.close()


def test_an_upload_waits_while_another_ingest_holds_the_index(tmp_path: Path, monkeypatch) -> None:
    """`qa ingest` or the --watch thread holds the index: the upload says it waits (state "waiting", the
    other ingest named), tries again, and is indexed once the index is free; it fails with that message
    only after BUSY_WAIT_SECONDS."""
    import qa.serving.writer as writer_module

    monkeypatch.setattr(writer_module, "BUSY_RETRY_SECONDS", 0.2)
    a = GatedAssistant()
    a.busy_for = 3
    w = Writer(a)  # type: ignore[arg-type]
    job = w.submit(files(tmp_path, "a.txt"))
    seen = w.wait(job.id, timeout=10, changed=w.job(job.id))
    while seen.state != "waiting":
        seen = w.wait(job.id, timeout=10, changed=seen)
    assert "Another qa ingest (pid 7 on host)" in seen.error and not seen.finished
    assert a.started.acquire(timeout=10)  # the fourth try gets the index
    assert a.busy_for == 0
    a.gates[0].set()
    done = w.wait(job.id, timeout=10)
    assert done.state == "done" and done.error == "" and [r.status for r in done.results] == ["added"]

    monkeypatch.setattr(writer_module, "BUSY_WAIT_SECONDS", 1.0)
    a.busy_for = 1000
    late = w.submit(files(tmp_path, "b.txt"))
    failed = w.wait(late.id, timeout=10)
    assert failed.state == "failed" and "Another qa ingest (pid 7 on host)" in failed.error
    assert 900 < a.busy_for < 1000  # tried every 0.2 s for about a second, then gave up
    w.close()
