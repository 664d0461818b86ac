"""Ingest: discover files, extract and split them, embed in batches, write to the store.

Work is batched across files (the embedding model is fastest on full batches) and streamed within
a file (a 50 MB file never exists as chunks all at once), but committed per file: a file counts
only once its catalogue record follows its last chunk, so an interrupted run leaves at most
uncommitted chunks, which readers ignore and `Store.repair` deletes.

With the local ONNX model, an ingest of more than one round encodes from its second round on in an
encoder process (`qa.onnx_encoder.EncoderProcess`), while this process writes the round before and
splits the next: splitting and writing, a sixth of the work, are then hidden behind the encoding.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .embedding import encode
from .onnx_encoder import EncoderProcess, cores
from .reading.formats import Chunk, SourceText, UnreadableFile, discover, file_digest, iter_chunks, load
from .store import Store, layout_id
from .types import FileResult, IngestReport

# (files done, fractional while a big file streams through; total files; current file)
Progress = Callable[[float, int, str], None]


HEAPS = 2  # glibc heaps (arenas) the threads of `qa ingest` and `qa serve` share: see bound_heaps
FIRST_ROUND = 64  # chunks of an ingest's first round when an encoder process may take the next ones
RECENT_VECTORS = 20_000  # vectors kept to skip re-embedding repeated chunk texts (~30 MB)


@dataclass
class _Pending:
    source: SourceText
    chunks: int
    status: str
    whole: bool = False  # its one chunk is the whole text (stored once: Store.commit)


def bound_heaps(heaps: int = HEAPS) -> None:
    """Make this process's threads share `heaps` glibc heaps (Linux); call it before they start.

    glibc gives every thread that allocates a heap of its own, up to 8 a core, and keeps what is freed in
    each: Chroma's Rust threads, ONNX Runtime's and the encode threads held 15 of them, 140 MB, while the
    messy-folder test's 50 MB file was written. Two heaps took 90 MB off that ingest's peak (650 to 562 MB)
    at the same speed. `qa serve`, which ingests uploads and watched folders, held 19-20 heaps after a 6 MB upload
    and five questions, 950-997 MB; with two, 682-719 MB (its threads: uvicorn's, Chroma's, ONNX Runtime's, the
    writer). A MALLOC_ARENA_MAX set by the user is kept.
    """
    try:
        glibc = (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):  # not Linux, or another C library: its own allocator
        glibc = False
    if glibc and "MALLOC_ARENA_MAX" not in os.environ:
        import ctypes

        ctypes.CDLL(None).mallopt(-8, heaps)  # M_ARENA_MAX


def _under(source: str, roots: list[Path]) -> bool:
    return any(source == str(r) or source.startswith(str(r).rstrip("/") + "/") for r in roots)


class Ingestor:
    """Turns files (or ready-made texts) into committed chunks in a Store."""

    def __init__(self, store: Store, models: Callable[[], tuple[Any, Any]], batch_size: int = 256,
                 max_file_bytes: int = 100 << 20) -> None:
        self.store = store
        self._models = models  # (embedder, splitter), loaded only when a file needs embedding
        self.embedder: Any = None
        self.splitter: Any = None
        self.batch_size = batch_size
        self.flush_chunks = batch_size * 4  # chunks embedded and written per round
        self.max_file_bytes = max_file_bytes
        self._recent: OrderedDict[str, Any] = OrderedDict()
        self._process: EncoderProcess | None = None  # during a big ingest
        self._process_failed = False
        # Called with (chunks, text characters) before each write; raises if the disk cannot hold them.
        self.reserve: Callable[[int, int], None] | None = None

    def ingest_paths(self, paths: list[Path], progress: Progress | None = None) -> IngestReport:
        """Index files and folders; drop indexed files under them that no longer exist."""
        started = time.perf_counter()
        files, skipped = discover(paths)
        results = [FileResult(str(p), "failed", reason=r) for p, r in skipped]
        records = self.store.records()
        roots = [Path(os.path.abspath(p)) for p in paths if p.exists()]
        present = {str(p) for p in files}
        gone = [s for s in records if _under(s, roots) and s not in present]
        # PDFs indexed before qa kept word boxes are read again once, to gain them.
        positioned = self.store.layout_ids() if any(p.suffix.lower() == ".pdf" for p in files) else set()

        def sources() -> Iterator[SourceText | FileResult]:
            for i, p in enumerate(files):
                try:
                    size = p.stat().st_size
                    if size > self.max_file_bytes:
                        yield FileResult(str(p), "failed", reason=(
                            f"{_mb(size)} MB is over the {_mb(self.max_file_bytes)} MB limit; "
                            "raise QA_MAX_FILE_MB to index it"))
                        continue
                    digest = file_digest(p)
                    rec = records.get(str(p))
                    if rec is not None and rec.digest == digest:
                        if p.suffix.lower() != ".pdf" or layout_id(str(p), digest) in positioned:
                            yield FileResult(str(p), "unchanged", chunks=0)
                            continue
                        self.store.remove(str(p))  # same digest: its old chunks would not be replaced
                    # OCR takes seconds a page: the progress bar moves with the pages of the file.
                    pages = (lambda f, i=i, p=p: progress(i + 0.99 * f, len(files), str(p))) if progress else None
                    yield load(p, digest, pages)
                except UnreadableFile as e:
                    yield FileResult(str(p), "failed", reason=str(e))
                except PermissionError:
                    yield FileResult(str(p), "failed", reason="permission denied; make it readable "
                                     "(chmod +r) or remove it")
                except OSError as e:
                    yield FileResult(str(p), "failed", reason=f"cannot read: {e.strerror or e}")

        results += self._run(sources(), len(files), records, gone, progress)
        return IngestReport(tuple(results), self.store.count(), time.perf_counter() - started)

    def ingest_texts(self, texts: Iterable[SourceText], total: int,
                     progress: Progress | None = None) -> IngestReport:
        """Index documents that are already text (benchmarks, uploads); ids are their `path`."""
        started = time.perf_counter()
        records = self.store.records()

        def sources() -> Iterator[SourceText | FileResult]:
            for t in texts:
                rec = records.get(t.path)
                yield FileResult(t.path, "unchanged") if rec and rec.digest == t.digest else t

        results = self._run(sources(), total, records, [], progress)
        return IngestReport(tuple(results), self.store.count(), time.perf_counter() - started)

    def _run(self, items: Iterable[SourceText | FileResult], total: int, records: dict[str, Any],
             gone: list[str], progress: Progress | None) -> list[FileResult]:
        state = self.store.state()
        if state["dirty"]:
            self.store.repair()
        self.store.set_state(state["generation"], dirty=True)
        results: list[FileResult] = []
        # An interrupted run may have committed files without a new generation: copies kept by generation
        # (the BM25 index) are then stale, so a run that repairs one always starts a new generation.
        changed = bool(state["dirty"])
        queue: list[tuple[SourceText, list[Chunk]]] = []  # chunks waiting to be embedded and written
        finished: list[_Pending] = []  # files whose every chunk is queued or written: commit next flush
        queued = 0
        # Rounds are written in order, each round's chunks before the records of the files it finishes:
        # that is the commit point. With an encoder process, round k encodes there while this thread
        # writes round k-1 and splits round k+1; at most two rounds are in flight.
        in_flight: _Round | None = None

        def write(job: _Round) -> None:
            nonlocal changed
            if job.chunks:
                vectors = self._collect(job)
                batch, pos = [], 0
                for source, cs in job.chunks:
                    batch.append((source, cs, vectors[pos:pos + len(cs)]))
                    pos += len(cs)
                self.store.add_chunks(batch)
            if job.files:
                self.store.commit([(p.source, p.chunks) for p in job.files],
                                  [p.source for p in job.files if p.status == "updated"],
                                  {p.source.path for p in job.files if p.whole})
                results.extend(FileResult(p.source.path, p.status, chunks=p.chunks) for p in job.files)
                changed = True

        def flush(last: bool = False) -> None:
            nonlocal queued, in_flight
            self.store.renew_writer()
            if self.reserve is not None and (queue or finished):
                self.reserve(sum(len(cs) for _, cs in queue), sum(len(p.source.text) for p in finished))
            rounds = [(list(queue), list(finished))]
            if last and self._process is not None:
                # Nothing overlaps the last round's write: its last chunks go as a round of their own, and
                # this process writes the rest while they are encoded (about 0.1 s less of one core idle).
                head, tail = _cut(queue, max(16, sum(len(cs) for _, cs in queue) // 4))
                if head:
                    rounds = [(head, []), (tail, list(finished))]
            queue.clear()
            finished.clear()
            queued = 0
            for chunks, files in rounds:
                job = self._submit([c for _, cs in chunks for c in cs], more=not last)
                job.chunks, job.files = chunks, files
                if in_flight is not None:
                    write(in_flight)
                in_flight = job
            # After the first round: short rounds while an encoder process takes them, full ones otherwise
            # (it could not start, or died).
            self.flush_chunks = self.batch_size if self._process is not None else self.batch_size * 4
            if last and in_flight is not None:
                job, in_flight = in_flight, None
                write(job)

        try:
            for done, item in enumerate(items):
                self.store.renew_writer()
                if isinstance(item, FileResult):
                    results.append(item)
                else:
                    if self.splitter is None:
                        self.embedder, self.splitter = self._models()
                        if _encoder_folder(self.embedder) is not None:
                            # Short rounds make a finer pipeline, and the first is shorter still: the
                            # encoder process starts while this process encodes it.
                            self.flush_chunks = FIRST_ROUND
                    # A big file streams through in windows: its chunks are written as they are embedded,
                    # and its catalogue record (the commit point) follows the last of them.
                    current: list[Chunk] = []
                    count = 0
                    whole = False
                    for chunk in iter_chunks(item, self.splitter):
                        current.append(chunk)
                        count += 1
                        whole = count == 1 and chunk.start == 0 and chunk.end == len(item.text)
                        queued += 1
                        if queued >= self.flush_chunks:
                            queue.append((item, current))
                            current = []
                            flush()
                            if progress:
                                progress(done + chunk.end / len(item.text), total, item.path)
                    if current:
                        queue.append((item, current))
                    if count == 0:
                        results.append(FileResult(item.path, "failed", reason="no text could be chunked"))
                    else:
                        finished.append(_Pending(item, count, "updated" if item.path in records else "added",
                                                 whole))
                        if queued >= self.flush_chunks:
                            flush()
                if progress:
                    progress(done + 1, total, item.path)
            flush(last=True)
        finally:
            if self._process is not None:  # on an error or an interrupt nothing more is written
                self._process.close()
                self._process = None
        for source in gone:
            self.store.remove(source)
            results.append(FileResult(source, "removed"))
            changed = True
        self.store.set_state(state["generation"] + int(changed), dirty=False)
        return results

    def _submit(self, chunks: list[Chunk], more: bool) -> _Round:
        """Start encoding a round: texts already embedded in this run (repeated boilerplate) are not redone,
        and the word pieces the splitter found for them (`Chunk.token_ids`) go to the model with them.

        The first round of an ingest that has more to come is encoded here while the encoder process
        starts (about half a second); the rounds after it go to that process. Small ingests (one
        round), remote embeddings and torch encode here, one round after the other.
        """
        texts = [c.text for c in chunks]
        known = {t: self._recent[t] for t in texts if t in self._recent}
        ids = {c.text: c.token_ids for c in chunks if c.text not in known}
        todo = list(ids)
        job = _Round(texts, todo, known, pieces=[ids[t] for t in todo] if any(ids.values()) else None)
        if not todo:
            return job
        if self._process is not None:
            self._process.submit(todo, job.pieces)  # job.done stays None until _collect receives it
            return job
        folder = _encoder_folder(self.embedder)
        if more and folder is not None and not self._process_failed and cores() > 1:
            try:
                self._process = EncoderProcess(folder, getattr(self.embedder, "embed_batch_size", 64))
            except OSError:  # no processes left, no /dev/shm: encode here
                self._process_failed = True
        job.done = encode(self.embedder, todo, job.pieces)
        return job

    def _collect(self, job: _Round) -> Any:
        """The vectors of a round's texts, in order, once encoded."""
        import numpy as np

        if job.todo and job.done is None:  # sent to the encoder process
            try:
                if self._process is None:
                    raise EOFError("the encoder process was stopped")
                job.done = self._process.result()
            except Exception:  # noqa: BLE001 - whatever went wrong there, encoding here says it plainly
                # The encoder process died (killed, out of memory) or failed: this round and the rest
                # encode here.
                self._process_failed = True
                if self._process is not None:
                    self._process.close()
                    self._process = None
                job.done = encode(self.embedder, job.todo, job.pieces)
        if job.todo:
            for t, v in zip(job.todo, job.done):
                self._recent[t] = v
                job.known[t] = v
            while len(self._recent) > RECENT_VECTORS:
                self._recent.popitem(last=False)
        return np.stack([job.known[t] for t in job.texts])


