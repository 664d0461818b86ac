"""A state machine of a folder and its index (Hypothesis `RuleBasedStateMachine`).

Rules add, change, rename and delete files, ingest, remove a document, crash an ingest between
writing chunks and committing them, and ask (scoped to one document and not). After every step the index matches a simple model: the documents and
digests of the last completed ingest, Chroma and BM25 holding the same chunks, and no answer citing
text that was removed or changed.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from qa import Assistant, IndexMissingError

NAMES = ["alpha.txt", "beta.md", "sub/gamma.txt", "sub/deep/delta.txt"]
WORDS = ["harbor", "lantern", "granite", "meadow", "cobalt", "saffron", "tundra", "velvet", "quartz", "ember"]
FILLER = ("The committee met again on Tuesday to review the quarterly figures. Nothing else was decided "
          "and the minutes were approved without changes. ")


class Crash(Exception):
    """Stands for the process dying between writing a batch of chunks and committing it."""


_EMBEDDER: list = []  # one model for every run of the machine: loading it is the slow part


class IndexMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="qa-machine-"))
        self.docs = self.root / "docs"
        self.docs.mkdir()
        self.a = Assistant(index_dir=self.root / "index")
        if _EMBEDDER:
            self.a._embedder = _EMBEDDER[0]
        else:
            _EMBEDDER.append(self.a.embedder)
        self.folder: dict[str, str] = {}  # name -> text, as on disk now
        self.indexed: dict[str, str] | None = None  # name -> text, as the last completed ingest left it
        self.version = 0

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def _text(self, name: str, word: str) -> str:
        self.version += 1
        # A sentence with a fact unique to this version of this file, among filler.
        return f"{FILLER}The code word of {Path(name).stem} is {word}{self.version}.\n\n{FILLER * 2}"

    def _write(self, name: str, text: str) -> None:
        p = self.docs / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        self.folder[name] = text

    @rule(name=st.sampled_from(NAMES), word=st.sampled_from(WORDS))
    def write(self, name: str, word: str) -> None:
        self._write(name, self._text(name, word))

    @precondition(lambda self: self.folder)
    @rule(data=st.data(), dest=st.sampled_from(NAMES))
    def rename(self, data: st.DataObject, dest: str) -> None:
        src = data.draw(st.sampled_from(sorted(self.folder)))
        if src == dest:
            return
        (self.docs / dest).parent.mkdir(parents=True, exist_ok=True)
        (self.docs / src).replace(self.docs / dest)
        self.folder[dest] = self.folder.pop(src)

    @precondition(lambda self: self.folder)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.folder)))
        (self.docs / name).unlink()
        del self.folder[name]

    @rule()
    def ingest(self) -> None:
        report = self.a.ingest(self.docs)
        assert not [f for f in report.files if f.status == "failed"]
        self.indexed = dict(self.folder)

    @precondition(lambda self: self.folder)
    @rule()
    def crash_ingest(self) -> None:
        """Chunks written, then the run dies before its commit: the index must still be the old one."""
        store = self.a.store(create=True)

        def die(*_: object, **__: object) -> None:
            raise Crash

        store.commit = die  # type: ignore[method-assign]
        try:
            self.a.ingest(self.docs)
        except Crash:
            pass
        finally:
            del store.commit

    @precondition(lambda self: self.indexed)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        """`qa remove`: the document leaves the index; the file stays until the next ingest re-adds it."""
        assert self.indexed
        name = data.draw(st.sampled_from(sorted(self.indexed)))
        report = self.a.remove(str((self.docs / name).absolute()))
        assert report.removed == (str((self.docs / name).absolute()),)
        del self.indexed[name]

    @precondition(lambda self: self.indexed)
    @rule(data=st.data(), name=st.sampled_from(NAMES))
    def ask_scoped(self, data: st.DataObject, name: str) -> None:
        """A question scoped to one indexed document cites only that document, as it is indexed."""
        assert self.indexed
        scope = data.draw(st.sampled_from(sorted(self.indexed)))
        path = str((self.docs / scope).absolute())
        ans = self.a.ask(f"What is the code word of {Path(name).stem}?", sources=[path])
        for c in ans.citations:
            assert c.source == path and self.indexed[scope][c.start:c.end] == c.text

    @precondition(lambda self: self.indexed is not None)
    @rule(name=st.sampled_from(NAMES))
    def ask(self, name: str) -> None:
        assert self.indexed is not None
        question = f"What is the code word of {Path(name).stem}?"
        if not self.indexed:  # found by this machine: an emptied index says how to fill it, one line
            with pytest.raises(IndexMissingError, match="Run: qa ingest"):
                self.a.ask(question)
            return
        ans = self.a.ask(question)
        indexed = {str((self.docs / n).absolute()): t for n, t in self.indexed.items()}
        for c in ans.citations:
            assert c.source in indexed, f"cited {c.source}, which the index should not hold"
            assert indexed[c.source][c.start:c.end] == c.text, "cited text that was changed since"

    @invariant()
    def index_matches_the_last_ingest(self) -> None:
        if self.indexed is None:
            return
        want = {str((self.docs / n).absolute()): hashlib.sha256(t.encode()).hexdigest()
                for n, t in self.indexed.items()}
        records = self.a.store().records()
        assert {s: r.digest for s, r in records.items()} == want
        for source in want:
            assert self.a.document_text(source) == self.indexed[str(Path(source).relative_to(self.docs.absolute()))]

    @invariant()
    def bm25_and_chroma_hold_the_same_chunks(self) -> None:
        if self.indexed is None or not self.a.store().count():
            return
        store = self.a.store()
        records = store.records()
        got = store.chunks.get(include=["metadatas"])
        ids = set(got["ids"])
        committed = {i for i, m in zip(got["ids"], got["metadatas"])
                     if (r := records.get(m["source"])) and r.digest == m["digest"] and m["index"] < r.chunks}
        bm25 = {c["node_id"] for c in self.a.retriever().bm25.get(1).corpus}
        # Uncommitted chunks of a crashed run may be on either side until the next ingest repairs them;
        # every committed chunk must be searchable by keyword, and BM25 holds nothing Chroma has dropped.
        assert committed <= bm25
        assert bm25 <= ids


IndexMachine.TestCase.settings = settings(
    settings.default, max_examples=max(4, settings.default.max_examples // 3), stateful_step_count=12)
test_index_state_machine = IndexMachine.TestCase
