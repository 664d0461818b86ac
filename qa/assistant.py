"""The one place that wires settings into a store, an embedder, a retriever and a composer."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .answering import passages_retrieved
from .chat import answered_as, condense
from .errors import (
    ConfigError,
    ConversationStoreError,
    IndexBusyError,
    IndexMissingError,
    InvalidArgumentError,
    QAError,
)
from .ingest import Ingestor, Progress
from .library import strings
from .llm import describe_backend
from .prompts import EMPTY_QUESTION, NO_DOCUMENT_MATCHES, NOT_FOUND, NOT_FOUND_IN, QUESTION_TOO_LONG
from .reading.formats import SourceText
from .settings import Settings, bounds
from .store import Store, close_client, open_client, prepare_index_dir, sqlite_id
from .types import Answer, Check, Citation, Document, IngestReport, RebuildReport, RemoveReport, Status

if TYPE_CHECKING:
    from .conversations import Conversation, ConversationInfo, ConversationStore

EMBED_DIM = 384
MAX_QUESTION_CHARS = 2000
_WORDS = re.compile(r"[^\W_]")  # a letter or digit in any script


def _not_found_in(scope: Sequence[str]) -> str:
    """The not-found reply of a question asked of some documents only: which, so the user can widen it."""
    names = [Path(s).name for s in sorted(scope)]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    what = "the document" if len(names) == 1 else f"the {len(names)} documents"
    return NOT_FOUND_IN.format(what=what, names=shown)


def question_problem(question: str) -> str | None:
    """What `stream` answers instead of searching, for a question it cannot take (nothing to search for: empty,
    or only punctuation, symbols, emoji; or too long: answering part of it would be guessing); else None."""
    q = " ".join(question.split())
    if len(q) > MAX_QUESTION_CHARS:
        return QUESTION_TOO_LONG.format(length=len(q), limit=MAX_QUESTION_CHARS)
    return None if _WORDS.search(q) else EMPTY_QUESTION


def check_question(question: object) -> str:
    """The question, if it is a string; else InvalidArgumentError naming what it is."""
    if isinstance(question, str):
        return question
    hint = ": decode it first, e.g. question.decode(\"utf-8\")" if isinstance(question, bytes | bytearray) else ""
    raise InvalidArgumentError(f"The question is of type {type(question).__name__}; a question is a string "
                               f"(str){hint}.")


def _path_args(args: tuple[object, ...], call: str) -> list[str | os.PathLike[str]]:
    """Paths given one by one or in lists: ingest("a.txt", "b.txt") is ingest(["a.txt", "b.txt"])."""
    out: list[str | os.PathLike[str]] = []
    for arg in args:
        for p in arg if isinstance(arg, (list, tuple, set, frozenset)) else (arg,):
            if not isinstance(p, (str, os.PathLike)):
                raise InvalidArgumentError(f"{call}({p!r}): give files, folders or globs as strings or Paths, "
                                           f"e.g. {call}('docs/')")
            out.append(p)
    return out


def _check_top_k(top_k: object) -> None:
    lo, hi = bounds("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or not lo <= top_k <= hi):
        raise InvalidArgumentError(f"top_k={top_k!r}: give a whole number of passages from {lo} to {hi} "
                                   "(or None for QA_TOP_K).")


def _strings(value: object, what: str, kinds: tuple[type, ...] = (str,)) -> list[str]:
    """`history` or `sources` as a list of strings: one string is one item (not one per character), None none;
    anything else than strings is InvalidArgumentError saying what the argument holds."""
    if value is None:
        return []
    if isinstance(value, kinds) or not isinstance(value, Iterable) or isinstance(value, bytes | bytearray):
        value = [value]
    items = list(value)
    for item in items:
        if not isinstance(item, kinds):
            raise InvalidArgumentError(f"{what}, not {type(item).__name__}.")
    return [str(item) for item in items]


_SURROGATE = re.compile("[\ud800-\udfff]")


def _valid(text: str) -> str:
    """The text as valid Unicode: each lone surrogate replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


