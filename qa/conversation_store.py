"""The SQLite file of conversations: schema and migrations, per-user rows, turns as `Answer.to_dict()` JSON.

Plain `sqlite3` in WAL mode: readers never wait for a writer, and each write is one short
`BEGIN IMMEDIATE` transaction, so many UI sessions (threads) and processes can write at once. sqlite3
connections must not be shared between threads, so each thread gets its own.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConversationNotFoundError, ConversationStoreError, QAError
from .types import Answer, Box, Citation, Passage

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: conversations and their turns
        """CREATE TABLE conversations (
            id TEXT PRIMARY KEY,           -- unguessable: secrets.token_urlsafe(18)
            user TEXT NOT NULL,            -- '' when nobody is logged in
            title TEXT NOT NULL,           -- the first question, until renamed
            created REAL NOT NULL,         -- unix seconds
            updated REAL NOT NULL)""",
        "CREATE INDEX conversations_by_user ON conversations (user, updated DESC)",
        """CREATE TABLE turns (
            conversation TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            n INTEGER NOT NULL,            -- 1, 2, ... within the conversation
            question TEXT NOT NULL,
            answer TEXT NOT NULL,          -- the answer text (searched)
            record TEXT NOT NULL,          -- Answer.to_dict() as JSON: citations with their exact spans
            context TEXT NOT NULL,         -- JSON of what the sources panel shows beyond to_dict: passages, related
            documents TEXT NOT NULL,       -- JSON {source: digest} of the cited documents when answered
            backend TEXT NOT NULL,
            scope TEXT,                    -- JSON list of source globs the question was limited to, or NULL
            created REAL NOT NULL,
            seconds REAL NOT NULL,
            PRIMARY KEY (conversation, n))""",
    ),
    (  # 2: a question is stored as it is asked, its answer when it is complete
        # 'done', 'answering' (its answer is being written) or 'interrupted' (the answer never completed)
        "ALTER TABLE turns ADD COLUMN state TEXT NOT NULL DEFAULT 'done'",
    ),
)
DONE, ANSWERING, INTERRUPTED = "done", "answering", "interrupted"
# A turn still "answering" after this long lost its answer (the process writing it died): it reads as interrupted.
ANSWERING_LIMIT = 600.0
HISTORY_TURNS = 10  # earlier questions a follow-up is given (a 1,000-turn conversation must not flood a prompt)
TITLE_CHARS = 120
BUSY_MS = 10_000  # how long a writer waits for another one before giving up


@dataclass(frozen=True)
class ConversationInfo:
    """One line of a conversation list."""

    id: str
    title: str
    user: str
    created: float
    updated: float
    turns: int = 0


@dataclass(frozen=True)
class Turn:
    """One stored question and answer; `stale` maps a citation id to "changed" or "removed".

    `state` is "done", "answering" (the answer is still being written: `answer.answer` is empty) or
    "interrupted" (it never completed: `answer` holds what there was of it, perhaps nothing)."""

    n: int
    answer: Answer
    created: float
    scope: tuple[str, ...] | None = None
    stale: dict[int, str] = field(default_factory=dict)
    state: str = DONE

    @property
    def question(self) -> str:
        """The question as it was asked."""
        return self.answer.question


class ConversationStore:
    """The SQLite file of conversations; safe to share between threads (one connection per thread)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        with self._guard():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._migrate()

    # --- connection and schema --------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                # Autocommit mode: transactions are explicit BEGIN IMMEDIATE ... COMMIT below.
                conn = sqlite3.connect(self.path, timeout=BUSY_MS / 1000, isolation_level=None)
                conn.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints, never corrupt
                if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
                    raise sqlite3.OperationalError("cannot switch to WAL mode")
            except (sqlite3.DatabaseError, OSError) as e:
                raise ConversationStoreError(store_problem(self.path, e)) from None
            self._local.conn = conn
        return conn

    def _guard(self) -> Any:
        return _Guard(self.path)

    def _write(self) -> _Transaction:
        return _Transaction(self._conn(), self.path)

    def _migrate(self) -> None:
        with self._write() as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = c.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if version > len(MIGRATIONS):
                raise ConversationStoreError(
                    f"Conversations are off: {self.path} was written by a newer qa (schema {version}); "
                    "upgrade qa or set QA_CONVERSATIONS_PATH to another file.")
            for statements in MIGRATIONS[version:]:
                for sql in statements:
                    c.execute(sql)
            if row is None:
                c.execute("INSERT INTO schema_version VALUES (?)", (len(MIGRATIONS),))
            else:
                c.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS),))

    def version(self) -> int:
        """The schema version of the file."""
        with self._guard():
            return self._conn().execute("SELECT version FROM schema_version").fetchone()[0]

    # --- conversations ----------------------------------------------------------------------------
    def info(self, id: str, user: str) -> ConversationInfo | None:
        """A conversation of `user`, or None (also when it belongs to someone else)."""
        with self._guard():
            row = self._conn().execute(
                "SELECT c.id, c.title, c.user, c.created, c.updated, "
                "(SELECT count(*) FROM turns t WHERE t.conversation = c.id) "
                "FROM conversations c WHERE c.id = ? AND c.user = ?", (id, user)).fetchone()
        return ConversationInfo(*row) if row else None

    def list(self, user: str, search: str = "", limit: int = 200) -> list[ConversationInfo]:
        """`user`'s conversations, latest first; `search` matches titles, questions and answers."""
        sql = ("SELECT c.id, c.title, c.user, c.created, c.updated, "
               "(SELECT count(*) FROM turns t WHERE t.conversation = c.id) FROM conversations c WHERE c.user = ?")
        args: list[Any] = [user]
        if search.strip():
            like = "%" + search.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            sql += (" AND (c.title LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM turns t WHERE t.conversation = c.id"
                    " AND (t.question LIKE ? ESCAPE '\\' OR t.answer LIKE ? ESCAPE '\\')))")
            args += [like, like, like]
        sql += " ORDER BY c.updated DESC LIMIT ?"
        with self._guard():
            return [ConversationInfo(*r) for r in self._conn().execute(sql, [*args, limit])]

    def rename(self, id: str, user: str, title: str) -> bool:
        """Give a conversation a new title (a change: its `updated` time is now); False if `user` has no such
        conversation."""
        with self._write() as c:
            return c.execute("UPDATE conversations SET title = ?, updated = ? WHERE id = ? AND user = ?",
                             (title.strip()[:TITLE_CHARS] or "Untitled", time.time(), id, user)).rowcount == 1

    def delete(self, id: str, user: str) -> bool:
        """Delete a conversation and its turns; False if `user` has no such conversation."""
        with self._write() as c:
            return c.execute("DELETE FROM conversations WHERE id = ? AND user = ?", (id, user)).rowcount == 1

    # --- turns ------------------------------------------------------------------------------------
    def add_turn(self, id: str, user: str, answer: Answer, documents: dict[str, str],
                 scope: Sequence[str] | None = None) -> int:
        """Store a turn (creating the conversation on its first one); its number."""
        with self._write() as c:
            n = self._insert(c, id, user, answer.question, scope, time.time())
            self._answer(c, id, n, answer, documents, DONE)
        return n

    def begin_turn(self, id: str, user: str, question: str, scope: Sequence[str] | None = None) -> int:
        """Store a question as it is asked, its answer to come ("answering"; creating the conversation on its
        first one); its number."""
        with self._write() as c:
            return self._insert(c, id, user, question, scope, time.time())

    def finish_turn(self, id: str, n: int, answer: Answer, documents: dict[str, str], state: str = DONE) -> bool:
        """Store the answer of turn `n` ("interrupted": what there was of it); False if the turn is gone (its
        conversation was deleted meanwhile)."""
        with self._write() as c:
            return self._answer(c, id, n, answer, documents, state)

    def interrupt(self, id: str, n: int) -> bool:
        """Mark turn `n` interrupted if it is still being answered (its process is ending)."""
        with self._write() as c:
            return c.execute("UPDATE turns SET state = ? WHERE conversation = ? AND n = ? AND state = ?",
                             (INTERRUPTED, id, n, ANSWERING)).rowcount == 1

    def drop_turn(self, id: str, n: int) -> None:
        """Take back turn `n` (its question failed, as the asker saw); a conversation left without turns goes too."""
        with self._write() as c:
            c.execute("DELETE FROM turns WHERE conversation = ? AND n = ?", (id, n))
            c.execute("DELETE FROM conversations WHERE id = ? AND NOT EXISTS "
                      "(SELECT 1 FROM turns WHERE conversation = ?)", (id, id))

    @staticmethod
    def _insert(c: sqlite3.Connection, id: str, user: str, question: str, scope: Sequence[str] | None,
                now: float) -> int:
        c.execute("INSERT OR IGNORE INTO conversations VALUES (?, ?, ?, ?, ?)", (id, user, _title(question), now, now))
        owner = c.execute("SELECT user FROM conversations WHERE id = ?", (id,)).fetchone()
        if owner is None or owner[0] != user:  # an id of someone else's: as if it did not exist
            raise ConversationNotFoundError(missing(id))
        n = c.execute("SELECT coalesce(max(n), 0) + 1 FROM turns WHERE conversation = ?", (id,)).fetchone()[0]
        record = Answer(question, "", False).to_dict()
        c.execute("INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  (id, n, question, "", json.dumps(record, ensure_ascii=False), "{}", "{}", "",
                   None if scope is None else json.dumps(list(scope)), now, 0.0, ANSWERING))
        c.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, id))
        return n

    @staticmethod
    def _answer(c: sqlite3.Connection, id: str, n: int, answer: Answer, documents: dict[str, str],
                state: str) -> bool:
        record = answer.to_dict()
        context = {"citations": [_beyond(asdict(x), r) for x, r in zip(answer.citations, record["citations"])],
                   "related": [asdict(p) for p in answer.related] if not answer.answered else []}
        found = c.execute("UPDATE turns SET answer = ?, record = ?, context = ?, documents = ?, backend = ?, "
                          "seconds = ?, state = ? WHERE conversation = ? AND n = ?",
                          (answer.answer, json.dumps(record, ensure_ascii=False), json.dumps(context, ensure_ascii=False),
                           json.dumps(documents), answer.backend, answer.seconds, state, id, n)).rowcount == 1
        if found:
            c.execute("UPDATE conversations SET updated = ? WHERE id = ?", (time.time(), id))
        return found

    def turns(self, id: str) -> list[tuple[Turn, dict[str, str]]]:
        """Every turn of a conversation in order, each with the digests of its cited documents."""
        with self._guard():
            rows = self._conn().execute(
                "SELECT n, record, context, documents, backend, scope, created, seconds, state FROM turns "
                "WHERE conversation = ? ORDER BY n", (id,)).fetchall()
        out = []
        now = time.time()
        for n, record, context, documents, backend, scope, created, seconds, state in rows:
            answer = _rebuild(json.loads(record), json.loads(context), backend, seconds)
            if state == ANSWERING and now - created > ANSWERING_LIMIT:
                state = INTERRUPTED
            out.append((Turn(n, answer, created, None if scope is None else tuple(json.loads(scope)), state=state),
                        json.loads(documents)))
        return out

    def answering(self, id: str) -> bool:
        """Whether a turn of the conversation is still being answered (as `turns` would say)."""
        with self._guard():
            return self._conn().execute(
                "SELECT 1 FROM turns WHERE conversation = ? AND state = ? AND created >= ? LIMIT 1",
                (id, ANSWERING, time.time() - ANSWERING_LIMIT)).fetchone() is not None

    def questions(self, id: str, last: int = HISTORY_TURNS) -> list[str]:
        """The latest `last` questions of a conversation, oldest first."""
        with self._guard():
            rows = self._conn().execute("SELECT question FROM turns WHERE conversation = ? ORDER BY n DESC LIMIT ?",
                                        (id, last)).fetchall()
        return [q for (q,) in reversed(rows)]


