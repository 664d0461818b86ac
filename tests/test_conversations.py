"""Saved conversations: stored turns, follow-ups after a restart, users kept apart, stale citations, export."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from qa import Assistant
from qa.conversations import MIGRATIONS, ConversationStore, new_id, quoted_citations
from qa.errors import ConversationNotFoundError, ConversationStoreError
from qa.types import Answer, Citation

from .conftest import ROOT, SEED_FILE


def _qa(*args: str, index: Path) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "QA_INDEX_DIR": str(index)}
    return subprocess.run([sys.executable, "-m", "qa", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def _answer(question: str, n: int = 0) -> Answer:
    c = Citation(1, "/docs/a.txt", 10, 20, f"fact {n}", 0.5, passage_start=0, passage_end=40, passage="x" * 40)
    return Answer(question, f"Fact {n} [1].", True, citations=(c,))


def test_follow_up_after_a_restart_uses_the_stored_questions(seeded: Assistant) -> None:
    conv = seeded.conversation()
    first = conv.ask("Who is Matthew Miller?")
    assert "State Department" in first.answer
    # A new process (here: a new Assistant) resumes the conversation by its id alone.
    again = Assistant(index_dir=seeded.settings.index_dir).conversation(conv.id)
    follow = again.ask("What did he reiterate?")
    assert "11,000 containers" in follow.answer and follow.citations
    alone = seeded.ask("What did he reiterate?")  # the same question with no conversation finds nothing
    assert "11,000 containers" not in alone.answer
    turns = again.turns
    assert [t.question for t in turns] == ["Who is Matthew Miller?", "What did he reiterate?"]
    assert again.title == "Who is Matthew Miller?" and again.info.turns == 2
    # Each stored turn gives back the answer exactly: to_dict() (citations, spans) and the passages shown.
    assert turns[0].answer.to_dict() == first.to_dict() and turns[1].answer.to_dict() == follow.to_dict()
    assert turns[1].answer.citations == follow.citations and turns[0].stale == {}
    assert turns[0].answer.backend == "extractive" and turns[0].created > 0


def test_a_question_refused_for_its_length_is_answered_but_not_stored(seeded: Assistant) -> None:
    """Too long, or nothing to search for: the reply says so, and the conversation does not keep the turn."""
    conv = seeded.conversation()
    conv.ask("Who is Matthew Miller?")
    for question in ("x " * 1500, "?!"):
        refused = conv.ask(question)
        assert not refused.answered and not refused.citations
    assert [t.question for t in conv.turns] == ["Who is Matthew Miller?"] and conv.info.turns == 1
    fresh = seeded.conversation()
    fresh.ask("y " * 1500)
    assert all(c.id != fresh.id for c in seeded.conversations())  # nothing saved, nothing listed


def test_ids_are_unguessable_and_another_users_id_is_missing(seeded: Assistant) -> None:
    alice = seeded.conversation(user="alice")
    alice.ask("Who is Victor Cha?")
    assert len(alice.id) >= 24 and alice.id != new_id()
    messages = set()
    for who, cid in (("bob", alice.id), (None, alice.id), ("alice", new_id())):
        with pytest.raises(ConversationNotFoundError) as e:
            seeded.conversation(cid, user=who)
        messages.add(str(e.value).replace(cid, "ID"))
    assert messages == {"No conversation 'ID'. List yours with: qa chats"}  # no hint that the id exists
    bob = seeded.conversation(user="bob")
    bob.id = alice.id  # even a forged object cannot write, rename or delete into alice's conversation
    with pytest.raises(ConversationNotFoundError):
        bob.ask("Who is Matthew Miller?")
    with pytest.raises(ConversationNotFoundError):
        bob.rename("mine now")
    with pytest.raises(ConversationNotFoundError):
        bob.delete()
    assert seeded.conversations("bob") == [] and seeded.conversations() == []
    assert [c.title for c in seeded.conversations("alice")] == ["Who is Victor Cha?"]
    assert [t.question for t in seeded.conversation(alice.id, "alice").turns] == ["Who is Victor Cha?"]


def test_list_search_rename_delete(seeded: Assistant) -> None:
    a = seeded.conversation()
    a.ask("Who is Victor Cha?")
    b = seeded.conversation()
    b.ask("Where will Putin travel after North Korea?")
    assert [c.id for c in seeded.conversations()] == [b.id, a.id]  # latest first
    assert [c.id for c in seeded.conversations(search="vietnam")] == [b.id]  # matches an answer's text
    assert [c.id for c in seeded.conversations(search="Cha")] == [a.id]
    assert seeded.conversations(search="100%_") == []  # LIKE wildcards are literal
    a.rename("Korea analysts")
    assert seeded.conversation(a.id).title == "Korea analysts"
    assert [c.id for c in seeded.conversations(search="analysts")] == [a.id]
    b.delete()
    assert [c.id for c in seeded.conversations()] == [a.id]
    with pytest.raises(ConversationNotFoundError):
        seeded.conversation(b.id)


def test_changed_or_removed_document_marks_the_old_citation(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "harbour.txt").write_text("Harbour notes.\n\nThe ferry Lindholm sails to Skarvik at dawn.\n")
    (docs / "orchard.txt").write_text("Orchard notes.\n\nThe orchard behind the mill grows forty quince trees.\n")
    a = Assistant(index_dir=tmp_path / "index")
    a.ingest(docs)
    conv = a.conversation()
    assert "Skarvik" in conv.ask("Where does the ferry Lindholm sail?").answer
    assert "quince" in conv.ask("How many quince trees grow in the orchard?").answer
    # Text added after the cited sentence leaves its offsets valid: not stale.
    (docs / "harbour.txt").write_text("Harbour notes.\n\nThe ferry Lindholm sails to Skarvik at dawn.\nMore.\n")
    a.ingest(docs)
    assert [t.stale for t in a.conversation(conv.id).turns] == [{}, {}]
    (docs / "harbour.txt").write_text("Harbour notes, revised.\n\nThe ferry was sold in 2024.\n")
    (docs / "orchard.txt").unlink()
    a.ingest(docs)
    turns = Assistant(index_dir=tmp_path / "index").conversation(conv.id).turns
    assert turns[0].stale == {c.id: "changed" for c in turns[0].answer.citations} != {}
    assert turns[1].stale == {c.id: "removed" for c in turns[1].answer.citations} != {}
    md = a.conversation(conv.id).markdown()
    assert "has changed since" in md and "has been removed" in md


def test_export_names_every_citation_with_its_exact_text(seeded: Assistant) -> None:
    conv = seeded.conversation()
    answers = [conv.ask(q) for q in ("Who is Matthew Miller?", "What did he reiterate?",
                                     "Where will Putin travel after North Korea?", "Who won the 2018 World Cup?")]
    md = conv.markdown()
    cited = [c for ans in answers for c in ans.citations]
    assert len(cited) >= 3
    quoted = quoted_citations(md)
    assert len(quoted) == len(cited)
    for (line, text), c in zip(quoted, cited):
        assert line.startswith(f"[{c.id}] `{c.source}` (chars {c.start}-{c.end}")
        assert text == c.text == seeded.document_text(c.source)[c.start:c.end]
    assert md.startswith("# Who is Matthew Miller?\n") and "## 4. Who won the 2018 World Cup?" in md
    assert "Not found in the documents" in md
    # The command line prints the same export, and lists the conversation.
    index = seeded.settings.index_dir
    out = _qa("chats", "export", conv.id, index=index)
    assert out.returncode == 0 and out.stdout == md
    listed = json.loads(_qa("chats", "--json", index=index).stdout)["conversations"]
    assert [(c["id"], c["title"], c["turns"]) for c in listed] == [(conv.id, "Who is Matthew Miller?", 4)]


def test_cli_new_chat_then_follow_up(seeded: Assistant) -> None:
    index = seeded.settings.index_dir
    first = _qa("ask", "--new-chat", "--json", "Who is Matthew Miller?", index=index)
    assert first.returncode == 0, first.stderr
    cid = json.loads(first.stdout)["conversation_id"]
    follow = _qa("ask", "--chat", cid, "What did he reiterate?", index=index)
    assert follow.returncode == 0 and "11,000 containers" in follow.stdout
    listed = _qa("chats", index=index)
    assert cid in listed.stdout and "2 turns" in listed.stdout and "Who is Matthew Miller?" in listed.stdout
    assert _qa("chats", "rename", cid, "Miller", index=index).returncode == 0
    assert "Miller" in _qa("chats", "--search", "mill", index=index).stdout
    other = _qa("chats", "export", cid, "--user", "bob", index=index)
    assert other.returncode == 1 and other.stderr.strip() == f"error: No conversation {cid!r}. List yours with: qa chats"
    assert _qa("chats", "delete", cid, index=index).returncode == 0
    assert _qa("chats", "--json", index=index).stdout.strip() == '{"conversations": []}'


@pytest.mark.parametrize("kind", ["corrupt", "unwritable"])
def test_bad_store_says_one_line_and_answers_still_work(seeded: Assistant, tmp_path: Path, kind: str) -> None:
    if kind == "corrupt":
        path = tmp_path / "conversations.sqlite3"
        path.write_bytes(b"this is not a database\n" * 100)
    else:
        (tmp_path / "a-file").write_text("x")
        path = tmp_path / "a-file" / "conversations.sqlite3"  # its folder cannot be created
    a = Assistant(index_dir=seeded.settings.index_dir, conversations_path=path)
    with pytest.raises(ConversationStoreError) as e:
        a.conversation()
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"Conversations are off: {path}") and "QA_CONVERSATIONS_PATH" in msg
    assert "Vietnam" in a.ask("Where will Putin travel after North Korea?").answer
    out = subprocess.run([sys.executable, "-m", "qa", "ask", "--new-chat", "Where will Putin travel after North Korea?"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "QA_INDEX_DIR": str(seeded.settings.index_dir),
                              "QA_CONVERSATIONS_PATH": str(path)})
    assert out.returncode == 0 and "Vietnam" in out.stdout
    assert out.stderr.strip() == f"warning: {msg}"


def test_schema_version_and_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    assert ConversationStore(path).version() == len(MIGRATIONS)
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        store = ConversationStore(path)  # its own connection, like another process
        try:
            for i in range(25):
                store.add_turn(f"conv-{k % 4}", "u", _answer(f"q{k}-{i}", i), {})
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = ConversationStore(path)
    for k in range(4):
        turns = store.turns(f"conv-{k}")
        assert [t.n for t, _ in turns] == list(range(1, 76))  # 3 writers x 25 turns, no number twice
    assert sum(c.turns for c in store.list("u")) == 300


def test_a_thousand_turn_conversation_opens_whole(seeded: Assistant) -> None:
    conv = seeded.conversation()
    store = seeded.conversation_store()
    for i in range(1000):
        store.add_turn(conv.id, "", _answer(f"Question {i}?", i), {})
    turns = seeded.conversation(conv.id).turns
    assert len(turns) == 1000 and turns[-1].answer.answer == "Fact 999 [1]." and turns[-1].n == 1000
    assert turns[-1].stale == {1: "removed"}  # /docs/a.txt is not in the index
    assert conv.history() == [f"Question {i}?" for i in range(990, 1000)]  # a follow-up sees the latest ten


# --- a question is kept from the moment it is asked -----------------------------------------------------------
class _Writer:
    """An answer stream that writes "First." then waits for `go` before "First. Second." (or fails there)."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.go = threading.Event()
        self.fail = fail

    def __call__(self, question: str, top_k: int | None = None, history: list[str] | None = None,
                 sources: list[str] | None = None):
        yield Answer(question, "First.", True)
        if self.fail is not None:
            raise self.fail
        assert self.go.wait(60)
        yield Answer(question, "First. Second.", True)