class Assistant:
    """Question answering over a folder of documents: `Assistant().ingest("seeds/")`, `.ask("...")`."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        from pydantic import ValidationError

        try:
            base = settings or Settings()
            # Only what was set (arguments, QA_* variables) is carried over: a default that depends on another
            # setting (llm: openai when there is a key) is worked out again with the overrides.
            self.settings = (Settings.model_validate({**base.model_dump(exclude_unset=True), **overrides})
                             if overrides else base)
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
        self._conversations: Any = None  # the ConversationStore, or the ConversationStoreError it gave
        self._layouts: dict[str, tuple[str, Any]] = {}  # source -> (digest, word boxes or None)
        self._layouts_lock = threading.Lock()  # questions are answered on several threads (qa serve)
        self._scope_sources: tuple[int, list[str]] | None = None  # (generation, indexed sources)
        self._store_lock = threading.Lock()
        self._store_file: tuple[int, int] | None = None  # which chroma.sqlite3 the store opened (sqlite_id)
        # Threads of a web app may ask their first questions at once: the models and the retriever (its BM25
        # index) are built once, not once per thread. Reentrant: the retriever and composer need the embedder.
        self._parts_lock = threading.RLock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Assistant:
        """Build from an explicit settings object."""
        return cls(settings)

    # --- parts, built on first use so that `qa status` never loads torch -----------------------
    @property
    def embedder(self) -> Any:
        """The embedding model (a LlamaIndex embedding), loaded on first use."""
        if self._embedder is None:
            with self._parts_lock:
                if self._embedder is None:
                    self._embedder = self._load_embedder()
        return self._embedder

    def _load_embedder(self) -> Any:
        from .embedding import load_embedder

        if self.settings.embed_precision == "auto" and not self.settings.embed_url:
            try:  # the index says which precision its vectors have
                self.store()
            except QAError:
                pass  # no index yet (or a damaged one, reported by whoever opens it): int8
            self._settle(None)
        s = self.settings
        if s.embed_url:
            from .remote_embedding import load_remote_embedder

            return load_remote_embedder(s)
        return load_embedder(s.embed_model, s.embed_batch_size, s.embed_backend, s.embed_precision,
                             s.embed_cache)

    def store(self, create: bool = False) -> Store:
        """The Chroma store; `create` makes a new index where none exists."""
        if self._store is not None and self._replaced():
            with self._store_lock:
                if self._store is not None and self._replaced():
                    old = self._store
                    self._forget_index()
                    old.close()  # the deleted files are let go (once no other Assistant here reads them)
        if self._store is None:
            from . import integrity
            from .embedding import embedder_id

            # Its own lock: listing documents must not wait behind a thread that is loading the models.
            with self._store_lock:
                if self._store is None:
                    s = self.settings
                    if not s.chroma_url:  # a visibly damaged file is reported before Chroma touches the folder
                        guard = _write_guard(Path(s.index_dir))
                        if guard.acquire(blocking=False):  # else a thread of this process is writing it: sound,
                            try:  # and its pages cannot be read safely meanwhile (see _write_guard)
                                integrity.precheck(Path(s.index_dir), pages=True)
                            finally:
                                guard.release()
                    client = store = None
                    try:
                        client = open_client(s.index_dir, s.chroma_url, create)
                        s = self._settle(client)
                        store = Store(client, s.collection, embedder_id(s), None if s.embed_url else EMBED_DIM,
                                      create)
                        integrity.opened(store, s.chroma_url or s.index_dir)
                    except BaseException as e:  # BaseException: Chroma panics (pyo3) when it runs out of files
                        # Explained before the client lets its files go: the open-file count says what happened.
                        error = self._storage_error(e)
                        if store is not None:
                            store.close()
                        elif client is not None:
                            close_client(client)
                        if error is e:
                            raise
                        raise error from None
                    self._store_file = None if s.chroma_url else sqlite_id(s.index_dir)
                    self._store = store
        return self._store

    def _replaced(self) -> bool:
        """The index folder was deleted or replaced since the store opened it (rm -rf, another process's restore
        or --rebuild): the open store would still answer from the old files and fail to write."""
        return not self.settings.chroma_url and sqlite_id(self.settings.index_dir) != self._store_file

    def _forget_index(self) -> None:
        """Drop what was read from the index (the store, the retriever and its BM25 copy, the scope's sources):
        the next use opens the folder as it is then."""
        self._store = self._retriever = None
        self._scope_sources = None

    def close(self) -> None:
        """Give up the index, the models and the conversations file; the next call on this one opens them again.

        Chroma closes the index's files (in the background) once every Assistant of this process that opened the
        folder is closed. Call it when no other thread is using this Assistant."""
        with self._parts_lock, self._store_lock:
            store = self._store
            self._forget_index()
            self._embedder = self._composer = self._conversations = None
        if store is not None:
            store.close()

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _settle(self, client: Any) -> Settings:
        """Make `embed_precision="auto"` concrete from the index's own record (int8 when there is none)."""
        if self.settings.embed_precision == "auto":
            from .embedding import settle_precision
            from .store import recorded_embedder

            recorded = recorded_embedder(client, self.settings.collection) if client is not None else None
            self.settings = settle_precision(self.settings, recorded)
        return self.settings

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
        busy = f"Another qa ingest is writing to {lock_dir}; wait for it to finish and run again."
        guard = _write_guard(lock_dir)
        if not guard.acquire(blocking=False):
            raise IndexBusyError(busy)
        try:
            if not s.chroma_url:  # nothing is written to a damaged index, not even the lock file
                from .integrity import precheck

                precheck(lock_dir, pages=True)
            prepare_index_dir(lock_dir)
            lock = FileLock(str(lock_dir / ".ingest.lock"), timeout=0)
            try:
                lock.acquire()
            except Timeout:
                raise IndexBusyError(busy) from None
        except BaseException:
            guard.release()
            raise
        try:
            # The lease also stops writers that do not share this folder: other hosts and replicas
            # of a Chroma server, whose repair of "interrupted" work would delete each other's chunks.
            store = self.store(create=True)
            with self._explained():
                store.acquire_writer(f"collection {s.collection!r} at {s.chroma_url or lock_dir}",
                                     local=not s.chroma_url)
            try:
                yield store
            except BaseException:
                try:  # the error says what went wrong; a failing release (a full disk) must not hide it
                    store.release_writer()
                except Exception:  # noqa: BLE001 - the lease lapses by itself
                    pass
                raise
            store.release_writer()
        finally:
            lock.release()
            guard.release()

    def _ingestor(self) -> Ingestor:
        from .embedding import token_counter
        from .reading.formats import make_splitter

        s = self.settings

        def models() -> tuple[Any, Any]:
            return self.embedder, make_splitter(s.chunk_size, s.chunk_overlap, token_counter(self.embedder))

        return Ingestor(self.store(create=True), models, max_file_bytes=int(s.max_file_mb * 1e6))

    # --- public API ---------------------------------------------------------------------------
    def ingest(self, *paths: str | Path, progress: Progress | None = None) -> IngestReport:
        """Index files and folders (default `seeds/`); unchanged files are not re-embedded.

        A file that cannot be indexed (missing, unreadable, too big) is a `FileResult` with status "failed" and its
        reason in the report, not an exception; errors of the index itself (busy, damaged, disk full) are raised.
        """
        targets = [Path(p) for p in _path_args(paths, "ingest")] or [Path("seeds")]
        guard = None
        if not self.settings.chroma_url:
            from .diskspace import SpaceGuard

            guard = SpaceGuard(Path(self.settings.index_dir), targets)
            guard(0, 0)  # even the writer's lease and "in progress" flag are writes: a full disk stops here
        with self._writing(), self._guarded(targets):
            ingestor = self._ingestor()
            ingestor.reserve = guard
            return ingestor.ingest_paths(targets, progress)

    def ingest_texts(self, texts: list[SourceText], progress: Progress | None = None) -> IngestReport:
        """Index ready-made texts keyed by their `path` (used by `qa eval`)."""
        with self._writing():
            return self._ingestor().ingest_texts(texts, len(texts), progress)

    def retriever(self) -> Any:
        """The hybrid retriever over the store."""
        if self._retriever is None:
            from .retrieval import Retriever

            with self._parts_lock:
                if self._retriever is None:
                    s = self.settings
                    cache = Path(s.index_dir) / "bm25" / s.collection
                    self._retriever = Retriever(self.store(), self.embedder, s.retrieval, s.dense_weight, cache,
                                                s.fusion)
        return self._retriever

    def composer(self) -> Any:
        """The answer composer `settings.llm` chooses: extractive, or a model with verified citations."""
        if self._composer is None:
            from .generation import make_composer

            with self._parts_lock:
                if self._composer is None:
                    self._composer = make_composer(self.settings, self.embedder)
        return self._composer

    def ask(self, question: str, top_k: int | None = None, history: Sequence[str] | str = (),
            sources: Sequence[str] | str | None = None) -> Answer:
        """Answer a question from the indexed documents (or only those `sources` names), citing exact spans."""
        *_, final = self.stream(question, top_k, history, sources)
        return final

    def stream(self, question: str, top_k: int | None = None, history: Sequence[str] | str = (),
               sources: Sequence[str] | str | None = None) -> Iterator[Answer]:
        """Yields the answer as it grows, one cited sentence at a time; the last yield is final.

        `history` holds the earlier questions of a conversation, oldest first (a string is one question), so
        follow-ups are understood.
        `sources` (paths, folders or globs, see `qa.library`) limits the answer to those documents.
        Its arguments are checked here, when it is called, not when the first answer is read.
        """
        check_question(question)
        _check_top_k(top_k)
        history = _strings(history, "history holds the earlier questions as strings (str)")
        patterns = _strings(sources, "sources names documents as strings or paths (a path, folder or glob each)",
                            (str, os.PathLike))
        return self._answers(question, top_k, history, patterns)

    def _answers(self, question: str, top_k: int | None, history: list[str], patterns: list[str]) -> Iterator[Answer]:
        started = time.perf_counter()
        # Lone surrogates (undecodable bytes from a terminal, broken JSON escapes) cannot be tokenized,
        # printed or stored: they become U+FFFD, in the question and in earlier turns alike.
        question = _valid(question)
        history = [_valid(h) for h in history]
        q = " ".join(question.split())
        if (text := question_problem(q)) is not None:
            yield Answer(question=question, answer=text, answered=False, backend=self.backend)
            return
        # Earlier questions refused as too long would flood the retrieval query and the model's prompt.
        history = [h for h in history if len(" ".join(h.split())) <= MAX_QUESTION_CHARS]
        query = condense(q, history)
        scope = self._scope(patterns) if patterns else None
        if scope is not None and not scope:
            yield Answer(question=question, answer=NO_DOCUMENT_MATCHES.format(patterns=", ".join(patterns)),
                         answered=False, backend=self.backend, seconds=time.perf_counter() - started)
            return
        k = top_k or self.settings.top_k
        with self._explained():  # the passages after the first k only tell how rare the question's words are
            found = self.retriever().retrieve(query, passages_retrieved(k), sources=scope)
        passages, background = tuple(found[:k]), found[k:]
        composer = self.composer()
        not_found = NOT_FOUND if scope is None else _not_found_in(scope)
        if getattr(composer, "generative", False):
            for d in composer.drafts(q, passages, history):
                yield Answer(question=question, answer=not_found if d.text == NOT_FOUND else d.text, answered=d.answered, citations=self._placed(d.citations),
                             related=passages, backend=self.backend, seconds=time.perf_counter() - started,
                             verified_sentences=d.verified, total_sentences=d.total)
            return
        text, citations = "", []
        # A short follow-up is answered as it was searched: "What did he reiterate? (Who is Matthew Miller?)".
        for sentence, citation in composer.stream(answered_as(q, history), list(passages), background):
            text = f"{text} {sentence}" if text else sentence
            citations.append(self._place(citation))
            yield Answer(question=question, answer=text, answered=True, citations=tuple(citations),
                         related=passages, backend=self.backend, seconds=time.perf_counter() - started,
                         verified_sentences=len(citations), total_sentences=len(citations))
        if not citations:
            yield Answer(question=question, answer=not_found, answered=False, related=passages,
                         backend=self.backend, seconds=time.perf_counter() - started)

    def document_text(self, source: str) -> str:
        """The extracted text of an indexed document, which citation offsets index."""
        doc = self.store().document(source)
        if doc is None:
            raise QAError(f"{source} is not in the index. Run: qa ingest {source}")
        return doc[0]

    def status(self, missing_ok: bool = False) -> Status:
        """Index location, size and contents; with `missing_ok`, no index yet reads as an empty one."""
        try:
            store = self.store()
        except IndexMissingError:
            if not missing_ok:
                raise
            store = None
        s = self.settings  # after store(): opening the index settles embed_precision "auto"
        index = Path(s.index_dir)
        from .diskspace import folder_bytes

        size = folder_bytes(index) if store and not s.chroma_url else 0
        records = store.records() if store else {}  # committed: an interrupted ingest's chunks do not count yet
        return Status(index_dir=str(index.absolute()), documents=len(records),
                      chunks=sum(r.chunks for r in records.values()), embed_model=_describe_embedder(s),
                      size_bytes=size, backend=describe_backend(s), chroma_url=s.chroma_url)

    # --- LlamaIndex objects over this assistant (qa/llamaindex.py) ------------------------------
    def as_query_engine(self, **options: Any) -> Any:
        """A LlamaIndex query engine giving `ask()`'s cited answers (options: streaming, top_k, sources, llm)."""
        from .llamaindex import QAQueryEngine

        return QAQueryEngine(self, **options)

    def as_retriever(self, top_k: int | None = None, sources: Sequence[str] | str | None = None) -> Any:
        """A LlamaIndex retriever over qa's hybrid retrieval."""
        from .llamaindex import QARetriever

        return QARetriever(self, top_k=top_k, sources=sources)

    def as_chat_engine(self, **options: Any) -> Any:
        """A LlamaIndex chat engine that keeps the conversation (options: top_k, sources, chat_history)."""
        from .llamaindex import QAChatEngine

        return QAChatEngine(self, **options)

    # --- conversations ----------------------------------------------------------------------------
    def _conversations_path(self) -> Path:
        s = self.settings
        return s.conversations_path or Path(s.index_dir) / "conversations.sqlite3"

    def conversation_store(self) -> ConversationStore:
        """The SQLite store of conversations; raises ConversationStoreError (every time) if it is unusable."""
        if self._conversations is None:
            from .conversations import ConversationStore

            try:
                self._conversations = ConversationStore(self._conversations_path())
            except ConversationStoreError as e:
                self._conversations = e
        if isinstance(self._conversations, ConversationStoreError):
            raise self._conversations
        return self._conversations

    def conversation(self, id: str | None = None, user: str | None = None) -> Conversation:
        """A new conversation (id=None), or `user`'s stored one; someone else's id is "not found" too."""
        from .conversations import Conversation, missing, new_id
        from .errors import ConversationNotFoundError

        store = self.conversation_store()
        if id is None:
            return Conversation(self, store, new_id(), user or "")
        if store.info(id, user or "") is None:
            raise ConversationNotFoundError(missing(id))
        return Conversation(self, store, id, user or "")

    def conversations(self, user: str | None = None, search: str = "") -> list[ConversationInfo]:
        """`user`'s conversations (ConversationInfo), latest first; `search` matches titles, questions, answers."""
        if self._conversations is None and not self._conversations_path().exists():
            return []  # none saved yet: listing them creates no folder and no file
        return self.conversation_store().list(user or "", search)

    # --- durability: checks, rebuild, disk full, backup and restore (qa/integrity.py, qa/backup.py) ---
    def _storage_error(self, e: BaseException) -> BaseException:
        """A Chroma/SQLite error as the one-line IndexDamagedError (TooManyOpenFilesError, DiskFullError... when it
        is not damage); anything else unchanged."""
        from . import integrity

        if not integrity.from_store(e):
            return e
        s = self.settings
        return integrity.explain(None if s.chroma_url else Path(s.index_dir), e)

    @contextmanager
    def _explained(self) -> Iterator[None]:
        """Raise a Chroma/SQLite error as what it means (see _storage_error); anything else as it is."""
        try:
            yield
        except BaseException as e:  # BaseException: Chroma panics (pyo3) when it runs out of files
            error = self._storage_error(e)
            if error is e:
                raise
            raise error from None

    @contextmanager
    def _guarded(self, targets: Sequence[Path]) -> Iterator[None]:
        """Turn running out of disk space into DiskFullError (what was committed stays), Chroma errors
        into IndexDamagedError (or TooManyOpenFilesError)."""
        from . import diskspace, integrity

        s = self.settings
        before = diskspace.folder_bytes(Path(s.index_dir)) if not s.chroma_url else 0
        with self._explained():
            try:
                yield
            except Exception as e:
                if diskspace.is_disk_full(e) or (not s.chroma_url and integrity.is_storage_error(e)
                                                 and diskspace.nearly_full(Path(s.index_dir))):
                    # Chroma's client keeps state of the failed write: the next use opens the store afresh.
                    self._forget_index()
                    raise diskspace.disk_full(Path(s.index_dir), targets, before) from None
                raise

    def check(self) -> list[Check]:
        """Run every index health check (`qa status --check`); reads only, never writes."""
        from .integrity import run_all

        s = self.settings
        index = Path(s.index_dir)

        def open_store() -> Store:
            from .embedding import embedder_id

            client = open_client(index, s.chroma_url, False)
            return Store(client, s.collection, embedder_id(self._settle(client)), None if s.embed_url else EMBED_DIM,
                         False)

        return run_all(index, not s.chroma_url, open_store, index / "bm25" / s.collection, index / "uploads")

    def rebuild(self, *paths: str | Path, progress: Progress | None = None) -> RebuildReport:
        """Move the index aside (never deleted) and index again the files its catalogue names, `paths`
        and its uploads."""
        import shutil

        from .backup import catalogue_sources, move_aside, refuse_if_served, writer_lock
        from .diskspace import room_to_rebuild

        s = self.settings
        if s.chroma_url:
            raise ConfigError("qa ingest --rebuild works on an embedded index; with a Chroma server restore "
                              "the server's --path from a backup, or ingest into a new QA_COLLECTION.")
        index = Path(s.index_dir).absolute()
        given = [Path(p) for p in paths]
        if not (index / "chroma.sqlite3").exists():
            return RebuildReport(None, self.ingest(*given, progress=progress), sources_from="paths")
        catalogue = catalogue_sources(index, s.collection)
        old_uploads = index / "uploads"
        if catalogue is None and not given and not old_uploads.is_dir():
            raise QAError(f"The catalogue of {index} cannot be read, so it does not say which files to index "
                          "again; name them: qa ingest --rebuild PATH...")
        refuse_if_served(index, "qa ingest --rebuild")
        room_to_rebuild(index)
        with writer_lock(index, "qa ingest --rebuild"):
            moved = move_aside(index, "damaged")
        self._forget_index()
        targets, missing = list(given), []
        uploads = index / "uploads"
        for source in sorted(catalogue or {}):
            p = Path(source)
            if p.is_relative_to(uploads):
                continue  # copied from the moved-aside folder below
            if p.exists():
                targets.append(p)
            elif not any(p.is_relative_to(g.absolute()) for g in given):
                missing.append(f"{source}: no longer exists")
        if (moved / "uploads").is_dir():
            # Every file there is whole (an upload is put in place by a rename): one the index held in another
            # version is an upload a stopped server had not indexed yet, indexed now as it is.
            uploads.mkdir(parents=True)
            for f in sorted((moved / "uploads").iterdir()):
                if f.is_file() and not f.name.startswith("."):
                    shutil.copy2(f, uploads / f.name)
            targets.append(uploads)
        self._keep_conversations(moved, index)
        _keep_ui_secret(moved, index)
        report = self.ingest(*targets, progress=progress) if targets else IngestReport()
        return RebuildReport(str(moved), report, tuple(missing), "catalogue" if catalogue is not None else "paths")

    def _keep_conversations(self, moved: Path, index: Path) -> None:
        """Saved conversations are the readers' own, not derived from the documents: a rebuild takes them along.
        The moved-aside folder is not written to (nothing writes there any more), so its files are copied as they
        are, the database with its write-ahead log, and it stays exactly as it was."""
        import shutil

        old = moved / "conversations.sqlite3"
        if self.settings.conversations_path is not None or not old.exists():
            return  # kept elsewhere (QA_CONVERSATIONS_PATH): not moved
        index.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal"):
            if (moved / f"conversations.sqlite3{suffix}").exists():
                shutil.copy2(moved / f"conversations.sqlite3{suffix}", index / f"conversations.sqlite3{suffix}")

    def backup(self, dest: str | Path) -> dict[str, Any]:
        """Write a consistent snapshot of the index, its uploads and conversations to `dest`, while
        questions go on being answered (ingests wait)."""
        from .backup import backup

        if self.settings.chroma_url:
            raise ConfigError("With a Chroma server, back up the server's --path folder (see README); "
                              "qa backup copies an embedded index.")
        return backup(Path(self.settings.index_dir), Path(dest))

    def restore(self, src: str | Path, force: bool = False) -> Path | None:
        """Put a backup in place of the index (a non-empty one only with `force`, and moved aside)."""
        from .backup import restore

        if self.settings.chroma_url:
            raise ConfigError("With a Chroma server, restore the server's --path folder (see README).")
        self._forget_index()
        return restore(Path(src), Path(self.settings.index_dir), force)

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
        digest, page, span and crop, up to `page_cache_mb` (the least recently shown go first).
        """
        from .reading.formats import file_digest
        from .reading.pages import prune_pages, render_page

        got = self._layout(source)
        if got is None:
            raise QAError(f"{source} is not an indexed PDF or image; only those have page images.")
        digest, layout = got
        span = (start, end) if start is not None and end is not None and 0 <= start < end else None
        cache = Path(self.settings.index_dir) / "pages" / (
            f"{digest[:24]}-{int(page)}" + (f"-{span[0]}-{span[1]}" if span else "") + ("-crop" if crop else "")
            + ".png")
        try:
            png = cache.read_bytes()
            os.utime(cache)  # shown again: the last to be pruned
            return png
        except FileNotFoundError:
            pass
        path = Path(source)
        if not path.is_file():
            raise QAError(f"{source} is indexed but not on this machine; page images are drawn from the file.")
        if file_digest(path) != digest:
            raise QAError(f"{source} changed since it was indexed. Run: qa ingest {source}")
        png = render_page(path, int(page), layout.boxes(*span) if span else (), crop)
        limit = int(self.settings.page_cache_mb * (1 << 20))
        if len(png) <= limit:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(png)
            os.replace(tmp, cache)
            prune_pages(cache.parent, limit)
        return png

    # --- the document library (qa.library) ----------------------------------------------------------
    def pending_uploads(self) -> list[Path]:
        """Uploaded files (`<index>/uploads/`) the index does not hold as they are: a server stopped before it
        indexed them. `qa serve` indexes them when it starts."""
        from .integrity import unindexed_uploads

        uploads = Path(self.settings.index_dir).absolute() / "uploads"
        if not uploads.is_dir():
            return []
        try:
            records = self.store().records()
        except IndexMissingError:
            records = {}
        return unindexed_uploads(records, uploads)

    def documents(self) -> tuple[Document, ...]:
        """Every indexed document with its title, type, pages, chunks, size and times, sorted by source."""
        from .library import to_document

        return tuple(sorted((to_document(s, m) for s, m in self.store().catalogue()), key=lambda d: d.source))

    def remove(self, *paths_or_globs: str | Path) -> RemoveReport:
        """Take documents out of the index (chunks, text, record, BM25) and delete their uploaded copies.

        Every pattern (a path, folder or glob; see `qa.library`) must name at least one indexed
        document, else nothing is removed (QAError).
        """
        from .library import select

        patterns = [str(p) for p in _path_args(paths_or_globs, "remove")]
        if not patterns:
            raise QAError("Name the documents to remove: qa remove PATH|GLOB ... (qa docs lists them)")

        def choose(indexed: list[str]) -> list[str]:
            chosen, unmatched = select(patterns, indexed)
            if unmatched:
                raise QAError(f"No indexed document matches {', '.join(unmatched)}; nothing was removed. "
                              "See the indexed documents with: qa docs")
            return chosen

        return self._remove(choose)

    def forget(self, sources: Sequence[str] | str) -> RemoveReport:
        """Remove exactly these sources (one, or a list), no pattern matching (the folder watcher); unindexed ones
        are skipped."""
        wanted = set(strings(sources))
        return self._remove(lambda indexed: sorted(wanted.intersection(indexed)))

    def _remove(self, choose: Any) -> RemoveReport:
        self.store()  # no index: IndexMissingError, rather than creating an empty one
        with self._writing() as store:
            records = store.records()
            chosen = choose(list(records))
            if not chosen:
                return RemoveReport()
            generation = store.state()["generation"]
            store.set_state(generation, dirty=True)  # a crash midway leaves orphans the next ingest repairs
            store.remove_many(chosen)
            store.set_state(generation + 1, dirty=False)  # readers re-read the catalogue, BM25 rebuilds
            deleted = self._delete_uploads(chosen, records)
        return RemoveReport(removed=tuple(chosen), chunks=sum(records[s].chunks for s in chosen),
                            uploads_deleted=tuple(deleted))

    def _delete_uploads(self, chosen: list[str], records: dict[str, Any]) -> list[str]:
        """Delete the uploaded copies of removed documents, each only if it is still the file that was
        indexed: a new version uploaded meanwhile (put in place by its job, not yet indexed) stays."""
        from .reading.formats import file_digest

        uploads = Path(self.settings.index_dir).absolute() / "uploads"
        deleted = []
        for s in chosen:
            p = Path(s)
            try:
                if p.parent == uploads and p.is_file() and file_digest(p) == records[s].digest:
                    p.unlink()
                    deleted.append(s)
            except OSError:  # gone meanwhile, or unreadable: nothing to delete
                pass
        return deleted

    def _scope(self, patterns: list[str]) -> list[str]:
        """The indexed sources the patterns name (the catalogue is re-read only when the generation moves)."""
        from .library import select

        store = self.store()
        generation = store.state()["generation"]
        cached = self._scope_sources
        if cached is None or cached[0] != generation:
            cached = self._scope_sources = (generation, list(store.records()))
        return select(patterns, cached[1])[0]


_GUARDS: dict[str, threading.Lock] = {}
_GUARDS_LOCK = threading.Lock()


def _keep_ui_secret(moved: Path, index: Path) -> None:
    """The key the chat UI encrypts each browser's saved settings with (`qa.serving.ui.browser_secret`), kept
    beside the index: a rebuild takes it along, or every reader's settings were lost at their next visit.
    Written as the UI writes it, readable by qa's user only from the start."""
    try:
        key = (moved / "ui-secret").read_bytes()
    except OSError:  # none (the UI never ran here), or unreadable: the UI makes a new one
        return
    index.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(index / "ui-secret", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return
    with os.fdopen(fd, "wb") as f:
        f.write(key)


def _write_guard(index_dir: Path) -> threading.Lock:
    """One writer per index folder in this process (any Assistant), taken before the file lock: SQLite's file
    locks do not separate two SQLite libraries of one process (Chroma's and Python's), so the page check of
    one write read pages another thread's write was changing, and called the index damaged ("database disk
    image is malformed")."""
    key = str(index_dir.absolute())
    with _GUARDS_LOCK:
        return _GUARDS.setdefault(key, threading.Lock())


def _describe_embedder(s: Settings) -> str:
    """The embedding model and what runs it, for `qa status` and the UI."""
    if s.embed_url:
        from .llm import public_url

        return f"{s.embed_model} at {public_url(s.embed_url)}"
    return f"{s.embed_model} ({'ONNX ' + s.embed_precision if s.embed_backend == 'onnx' else 'torch'})"

