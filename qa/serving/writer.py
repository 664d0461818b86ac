"""The one writer of a serving process: uploads are indexed by a single background thread, in turn.

Questions never wait for an ingest: they are answered from the chunks already committed while the
writer works (ingest commits a file only after all its chunks are written). Jobs queue behind the
running one; each has an id, a state and its position in the queue, so the UI and the HTTP API can
show where an upload stands and a client can poll it.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import IndexBusyError, QAError
from ..types import Answer, FileResult
from .uploads import Staged, discard, place

if TYPE_CHECKING:
    from ..assistant import Assistant

MAX_JOBS = 8  # uploads queued or running at once; more are refused (HTTP 429) rather than piled up
KEEP_DONE = 200  # finished jobs remembered for polling
WRITER_NICE = 10  # the writer thread yields the CPU to question threads on a busy machine
BUSY_RETRY_SECONDS = 2.0  # another ingest holds the index (`qa ingest`, the --watch thread): try again after
BUSY_WAIT_SECONDS = 600.0  # ... for at most this long, then the upload fails with that ingest's message


class QueueFullError(QAError):
    """Too many uploads are waiting for the writer."""


@dataclass(frozen=True)
class Job:
    """One upload as the writer sees it; `position` is 0 while it runs, n when n jobs are ahead of it."""

    id: str
    files: tuple[str, ...]
    state: str = "queued"  # queued | waiting (another ingest holds the index; `error` says which) | running | done | failed
    position: int = 0
    results: tuple[FileResult, ...] = ()
    error: str = ""
    done: float = 0.0  # files indexed so far, fractional while a big file streams in
    total: int = 0
    current: str = ""
    created: float = field(default_factory=time.time)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    def to_dict(self) -> dict[str, Any]:
        """The JSON of a job in the HTTP API."""
        return {"id": self.id, "state": self.state, "position": self.position, "files": list(self.files),
                "results": [file_result_dict(r) for r in self.results], "error": self.error,
                "progress": {"done": round(self.done, 3), "total": self.total, "current": self.current}}


def file_result_dict(r: FileResult) -> dict[str, Any]:
    """One file's outcome as the API returns it (the fields the UI shows)."""
    return {"path": r.path, "name": Path(r.path).name, "status": r.status, "chunks": r.chunks, "reason": r.reason}


def metered(answers: Iterator[Answer], assistant: Assistant, writer: Writer) -> Iterator[Answer]:
    """Yield an answer stream, computing each step in the process's answer slot when answering is CPU-bound."""
    # Answering on this machine's CPU (extractive, local model) is mostly Python under the GIL: two
    # questions in parallel took longer than the same two in turn. A remote model (openai) mostly
    # waits on the network, so its questions run side by side.
    slot = writer.answer_slot if assistant.settings.llm != "openai" else nullcontext()
    while True:
        with slot:  # held while the next answer is computed, not while a client reads it
            try:
                ans = next(answers)
            except StopIteration:
                return
        yield ans


def prepare(assistant: Assistant, lock: threading.Lock) -> None:
    """Build the assistant's retriever and composer once, under `lock`, before answering."""
    # Lazily built parts are not safe to build from two threads at once (two models, two stores).
    with lock:
        assistant.retriever()
        assistant.composer()