def _states(a: Assistant, cid: str) -> list[tuple[str, str, str]]:
    return [(t.question, t.state, t.answer.answer) for t in a.conversation(cid).turns]


def _eventually(check, seconds: float = 30) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.05)


def test_a_question_is_stored_as_it_is_asked_and_its_answer_when_complete(seeded: Assistant) -> None:
    """A page reloaded while its answer was written lost the question: it was stored only with its answer."""
    conv = seeded.conversation()
    answers = conv.stream("Who is Matthew Miller?")
    assert _states(seeded, conv.id) == [("Who is Matthew Miller?", "answering", "")]  # before the first sentence
    assert [c.title for c in seeded.conversations()] == ["Who is Matthew Miller?"]
    assert "still being written" in seeded.conversation(conv.id).markdown() and seeded.conversation(conv.id).answering
    *_, final = answers
    assert _states(seeded, conv.id) == [("Who is Matthew Miller?", "done", final.answer)]
    assert not seeded.conversation(conv.id).answering
    assert seeded.conversation(conv.id).turns[0].answer.to_dict() == final.to_dict()


def test_a_reader_that_leaves_early_still_gets_its_answer_stored(seeded: Assistant,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    writer = _Writer()
    monkeypatch.setattr(seeded, "stream", writer)
    conv = seeded.conversation()
    answers = conv.stream("Who is Victor Cha?")
    assert next(answers).answer == "First."
    answers.close()  # a page reloaded: Gradio closes the answer it was reading
    assert _states(seeded, conv.id) == [("Who is Victor Cha?", "answering", "")]
    left = conv.stream("And then?")
    del left  # a page that went away before the first sentence
    writer.go.set()
    _eventually(lambda: [s for _, s, _ in _states(seeded, conv.id)] == ["done", "done"])
    assert _states(seeded, conv.id) == [("Who is Victor Cha?", "done", "First. Second."),
                                        ("And then?", "done", "First. Second.")]


def test_an_answer_that_never_completed_reads_as_interrupted(seeded: Assistant,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from qa.conversation_store import ANSWERING_LIMIT
    from qa.conversations import _UNFINISHED

    monkeypatch.setattr(seeded, "stream", _Writer(fail=KeyboardInterrupt()))
    conv = seeded.conversation()
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in `qa ask --chat`: what was written is kept
        for _ in conv.stream("Who is Victor Cha?"):
            pass
    assert _states(seeded, conv.id) == [("Who is Victor Cha?", "interrupted", "First.")]
    md = conv.markdown()
    assert "First.\n\n*Interrupted: this answer was not completed." in md
    # A process that ends while it writes an answer marks it interrupted on its way out.
    writer = _Writer()
    monkeypatch.setattr(seeded, "stream", writer)
    answers = conv.stream("Who is Matthew Miller?")
    next(answers)
    _UNFINISHED.interrupt_all()  # what atexit runs
    assert _states(seeded, conv.id)[1] == ("Who is Matthew Miller?", "interrupted", "")
    writer.go.set()
    answers.close()
    # One that died without a word (killed) leaves "answering", read as interrupted once no answer can come.
    store = seeded.conversation_store()
    n = store.begin_turn(conv.id, "", "Where will Putin travel?")
    assert _states(seeded, conv.id)[-1][1] == "answering"
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE turns SET created = created - ? WHERE conversation = ? AND n = ?",
                   (ANSWERING_LIMIT + 1, conv.id, n))
    assert _states(seeded, conv.id)[-1] == ("Where will Putin travel?", "interrupted", "")
    assert not conv.answering


def test_a_question_whose_answer_failed_is_not_kept(seeded: Assistant, monkeypatch: pytest.MonkeyPatch) -> None:
    """As before questions were stored when asked: the asker saw the error, and the conversation keeps nothing."""
    from qa.errors import BackendError

    conv = seeded.conversation()
    conv.ask("Who is Matthew Miller?")
    monkeypatch.setattr(seeded, "stream", _Writer(fail=BackendError("The model server is down.")))
    with pytest.raises(BackendError):
        conv.ask("What did he reiterate?")
    assert [q for q, _, _ in _states(seeded, conv.id)] == ["Who is Matthew Miller?"]
    fresh = seeded.conversation()
    with pytest.raises(BackendError):
        fresh.ask("Who is Victor Cha?")
    assert [c.id for c in seeded.conversations()] == [conv.id]  # a new conversation it opened is gone with it


def test_a_store_of_schema_1_gains_turn_states(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        for sql in ("CREATE TABLE schema_version (version INTEGER NOT NULL)", *MIGRATIONS[0]):
            db.execute(sql)
        db.execute("INSERT INTO schema_version VALUES (1)")
        db.execute("INSERT INTO conversations VALUES ('c1', '', 'Old question?', 1.0, 1.0)")
        record = json.dumps(Answer("Old question?", "Old answer.", False).to_dict())
        db.execute("INSERT INTO turns VALUES ('c1', 1, 'Old question?', 'Old answer.', ?, '{}', '{}', 'extractive', "
                   "NULL, 1.0, 0.1)", (record,))
    store = ConversationStore(path)
    assert store.version() == len(MIGRATIONS) == 2
    [(turn, _)] = store.turns("c1")
    assert (turn.question, turn.answer.answer, turn.state) == ("Old question?", "Old answer.", "done")


def test_renaming_a_conversation_is_a_change(seeded: Assistant) -> None:
    """PATCH /v1/conversations/{id} (and `qa chats rename`) left `updated` as it was."""
    import time

    a = seeded.conversation()
    a.ask("Who is Victor Cha?")
    b = seeded.conversation()
    b.ask("Who is Matthew Miller?")
    before = a.info.updated
    time.sleep(0.01)
    a.rename("Korea analyst")
    assert a.info.updated > before and a.info.updated > b.info.updated
    assert [c.id for c in seeded.conversations()] == [a.id, b.id]  # latest change first


def test_a_turn_asked_of_one_document_by_name_keeps_that_name_as_its_scope(seeded: Assistant) -> None:
    """One string is one source, as for ask(): it was stored one "source" per character."""
    conv = seeded.conversation()
    assert conv.ask("Who denied the arms transfers?", sources=SEED_FILE.name).answered
    conv.ask("Who denied the arms transfers?", sources=SEED_FILE)  # a path, too
    assert [t.scope for t in conv.turns] == [(SEED_FILE.name,), (str(SEED_FILE),)]
