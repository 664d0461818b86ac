"""The one place that wires settings into a store, an embedder, a retriever and a composer."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
from .types import Answer, IngestReport, Status

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

    @classmethod
    def from_settings(cls, settings: Settings) -> Assistant:
        """Build from an explicit settings object."""
        return cls(settings)

    # --- parts, built on first use so that `qa status` never loads torch -----------------------
    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from .embedding import load_embedder

            s = self.settings
            if s.embed_url:
                from .remote_embedding import load_remote_embedder

                self._embedder = load_remote_embedder(s)
            else:
                self._embedder = load_embedder(s.embed_model, s.embed_batch_size, s.embed_backend,
                                               s.embed_precision, s.embed_cache)
        return self._embedder

    def store(self, create: bool = False) -> Store:
        """The Chroma store; `create` makes a new index where none exists."""
        if self._store is None:
            s = self.settings
            client = open_client(s.index_dir, s.chroma_url, create)
            from .embedding import embedder_id

            self._store = Store(client, s.collection, embedder_id(s), None if s.embed_url else EMBED_DIM, create)
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
                yield Answer(question=question, answer=d.text, answered=d.answered, citations=d.citations,
                             related=passages, backend=self.backend, seconds=time.perf_counter() - started,
                             verified_sentences=d.verified, total_sentences=d.total)
            return
        text, citations = "", []
        for sentence, citation in composer.stream(q, list(passages)):
            text = f"{text} {sentence}" if text else sentence
            citations.append(citation)
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
                      chunks=store.count(), embed_model=_describe_embedder(s), size_bytes=size,
                      backend=describe_backend(s), chroma_url=s.chroma_url)


def _describe_embedder(s: Settings) -> str:
    """The embedding model and what runs it, for `qa status` and the UI."""
    if s.embed_url:
        from .llm import public_url

        return f"{s.embed_model} at {public_url(s.embed_url)}"
    return f"{s.embed_model} ({'ONNX ' + s.embed_precision if s.embed_backend == 'onnx' else 'torch'})"