@dataclass
class _Round:
    """One round of chunks: their texts, those to encode, vectors already known, and the encoding."""

    texts: list[str]
    todo: list[str]
    known: dict[str, Any]
    pieces: list[list[int] | None] | None = None  # word pieces of `todo` where the splitter knew them
    done: Any = None  # encoded vectors of `todo`; None while the encoder process has them
    chunks: list[tuple[SourceText, list[Chunk]]] = field(default_factory=list)
    files: list[_Pending] = field(default_factory=list)


def _cut(queue: list[tuple[SourceText, list[Chunk]]], n: int) -> tuple[list[tuple[SourceText, list[Chunk]]],
                                                                       list[tuple[SourceText, list[Chunk]]]]:
    """The queued chunks as two rounds, the second of its last `n` chunks (a document's may go to both)."""
    head = [(d, list(cs)) for d, cs in queue]
    tail: list[tuple[SourceText, list[Chunk]]] = []
    while head and n > 0:
        d, cs = head[-1]
        take = min(n, len(cs))
        tail.insert(0, (d, cs[len(cs) - take:]))
        n -= take
        if take == len(cs):
            head.pop()
        else:
            head[-1] = (d, cs[:len(cs) - take])
    return head, tail


def _encoder_folder(embedder: Any) -> Path | None:
    """The exported model folder an encoder process can load: the local ONNX model's, else None."""
    folder = getattr(embedder, "folder", None)
    return Path(folder) if isinstance(folder, str) and (Path(folder) / "model.onnx").exists() else None


def _mb(size: float) -> str:
    """Bytes as megabytes for a message: 250, 1234.5, 0.01 (not 0 for a limit of 0.01)."""
    return f"{size / 1e6:.2f}".rstrip("0").rstrip(".")
