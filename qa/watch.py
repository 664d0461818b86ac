"""Keep the index in sync with folders: `watchfiles` events, debounced into batches, applied once files settle.

A burst of changes (a copy of 200 files, an editor's save-by-rename) arrives as one batch. A file
whose modification time is younger than `settle` seconds is still being written: it waits for a
later round. Existing paths go through `Assistant.ingest` (incremental, by content hash), deleted
ones (and the old name of a renamed one) through the writer that removes documents.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, IndexBusyError, QAError
from .reading.formats import SUPPORTED_SUFFIXES, link_maker
from .types import FileResult, IngestReport

if TYPE_CHECKING:
    from .assistant import Assistant

SETTLE_SECONDS = 1.0  # a file modified more recently than this is presumed still being written
DEBOUNCE_MS = 3000  # longest a burst is gathered before it is handed over
STEP_MS = 300  # a burst ends after this long without a new change
BUSY_RETRY_SECONDS = 2.0  # another writer holds the index: try the batch again after this

OnBatch = Callable[[IngestReport], None]
OnError = Callable[[str], None]


def watch(assistant: Assistant, paths: Sequence[str | Path] | str | Path, stop: threading.Event | None = None,
          on_batch: OnBatch | None = None, on_error: OnError | None = None, initial: bool = True,
          settle: float = SETTLE_SECONDS, progress: Any = None) -> None:
    """Watch files and folders until `stop` is set (or Ctrl-C), keeping the index in step with them.

    With `initial`, everything under `paths` is ingested first (after the watcher is armed, so
    nothing changed meanwhile is missed).
    """
    from watchfiles import Change, DefaultFilter
    from watchfiles import watch as watch_changes

    # One path may be given alone, as to ingest(): a string is not a sequence of one-letter paths.
    roots = [Path(p).absolute() for p in ([paths] if isinstance(paths, str | Path) else paths)]
    missing = [str(p) for p in roots if not p.exists()]
    if missing:
        raise ConfigError(f"Cannot watch {', '.join(missing)}: no such file or folder.")
    index_dir = Path(assistant.settings.index_dir).absolute()

    def wanted(path: Path) -> bool:
        # The index's own files change with every write: watching them would never stop.
        if path == index_dir or index_dir in path.parents or any(part.startswith(".") for part in path.parts):
            return False
        root = next((r for r in roots if path == r or (r.is_dir() and r in path.parents)), None)
        # The watcher follows linked folders: one another user linked in is not followed, as ingest does not.
        return root is not None and not any(link_maker(q) is not None for q in path.parents if root in q.parents)

    class Filter(DefaultFilter):
        def __call__(self, change: Any, path: str) -> bool:
            return super().__call__(change, path) and wanted(Path(path))

    folders = sorted({str(r if r.is_dir() else r.parent) for r in roots})
    pending: dict[Path, Any] = {}  # path -> its latest change
    retry_at = 0.0
    first = initial
    for changes in watch_changes(*folders, watch_filter=Filter(), debounce=DEBOUNCE_MS, step=STEP_MS,
                                 stop_event=stop, rust_timeout=int(min(settle, 1.0) * 500) or 100,
                                 yield_on_timeout=True, raise_interrupt=False):
        if first:  # the watcher is armed: index what is there now
            first = False
            _run(lambda: assistant.ingest(*roots, progress=progress), on_batch, on_error)
        for change, path in changes:
            p = Path(path)
            # A folder that appears (moved or copied in) is ingested whole; other folder events are noise.
            if change == Change.added or p.suffix.lower() in SUPPORTED_SUFFIXES or not p.exists():
                pending[p] = change
        if not pending or time.monotonic() < retry_at:
            continue
        now = time.time()
        ready = [p for p in pending if _settled(p, now, settle)]
        if not ready:
            continue
        try:
            report = apply(assistant, ready)
        except IndexBusyError:
            retry_at = time.monotonic() + BUSY_RETRY_SECONDS  # keep them pending
            continue
        except Exception as e:  # noqa: BLE001 - one bad batch (a QAError, a store hiccup) must not stop the watch
            for p in ready:
                pending.pop(p, None)
            if on_error:
                on_error(str(e) if isinstance(e, QAError) else f"{type(e).__name__}: {e}")
            continue
        for p in ready:
            pending.pop(p, None)
        if on_batch and report.files:
            on_batch(report)


def _settled(path: Path, now: float, settle: float) -> bool:
    try:
        st = path.stat()
    except OSError:
        return True  # gone: nothing more will be written
    return path.is_dir() or now - st.st_mtime >= settle


def _run(work: Callable[[], IngestReport], on_batch: OnBatch | None, on_error: OnError | None) -> None:
    try:
        report = work()
    except QAError as e:
        if on_error:
            on_error(str(e))
        return
    if on_batch:
        on_batch(report)


def apply(assistant: Assistant, changed: Sequence[Path]) -> IngestReport:
    """One batch: ingest the changed paths that exist, remove the indexed documents at paths that are gone."""
    started = time.perf_counter()
    present = sorted(p for p in changed if p.exists() and (p.is_dir() or p.suffix.lower() in SUPPORTED_SUFFIXES))
    gone = [str(p) for p in changed if not p.exists()]
    files: list[FileResult] = []
    if present:
        report = assistant.ingest(*present)
        files += [f for f in report.files if f.status != "unchanged"]
    if gone:
        indexed = assistant.store().records()
        doomed = [s for s in indexed if any(s == g or s.startswith(g.rstrip(os.sep) + os.sep) for g in gone)]
        if doomed:
            removed = assistant.forget(doomed)
            files += [FileResult(s, "removed") for s in removed.removed]
    return IngestReport(tuple(files), assistant.store().count(), time.perf_counter() - started)


def start_thread(assistant: Assistant, paths: Sequence[str | Path], on_batch: OnBatch | None = None,
                 on_error: OnError | None = None) -> tuple[threading.Thread, threading.Event]:
    """Run `watch` in a daemon thread (for `qa serve --watch`); set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=watch, args=(assistant, paths), name="qa-watch", daemon=True,
                              kwargs={"stop": stop, "on_batch": on_batch, "on_error": on_error})
    thread.start()
    return thread, stop