class Writer:
    """A single worker thread that runs `assistant.ingest` for queued jobs, one at a time."""

    def __init__(self, assistant: Assistant, max_jobs: int = MAX_JOBS) -> None:
        self.assistant = assistant
        self.max_jobs = max_jobs
        # Guards the assistant's lazily built parts (store, embedder, retriever, composer), which the
        # writer and the question threads would otherwise each build on first use.
        self.parts_lock = threading.Lock()
        # One CPU-bound answer at a time (see `metered`); questions never wait for the writer itself.
        self.answer_slot = threading.BoundedSemaphore(1)
        self._cond = threading.Condition()  # guards _jobs and _queue; notified whenever a job changes
        self._jobs: dict[str, Job] = {}
        self._queue: deque[str] = deque()  # ids of jobs not finished, the running one first
        self._extra: dict[str, tuple[FileResult, ...]] = {}  # results decided before ingest (refused files)
        self._staged: dict[str, Staged] = {}  # uploads of jobs not yet run, moved into place when they run
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- submitting and watching ------------------------------------------------------------------
    def check_room(self) -> None:
        """Raise QueueFullError if a new job would be refused (checked before saving its files)."""
        with self._cond:
            if len(self._queue) >= self.max_jobs:
                raise QueueFullError(f"{len(self._queue)} uploads are already queued or being indexed; "
                                     "wait for one to finish and upload again.")

    def submit(self, files: list[Path] | Staged) -> Job:
        """Queue the ingest of files in place, or of an upload (`qa.serving.uploads.stage`): its files are
        moved into place when the job runs, and those it refused (too large) are reported with it. A
        refused upload (queue full, shutting down) is discarded."""
        staged = files if isinstance(files, Staged) else None
        paths = staged.destinations if staged is not None else list(files)
        with self._cond:
            try:
                if self._closed:
                    raise QAError("The server is shutting down; upload again after it restarts.")
                self.check_room()  # the condition's lock is reentrant
            except QAError:
                if staged is not None:
                    discard(staged)
                raise
            job = Job(uuid.uuid4().hex[:16], tuple(str(p) for p in paths), total=len(paths))
            self._jobs[job.id] = job
            self._extra[job.id] = staged.refused if staged is not None else ()
            if staged is not None:
                self._staged[job.id] = staged
            self._queue.append(job.id)
            self._positions()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="qa-writer", daemon=True)
                self._thread.start()
            self._cond.notify_all()
            return self._jobs[job.id]

    def job(self, job_id: str) -> Job | None:
        """The job's current state, or None for an unknown (or long forgotten) id."""
        with self._cond:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        """Jobs still queued or running, in order."""
        with self._cond:
            return [self._jobs[i] for i in self._queue]

    def wait(self, job_id: str, timeout: float | None = None, changed: Job | None = None) -> Job:
        """Block until the job finishes (or, given `changed`, until it differs from that), or timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                job = self._jobs[job_id]
                if job.finished or (changed is not None and job != changed):
                    return job
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return job
                self._cond.wait(left)

    def close(self) -> None:
        """Refuse new jobs; the running one is finished by its thread (ingest is safe to interrupt)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # --- the worker ---------------------------------------------------------------------------------
    def _positions(self) -> None:
        for pos, i in enumerate(self._queue):
            self._jobs[i] = replace(self._jobs[i], position=pos)

    def _update(self, job_id: str, **changes: Any) -> None:
        with self._cond:
            self._jobs[job_id] = replace(self._jobs[job_id], **changes)
            self._cond.notify_all()

    def _run(self) -> None:
        try:  # Linux threads have their own nice value: questions get the CPU first when it is scarce
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)
        except (AttributeError, OSError):
            pass
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                job = self._jobs[self._queue[0]]
            self._update(job.id, state="running")
            try:
                if (staged := self._staged.pop(job.id, None)) is not None:
                    place(staged)
                results = self._ingest_when_free(job)
                self._update(job.id, state="done", results=self._extra.pop(job.id, ()) + results,
                             done=float(job.total), error="")
            except QAError as e:
                self._update(job.id, state="failed", error=str(e), results=self._extra.pop(job.id, ()))
            except Exception as e:  # the writer must survive any one bad job
                self._update(job.id, state="failed", error=f"{type(e).__name__}: {e}",
                             results=self._extra.pop(job.id, ()))
            with self._cond:
                self._queue.popleft()
                self._positions()
                self._forget()
                self._cond.notify_all()

    def _ingest_when_free(self, job: Job) -> tuple[FileResult, ...]:
        """Ingest the job; while another ingest holds the index (a `qa ingest`, the --watch thread, another
        replica), the job waits, says so, and tries again, up to BUSY_WAIT_SECONDS."""
        deadline = time.monotonic() + BUSY_WAIT_SECONDS
        while True:
            try:
                return self._ingest(job)
            except IndexBusyError as e:
                with self._cond:
                    if self._closed or time.monotonic() + BUSY_RETRY_SECONDS > deadline:
                        raise
                    self._jobs[job.id] = replace(self._jobs[job.id], state="waiting", error=str(e))
                    self._cond.notify_all()
                    self._cond.wait(BUSY_RETRY_SECONDS)  # close() wakes it
                    if self._closed:
                        raise

    def _ingest(self, job: Job) -> tuple[FileResult, ...]:
        paths = [Path(p) for p in job.files]
        if not paths:
            return ()

        def progress(done: float, total: int, item: str) -> None:  # (a waiting job runs from here on)
            self._update(job.id, done=done, total=total, current=Path(item).name, state="running", error="")

        with self.parts_lock:
            self.assistant.store(create=True)
            self.assistant.embedder  # noqa: B018 (built here, not by ingest racing a question thread)
        report = self.assistant.ingest(*paths, progress=progress)
        for r in report.files:  # keep only the uploads the index holds
            if r.status == "failed" and Path(r.path) in paths:
                Path(r.path).unlink(missing_ok=True)
        return report.files

    def _forget(self) -> None:
        done = [i for i, j in self._jobs.items() if j.finished]
        for i in done[:-KEEP_DONE] if len(done) > KEEP_DONE else ():
            del self._jobs[i]
