"""The Python API as a program that embeds qa uses it: names it can import, threads, notebooks, closing."""

from __future__ import annotations

import pytest

import qa
import qa.errors


def test_every_qa_error_and_returned_type_is_importable_from_qa() -> None:
    errors = {n for n, o in vars(qa.errors).items() if isinstance(o, type) and issubclass(o, qa.QAError)}
    assert errors <= set(qa.__all__)
    for name in qa.__all__:
        assert getattr(qa, name) is not None
    # What conversation() and conversations() return, and what they raise, can be named for type hints and except.
    assert {"Conversation", "ConversationInfo", "Turn"} <= set(qa.__all__)


def test_version_is_the_installed_distributions_or_a_source_trees_pyproject() -> None:
    import importlib.metadata
    import subprocess
    import sys
    import tomllib

    from .conftest import ROOT

    assert qa.__version__ == importlib.metadata.version("qa")
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    # -S: no site-packages, so no installed qa to ask (`import qa` itself needs none of qa's dependencies).
    r = subprocess.run([sys.executable, "-S", "-c", "import qa; print(qa.__version__, qa.__file__)"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [expected, str(ROOT / "qa" / "__init__.py")]


def test_an_unknown_conversation_is_caught_by_its_public_class(tmp_path) -> None:
    a = qa.Assistant(index_dir=tmp_path / "index")
    with pytest.raises(qa.ConversationNotFoundError, match="No conversation 'nope'"):
        a.conversation("nope")
    assert isinstance(a.conversation(), qa.Conversation)


def test_one_earlier_question_given_as_a_string_is_one_question(seeded) -> None:
    # A str is a Sequence[str] to a type checker, so nothing warned; it was read as one "question" per character.
    as_list = seeded.ask("and when?", history=["Where will Putin travel after North Korea?"])
    as_str = seeded.ask("and when?", history="Where will Putin travel after North Korea?")
    assert as_list.answered and "Vietnam" in as_list.answer
    assert as_str.answer == as_list.answer


def test_first_questions_from_many_threads_load_the_models_once(seeded, monkeypatch) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import qa.embedding
    import qa.retrieval

    built: list[str] = []
    load_embedder, Retriever = qa.embedding.load_embedder, qa.retrieval.Retriever

    def counting_load(*args, **kw):
        built.append("embedder")
        return load_embedder(*args, **kw)

    class CountingRetriever(Retriever):
        def __init__(self, *args, **kw) -> None:
            built.append("retriever")
            super().__init__(*args, **kw)

    monkeypatch.setattr(qa.embedding, "load_embedder", counting_load)
    monkeypatch.setattr(qa.retrieval, "Retriever", CountingRetriever)
    start = threading.Barrier(4)

    def ask(q: str) -> qa.Answer:
        start.wait()
        return seeded.ask(q)

    with ThreadPoolExecutor(4) as pool:  # a web app's first requests, all before any model is loaded
        answers = list(pool.map(ask, ["Who denied the arms transfers?"] * 4))
    assert sorted(built) == ["embedder", "retriever"]  # was one embedder and one BM25 index per thread
    assert {a.answer for a in answers} == {answers[0].answer} and answers[0].answered


QUESTION = "Who denied the arms transfers?"


def _open_files(folder) -> list[str]:
    """The files under `folder` this process holds open."""
    import os

    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


def _closed(folder) -> bool:
    """No file under `folder` is open within a few seconds (Chroma closes its SQLite connections in the background)."""
    import time

    deadline = time.monotonic() + 10
    while _open_files(folder):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_an_index_folder_deleted_and_made_again_in_the_same_process(tmp_path) -> None:
    import shutil

    from tests.conftest import SEED_FILE

    index = tmp_path / "index"
    a = qa.Assistant(index_dir=index)
    a.ingest(SEED_FILE)
    other = qa.Assistant(index_dir=index)  # a notebook's earlier cell, still holding the old files
    assert a.ask(QUESTION).answered and other.documents()
    shutil.rmtree(index)  # start over
    with pytest.raises(qa.IndexMissingError):  # was: answered from the deleted files
        a.ask(QUESTION)
    b = qa.Assistant(index_dir=index)
    assert b.ingest(SEED_FILE).count("added") == 1  # was: chromadb's "attempt to write a readonly database"
    assert b.ask(QUESTION).answered
    assert [d.source for d in other.documents()] == [str(SEED_FILE)]  # reads the new index
    assert a.ask(QUESTION).answered and b.ask(QUESTION).answered  # letting go of the old files broke nothing


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self/fd"), reason="lists open files through /proc")
def test_close_and_with_give_up_the_index_files(tmp_path) -> None:
    from tests.conftest import SEED_FILE

    index = tmp_path / "index"
    with qa.Assistant(index_dir=index) as a:
        a.ingest(SEED_FILE)
        assert a.ask(QUESTION).answered and _open_files(index)
    assert _closed(index)  # was: open until the process ended (there was no close())
    assert a.ask(QUESTION).answered  # a closed Assistant opens the index again when used
    a.close()
    assert _closed(index)

    b, c = qa.Assistant(index_dir=index), qa.Assistant(index_dir=index)
    assert b.ask(QUESTION).answered and c.ask(QUESTION).answered
    b.close()  # the files stay open for c, which goes on answering
    assert c.ask(QUESTION).answered and _open_files(index)
    c.close()
    assert _closed(index)


def test_a_key_given_as_an_argument_chooses_the_openai_backend_as_the_variable_does(monkeypatch) -> None:
    # README: QA_LLM defaults to openai when there is a key. Settings(openai_api_key=...) did so, but
    # Assistant(openai_api_key=...) kept the default worked out before the key was given: extractive.
    assert qa.Settings(openai_api_key="sk-test").llm == "openai"
    assert qa.Assistant(openai_api_key="sk-test").backend == "openai"
    assert qa.Assistant(qa.Settings(), openai_api_key="sk-test").backend == "openai"
    assert qa.Assistant(openai_api_key="sk-test", llm="extractive").backend == "extractive"
    monkeypatch.setenv("QA_TOP_K", "7")  # what the environment sets is kept under other overrides
    assert qa.Assistant(min_support=0.4).settings.top_k == 7
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert qa.Assistant(top_k=3).backend == "openai"


def test_forget_one_source_given_as_a_string(seeded) -> None:
    source = seeded.documents()[0].source
    report = seeded.forget(source)  # was: a set of its characters, none of them a source: nothing removed, silently
    assert report.removed == (source,) and seeded.documents() == ()


def test_an_answer_shows_short_in_a_notebook_and_stays_plain_data(seeded) -> None:
    """Its repr held every citation's passage and every related passage (~6 KB); Jupyter shows Markdown."""
    import dataclasses
    from pathlib import Path

    from markdown_it import MarkdownIt

    ans = seeded.ask("Who denied the arms transfers?")
    assert ans.citations and ans.related
    shown = repr(ans)
    assert len(shown) < 400 and "\n" not in shown, shown
    assert shown.startswith("Answer(question='Who denied the arms transfers?', answer=") and "answered=True" in shown
    assert f"citations={len(ans.citations)} from {Path(ans.citations[0].source).name}" in shown
    c = ans.citations[0]
    assert len(repr(c)) < 300 and c.passage not in repr(c) and repr(c.text) in repr(c)
    p = ans.related[0]
    assert len(p.text) > 100 and len(repr(p)) < 300 and p.text not in repr(p) and "\n" not in repr(p)
    assert repr(p).startswith(f"Passage(source={p.source!r}, start={p.start}, end={p.end}, text=")
    # Still plain data: fields, asdict, equality and the JSON are those of the dataclass.
    as_dict = dataclasses.asdict(ans)
    assert as_dict["citations"][0]["passage"] == c.passage and len(as_dict["related"]) == len(ans.related)
    assert ans == dataclasses.replace(ans) and ans != dataclasses.replace(ans, answered=False)
    assert ans.to_dict()["citations"][0]["text"] == c.text
    html = MarkdownIt().render(ans._repr_markdown_())
    assert "Who denied the arms transfers?" in html and ans.answer in html  # the [1] marker as it is
    assert f"<blockquote>\n<p>{c.text}</p>\n</blockquote>" in html and Path(c.source).name in html


def test_markdown_of_an_answer_shows_document_text_never_renders_it() -> None:
    text = "<img src=x onerror=alert(1)> *not emphasis* [a](javascript:alert(1))\n# not a heading"
    ans = qa.Answer(question="<b>q</b>?", answer=f"{text} [1].", answered=True,
                    citations=(qa.Citation(1, "/docs/<x>.txt", 0, len(text), text, 0.5),))
    html = __import__("markdown_it").MarkdownIt().render(ans._repr_markdown_())
    assert "<img" not in html and "<b>" not in html and "<a " not in html and "<h1>" not in html and "<em>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt; *not emphasis* [a](javascript:alert(1))" in html
    assert "# not a heading" in html and "&lt;x&gt;.txt" in html


def test_an_ingest_report_of_a_big_folder_shows_its_summary() -> None:
    files = tuple(qa.FileResult(f"/docs/file{i}.txt", "added", 3) for i in range(300))
    failed = tuple(qa.FileResult(f"/docs/bad{i}.pdf", "failed", reason="unreadable") for i in range(5))
    report = qa.IngestReport(files + failed, chunks_total=900, seconds=12.0)
    assert repr(report) == ("IngestReport(300 added, 0 updated, 0 unchanged, 0 removed, 5 failed; 900 chunks embedded, "
                            "900 in index; 12.0s; failed: bad0.pdf, bad1.pdf, bad2.pdf and 2 more)")


def test_an_error_shows_a_python_user_the_call_for_the_command_it_names(seeded, tmp_path) -> None:
    """The messages say what to run as `qa` commands; a traceback (and Jupyter) also shows the Python call."""
    import subprocess
    import sys
    import traceback
    from pathlib import Path

    from .conftest import ROOT
    from .test_integrity import QUESTION, damage_sqlite_header

    with pytest.raises(qa.IndexMissingError) as missing:
        qa.Assistant(index_dir=tmp_path / "none").ask(QUESTION)
    assert str(missing.value).endswith("Run: qa ingest seeds/")  # as the CLI, the HTTP API and the UI show it
    assert missing.value.__notes__ == ["In Python (a = qa.Assistant(...)): `qa ingest seeds/` is `a.ingest('seeds/')`"]
    index = Path(seeded.settings.index_dir)
    seeded.close()
    damage_sqlite_header(index)
    with pytest.raises(qa.IndexDamagedError) as damaged:
        qa.Assistant(index_dir=index).ask(QUESTION)
    shown = "".join(traceback.format_exception(damaged.value))
    assert "Run: qa ingest --rebuild" in shown and "`qa ingest --rebuild` is `a.rebuild()`" in shown
    r = subprocess.run([sys.executable, "-m", "qa", "--index-dir", str(index), "ask", QUESTION], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "In Python" not in r.stderr, r.stderr


def test_hybrid_retrieval_fuses_at_least_min_candidates_a_side(seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fused order depends on each side's depth, and fusion was tuned at 40-50 a side: the default
    top_k of 5 fuses 50 (was 20), and asking for 10 passages fuses the same lists, so the first 5 are the same."""
    from qa.retrieval import CANDIDATES_PER_SIDE, MIN_CANDIDATES

    r = seeded.retriever()
    depths: list[tuple[str, int]] = []
    as_retriever, get = r.index.as_retriever, r.bm25.get
    monkeypatch.setattr(r.index, "as_retriever",
                        lambda **kw: depths.append(("dense", kw["similarity_top_k"])) or as_retriever(**kw))
    monkeypatch.setattr(r.bm25, "get", lambda k, *a: depths.append(("bm25", k)) or get(k, *a))
    question = "Who denied the arms transfers?"
    five, ten = r.retrieve(question, 5), r.retrieve(question, 10)
    assert MIN_CANDIDATES > 5 * CANDIDATES_PER_SIDE
    assert depths == [("dense", MIN_CANDIDATES), ("bm25", MIN_CANDIDATES)] * 2
    assert five == ten[:5]
    r.retrieve(question, 20)
    assert depths[-2:] == [("dense", 20 * CANDIDATES_PER_SIDE), ("bm25", 20 * CANDIDATES_PER_SIDE)]
