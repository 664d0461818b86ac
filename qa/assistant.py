"""The one place that wires settings into a store, an embedder, a retriever and a composer."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from .chat import condense
from .errors import ConfigError, IndexBusyError, QAError
from .ingest import Ingestor, Progress
from .llm import describe_backend
from .prompts import EMPTY_QUESTION, NOT_FOUND, QUESTION_TOO_LONG
from .reading import SourceText
from .settings import Settings
from .store import Store, open_client, prepare_index_dir
from .types import Answer, Citation, IngestReport, Status

EMBED_DIM = 384
MAX_QUESTION_CHARS = 2000


class Assistant:
    """Question answering over a folder of documents: `Assistant().ingest("seeds/")`, `.ask("...")`."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        from pydantic import ValidationError

        try:
            base = settings or Settings()
            self.settings = Settings.model_validate({**base.model_dump(), **overrides}) if overrides else base
        except ValidationError as e:
            err = e.errors()[0]
            name = ".".join(str(x) for x in err["loc"])
            # The value is not repeated for a key, or for an unknown name (it may be a key under a wrong name).
            secret = "key" in name or err["type"] == "extra_forbidden"
            value = "" if secret else f" = {err.get('input')!r}"
            raise ConfigError(f"Setting {name} (QA_{name.upper()}){value}: {err['msg']}") from None
        self._embedder: Any = None
        self._store: Store | None = None
        self._retriever: Any = None
        self._composer: Any = None
        self._layouts: dict[str, tuple[str, Any]] = {}  # source -> (digest, word boxes or None)
        self._layouts_lock = threading.Lock()  # questions are answered on several threads (qa serve)

    @classmethod
    def from_settings(cls, settings: Settings) -> Assistant:
        """Build from an explicit settings object."""
        return cls(settings)

    # --- parts, built on first use so that `qa status` never loads torch -----------------------
    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from .embedding import load_embedder

            self._embedder = load_embedder(self.settings.embed_model, self.settings.embed_batch_size)
        return self._embedder

    def store(self, create: bool = False) -> Store:
        """The Chroma store; `create` makes a new index where none exists."""
        if self._store is None:
            s = self.settings
            client = open_client(s.index_dir, s.chroma_url, create)
            self._store = Store(client, s.collection, s.embed_model, EMBED_DIM, create)
        return self._store

    @property
    def backend(self) -> str:
        """Which answer backend is in use."""
        return self.settings.llm

    @contextmanager
    def _writing(self) -> Iterator[Store]:
        """Hold the right to write: a file lock for this index folder, a lease in the collection."""
        from filelock import FileLock, Timeout

        s = self.settings
        lock_dir = Path(s.index_dir)
        prepare_index_dir(lock_dir)
        lock = FileLock(str(lock_dir / ".ingest.lock"), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise IndexBusyError(
                f"Another qa ingest is writing to {lock_dir}; wait for it to finish and run again."
            ) from None
        try:
            # The lease also stops writers that do not share this folder: other hosts and replicas
            # of a Chroma server, whose repair of "interrupted" work would delete each other's chunks.
            store = self.store(create=True)
            store.acquire_writer(f"collection {s.collection!r} at {s.chroma_url or lock_dir}")
            try:
                yield store
            finally:
                store.release_writer()
        finally:
            lock.release()

    def _ingestor(self) -> Ingestor:
        from .embedding import token_counter
        from .reading import make_splitter

        s = self.settings

        def models() -> tuple[Any, Any]:
            return self.embedder, make_splitter(s.chunk_size, s.chunk_overlap, token_counter(self.embedder))

        return Ingestor(self.store(create=True), models, max_file_bytes=int(s.max_file_mb * 1e6))

    # --- public API ---------------------------------------------------------------------------
    def ingest(self, *paths: str | Path, progress: Progress | None = None) -> IngestReport:
        """Index files and folders (default `seeds/`); unchanged files are not re-embedded."""
        targets = [Path(p) for p in paths] or [Path("seeds")]
        with self._writing():
            return self._ingestor().ingest_paths(targets, progress)

    def ingest_texts(self, texts: list[SourceText], progress: Progress | None = None) -> IngestReport:
        """Index ready-made texts keyed by their `path` (used by `qa eval`)."""
        with self._writing():
            return self._ingestor().ingest_texts(texts, len(texts), progress)

    def retriever(self) -> Any:
        """The hybrid retriever over the store."""
        if self._retriever is None:
            from .retrieval import Retriever

            s = self.settings
            cache = Path(s.index_dir) / "bm25" / s.collection
            self._retriever = Retriever(self.store(), self.embedder, s.retrieval, s.dense_weight, cache, s.fusion)
        return self._retriever

    def composer(self) -> Any:
        """The answer composer `settings.llm` chooses: extractive, or a model with verified citations."""
        if self._composer is None:
            from .generation import make_composer

            self._composer = make_composer(self.settings, self.embedder)
        return self._composer

    def ask(self, question: str, top_k: int | None = None, history: Sequence[str] = ()) -> Answer:
        """Answer a question from the indexed documents, citing exact spans."""
        *_, final = self.stream(question, top_k, history)
        return final

    def stream(self, question: str, top_k: int | None = None, history: Sequence[str] = ()) -> Iterator[Answer]:
        """Yields the answer as it grows, one cited sentence at a time; the last yield is final.

        `history` holds the earlier questions of a conversation, so follow-ups are understood.
        """
        started = time.perf_counter()
        q = " ".join(question.split())
        if not q or len(q) > MAX_QUESTION_CHARS:  # answering the first part of a question would be guessing
            text = QUESTION_TOO_LONG.format(length=len(q), limit=MAX_QUESTION_CHARS) if q else EMPTY_QUESTION
            yield Answer(question=question, answer=text, answered=False, backend=self.backend)
            return
        # Earlier questions refused as too long would flood the retrieval query and the model's prompt.
        history = [h for h in history if len(" ".join(h.split())) <= MAX_QUESTION_CHARS]
        query = condense(q, history)
        passages = tuple(self.retriever().retrieve(query, top_k or self.settings.top_k))
        composer = self.composer()
        if getattr(composer, "generative", False):
            for d in composer.drafts(q, passages, history):
                yield Answer(question=question, answer=d.text, answered=d.answered, citations=self._placed(d.citations),
                             related=passages, backend=self.backend, seconds=time.perf_counter() - started,
                             verified_sentences=d.verified, total_sentences=d.total)
            return
        text, citations = "", []
        for sentence, citation in composer.stream(q, list(passages)):
            text = f"{text} {sentence}" if text else sentence
            citations.append(self._place(citation))
            yield Answer(question=question, answer=text, answered=True, citations=tuple(citations),
                         related=passages, backend=self.backend, seconds=time.perf_counter() - started,
                         verified_sentences=len(citations), total_sentences=len(citations))
        if not citations:
            yield Answer(question=question, answer=NOT_FOUND, answered=False, related=passages,
                         backend=self.backend, seconds=time.perf_counter() - started)

    def document_text(self, source: str) -> str:
        """The extracted text of an indexed document, which citation offsets index."""
        doc = self.store().document(source)
        if doc is None:
            raise QAError(f"{source} is not in the index. Run: qa ingest {source}")
        return doc[0]

    def status(self) -> Status:
        """Index location, size and contents."""
        s = self.settings
        store = self.store()
        size = sum(f.stat().st_size for f in Path(s.index_dir).rglob("*") if f.is_file()) if not s.chroma_url else 0
        return Status(index_dir=str(Path(s.index_dir).absolute()), documents=len(store.records()),
                      chunks=store.count(), embed_model=s.embed_model, size_bytes=size,
                      backend=describe_backend(s), chroma_url=s.chroma_url)

    # --- positions on the page (PDFs and images) ----------------------------------------------------
    def _layout(self, source: str) -> tuple[str, Any] | None:
        """(digest, word boxes) of an indexed PDF or image, cached while its digest stays the same."""
        with self._layouts_lock:
            known = self._layouts.get(source)
        got = self.store().layout(source, known)
        with self._layouts_lock:
            if got is None:
                self._layouts.pop(source, None)
            else:
                if len(self._layouts) >= 16 and source not in self._layouts:  # big PDFs: MBs each
                    self._layouts.pop(next(iter(self._layouts)))
                self._layouts[source] = got
        return got if got is not None and got[1] is not None else None

    def _place(self, c: Citation) -> Citation:
        """The citation with its page and word boxes, when its document has them."""
        if c.boxes:
            return c
        got = self._layout(c.source)
        if got is None:
            return c
        layout = got[1]
        page = layout.page_of(c.start)
        # `location` came from the passage's first page; the cited sentence may start on a later one.
        return replace(c, page=page, boxes=layout.boxes(c.start, c.end),
                       location=f"page {page}" if page else c.location)

    def _placed(self, citations: Sequence[Citation]) -> tuple[Citation, ...]:
        return tuple(self._place(c) for c in citations)

    def page_image(self, source: str, page: int, start: int | None = None, end: int | None = None,
                   crop: bool = False) -> bytes:
        """PNG of a page of an indexed PDF or image, the words of `[start, end)` highlighted.

        `crop` keeps only those words and a margin. Cached under `<index>/pages/` by the file's
        digest, page, span and crop.
        """
        from .pages import render_page
        from .reading import file_digest

        got = self._layout(source)
        if got is None:
            raise QAError(f"{source} is not an indexed PDF or image; only those have page images.")
        digest, layout = got
        span = (start, end) if start is not None and end is not None and 0 <= start < end else None
        cache = Path(self.settings.index_dir) / "pages" / (
            f"{digest[:24]}-{int(page)}" + (f"-{span[0]}-{span[1]}" if span else "") + ("-crop" if crop else "")
            + ".png")
        if cache.exists():
            return cache.read_bytes()
        path = Path(source)
        if not path.is_file():
            raise QAError(f"{source} is indexed but not on this machine; page images are drawn from the file.")
        if file_digest(path) != digest:
            raise QAError(f"{source} changed since it was indexed. Run: qa ingest {source}")
        png = render_page(path, int(page), layout.boxes(*span) if span else (), crop)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(png)
        os.replace(tmp, cache)
        return png
