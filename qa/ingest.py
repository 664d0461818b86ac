"""Ingest: discover files, extract and split them, embed in batches, write to the store.

Work is batched across files (the embedding model is fastest on full batches) and streamed within
a file (a 50 MB file never exists as chunks all at once), but committed per file: a file counts
only once its catalogue record follows its last chunk, so an interrupted run leaves at most
uncommitted chunks, which readers ignore and `Store.repair` deletes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .embedding import encode
from .reading.formats import Chunk, SourceText, UnreadableFile, discover, file_digest, iter_chunks, load
from .store import Store, layout_id
from .types import FileResult, IngestReport

# (files done, fractional while a big file streams through; total files; current file)
Progress = Callable[[float, int, str], None]


RECENT_VECTORS = 20_000  # vectors kept to skip re-embedding repeated chunk texts (~30 MB)


@dataclass
class _Pending:
    source: SourceText
    chunks: int
    status: str


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
        self.flush_chunks = batch_size * 4  # chunks embedded and written per round
        self.max_file_bytes = max_file_bytes
        self._recent: OrderedDict[str, Any] = OrderedDict()
        # Called with (chunks, text characters) before each write; raises if the disk cannot hold them.
        self.reserve: Callable[[int, int], None] | None = None

    def ingest_paths(self, paths: list[Path], progress: Progress | None = None) -> IngestReport:
        """Index files and folders; drop indexed files under them that no longer exist."""
        started = time.perf_counter()
        files, skipped = discover(paths)
        results = [FileResult(str(p), "failed", reason=r) for p, r in skipped]
        records = self.store.records()
        roots = [p.absolute() for p in paths if p.exists()]
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
                            f"{size / 1e6:.0f} MB is over the {self.max_file_bytes / 1e6:.0f} MB limit; "
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
        changed = False
        queue: list[tuple[SourceText, list[Chunk]]] = []  # chunks waiting to be embedded and written
        finished: list[_Pending] = []  # files whose every chunk is queued or written: commit next flush
        queued = 0

        def flush() -> None:
            nonlocal queued, changed
            # Embed the queued chunks in full batches and write them; then commit the files they finish.
            self.store.renew_writer()
            if self.reserve is not None and (queue or finished):
                self.reserve(sum(len(cs) for _, cs in queue), sum(len(p.source.text) for p in finished))
            if queue:
                vectors = self._encode([c.text for _, cs in queue for c in cs])
                batch, pos = [], 0
                for source, cs in queue:
                    batch.append((source, cs, vectors[pos:pos + len(cs)]))
                    pos += len(cs)
                self.store.add_chunks(batch)
            if finished:
                self.store.commit([(p.source, p.chunks) for p in finished],
                                  [p.source for p in finished if p.status == "updated"])
                results.extend(FileResult(p.source.path, p.status, chunks=p.chunks) for p in finished)
                changed = True
            queue.clear()
            finished.clear()
            queued = 0

        for done, item in enumerate(items):
            self.store.renew_writer()
            if isinstance(item, FileResult):
                results.append(item)
            else:
                if self.splitter is None:
                    self.embedder, self.splitter = self._models()
                # A big file streams through in windows: its chunks are written as they are embedded,
                # and its catalogue record (the commit point) follows the last of them.
                current: list[Chunk] = []
                count = 0
                for chunk in iter_chunks(item, self.splitter):
                    current.append(chunk)
                    count += 1
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
                    finished.append(_Pending(item, count, "updated" if item.path in records else "added"))
                    if queued >= self.flush_chunks:
                        flush()
            if progress:
                progress(done + 1, total, item.path)
        flush()
        for source in gone:
            self.store.remove(source)
            results.append(FileResult(source, "removed"))
            changed = True
        self.store.set_state(state["generation"] + int(changed), dirty=False)
        return results

    def _encode(self, texts: list[str]) -> Any:
        """Vectors for texts; a text already embedded in this run (repeated boilerplate) is not redone."""
        import numpy as np

        todo = list(dict.fromkeys(t for t in texts if t not in self._recent))
        if todo:
            for t, v in zip(todo, encode(self.embedder, todo)):
                self._recent[t] = v
            while len(self._recent) > RECENT_VECTORS:
                self._recent.popitem(last=False)
        return np.stack([self._recent[t] for t in texts])