# --- helpers ------------------------------------------------------------------------------------------
class _Guard:
    """Turns SQLite and file-system failures into one line that says how to fix them."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, e: BaseException | None, tb: Any) -> None:
        if e is None or isinstance(e, QAError):
            return
        if isinstance(e, sqlite3.DatabaseError | OSError):
            raise ConversationStoreError(store_problem(self.path, e)) from None


class _Transaction(_Guard):
    """`BEGIN IMMEDIATE` ... `COMMIT`: takes the write lock first, so two writers never deadlock."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        super().__init__(path)
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:  # type: ignore[override]
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except (sqlite3.DatabaseError, OSError) as e:
            raise ConversationStoreError(store_problem(self.path, e)) from None
        return self.conn

    def __exit__(self, kind: Any, e: BaseException | None, tb: Any) -> None:
        if e is None:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.DatabaseError as err:
                e = err
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.DatabaseError:
            pass
        super().__exit__(kind, e, tb)


def store_problem(path: Path, e: BaseException) -> str:
    """The one line shown when the conversation store cannot be used."""
    text = str(getattr(e, "strerror", None) or e)
    if isinstance(e, OSError) and e.filename and str(e.filename) != str(path):
        text = f"{text}: {e.filename}"
    if isinstance(e, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text):
        fix = "move it aside (qa starts a new one)"
    else:
        fix = "make it writable"
    return f"Conversations are off: {path} cannot be used ({text}); {fix} or set QA_CONVERSATIONS_PATH."


