"""Ingest: discover files, extract and split them, embed in batches, write to the store.

Work is batched across files (the embedding model is fastest on full batches) but committed per
file, so an interrupted run loses at most the files in flight, and `Store.repair` cleans those up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .embedding import encode
from .reading import Chunk, SourceText, UnreadableFile, discover, file_digest, load, split
from .store import Store
from .types import FileResult, IngestReport

Progress = Callable[[int, int, str], None]  # (done, total, current item)


@dataclass
class _Pending:
    source: SourceText
    chunks: list[Chunk]
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
        self.batch_size = batch_size
        self.max_file_bytes = max_file_bytes

    def ingest_paths(self, paths: list[Path], progress: Progress | None = None) -> IngestReport:
        """Index files and folders; drop indexed files under them that no longer exist."""
        started = time.perf_counter()
        files, skipped = discover(paths)
        results = [FileResult(str(p), "failed", reason=r) for p, r in skipped]
        records = self.store.records()
        roots = [p.absolute() for p in paths if p.exists()]
        present = {str(p) for p in files}
        gone = [s for s in records if _under(s, roots) and s not in present]

        def sources() -> Iterator[SourceText | FileResult]:
            for p in files:
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
                        yield FileResult(str(p), "unchanged", chunks=0)
                        continue
                    yield load(p, digest)
                except UnreadableFile as e:
                    yield FileResult(str(p), "failed", reason=str(e))
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
        done = 0
        queue: list[_Pending] = []
        queued_chunks = 0

        def flush() -> None:
            nonlocal queued_chunks, changed
            # Embed all queued chunks in full batches, write them, then commit their files at once.
            if not queue:
                return
            flat = [c.text for p in queue for c in p.chunks]
            vectors = encode(self.embedder, flat)
            batch, pos = [], 0
            for p in queue:
                batch.append((p.source, p.chunks, vectors[pos:pos + len(p.chunks)]))
                pos += len(p.chunks)
            self.store.add_chunks(batch)
            self.store.commit([(p.source, len(p.chunks)) for p in queue],
                              [p.source for p in queue if p.status == "updated"])
            results.extend(FileResult(p.source.path, p.status, chunks=len(p.chunks)) for p in queue)
            changed = True
            queue.clear()
            queued_chunks = 0

        for item in items:
            done += 1
            if isinstance(item, FileResult):
                results.append(item)
            else:
                if self.splitter is None:
                    self.embedder, self.splitter = self._models()
                chunks = split(item, self.splitter)
                if not chunks:
                    results.append(FileResult(item.path, "failed", reason="no text could be chunked"))
                else:
                    status = "updated" if item.path in records else "added"
                    queue.append(_Pending(item, chunks, status))
                    queued_chunks += len(chunks)
                    if queued_chunks >= self.batch_size * 4:
                        flush()
            if progress:
                progress(done, total, item.path)
        flush()
        for source in gone:
            self.store.remove(source)
            results.append(FileResult(source, "removed"))
            changed = True
        self.store.set_state(state["generation"] + int(changed), dirty=False)
        return results