def missing(id: str) -> str:
    """The message for an id this user has no conversation with (someone else's looks the same)."""
    return f"No conversation {id!r}. List yours with: qa chats"


def _title(question: str) -> str:
    q = one_line(question)
    return q if len(q) <= TITLE_CHARS else q[: TITLE_CHARS - 1] + "…"


def one_line(text: str) -> str:
    """Text with its runs of whitespace (newlines too) as single spaces."""
    return " ".join(text.split())


_CITATION_FIELDS = {f.name for f in fields(Citation)}
_PASSAGE_FIELDS = {f.name for f in fields(Passage)}


def _beyond(full: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The fields of a citation that `to_dict()` leaves out (its passage, location)."""
    return {k: v for k, v in full.items() if k not in record}


def _citation(stored: dict[str, Any]) -> Citation:
    """A citation back from its JSON: boxes become `Box`es again, spans tuples."""
    c = {k: v for k, v in stored.items() if k in _CITATION_FIELDS}
    if c.get("boxes"):
        c["boxes"] = tuple(Box(**b) if isinstance(b, dict) else Box(*b) for b in c["boxes"])
    for k in ("boxes", "answer_span"):
        if isinstance(c.get(k), list):
            c[k] = tuple(c[k])
    return Citation(**c)


def _rebuild(record: dict[str, Any], context: dict[str, Any], backend: str, seconds: float) -> Answer:
    extra = context.get("citations", [])
    citations = tuple(_citation({**c, **(extra[i] if i < len(extra) else {})})
                      for i, c in enumerate(record.get("citations", [])))
    related = tuple(Passage(**{k: v for k, v in p.items() if k in _PASSAGE_FIELDS}) for p in context.get("related", []))
    return Answer(question=record["question"], answer=record["answer"], answered=record["answered"],
                  citations=citations, related=related, backend=backend, seconds=seconds,
                  verified_sentences=record.get("verified_sentences", 0),
                  total_sentences=record.get("total_sentences", 0))
