"""No input crashes qa: Hypothesis over questions (Python API and CLI), documents and settings.

Bounded for `make test` (profile "ci"); `QA_HYPOTHESIS_PROFILE=long` runs many more examples. Every
failing example Hypothesis found is kept below as a regular test (`test_found_*`).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from qa import Answer, Assistant, QAError
from qa.reading.formats import SUPPORTED_SUFFIXES

from .conftest import ROOT

# --- strategies ---------------------------------------------------------------------------------------------
SCRIPTS = ["Where will Putin travel", "Путин поедет во Вьетнам", "プーチンはどこへ", "بوتين سيسافر",
           "פוטין ייסע", "普京将前往越南", "Wohin reist Putin?", "🙂🇰🇵", "x\u0301\u0302\u0303", "a\u200bb\u200dc"]
ODD = st.sampled_from(["???", "...", "🙂", "!!!", "\u202eWhere is Putin?\u202c", "\u200b\u200b", "\ufeff",
                       "\x00", "\x1b[31mred", "\r\n\t", "Where\x00 will Putin travel?", "é" * 2000, "-",
                       "%s %d {0} {question}", "' OR 1=1 --", "<script>alert(1)</script>", "\\", "\ud800"])
QUESTIONS = st.one_of(
    ODD,
    st.text(max_size=200),  # any Unicode, surrogates included
    st.text(st.characters(categories=["P", "S"]), min_size=1, max_size=30),  # punctuation, symbols, emoji
    st.text(st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me"]), min_size=1, max_size=40),
    st.builds(lambda c, n: c * n, st.characters(codec="utf-8"), st.integers(1500, 2100)),  # one huge "word"
    st.lists(st.sampled_from(SCRIPTS), min_size=1, max_size=6).map(" ".join),  # mixed scripts, RTL
)

_piece = st.one_of(
    st.text(max_size=120).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"\r\n", b"\r", b"\n", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00", b"\x80\xfe",
                     "\u200b\u200d\u2028\u2029".encode(), b"Putin will travel to Vietnam. ", b"\t", b"  "]),
    st.binary(max_size=16),
)
CONTENTS = st.one_of(st.lists(_piece, max_size=25).map(b"".join), st.binary(max_size=600))


@contextlib.contextmanager
def _env(**values: str | None) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_answer(a: Assistant, ans: Answer) -> None:
    """What holds for every answer: a plain Answer whose citations are exact spans of their documents."""
    assert isinstance(ans, Answer)
    assert isinstance(ans.answer, str) and ans.answer
    assert ans.answered or not ans.citations
    for c in ans.citations:
        assert a.document_text(c.source)[c.start:c.end] == c.text


def run_cli(*args: str) -> tuple[int, str, str]:
    """`qa ARGS` in this process: exit code, stdout, stderr (an uncaught exception fails the test)."""
    from qa.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(args))
        except SystemExit as e:  # argparse usage errors
            rc = int(e.code or 0)
    return rc, out.getvalue(), err.getvalue()


def check_cli(rc: int, out: str, err: str) -> None:
    assert "Traceback" not in out + err
    assert rc in (0, 1), (rc, err)
    if rc == 1:
        assert err.startswith("error: ") and err.count("\n") == 1, err


# --- questions ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seeded_copy(seeded_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    index = tmp_path_factory.mktemp("props") / "index"
    shutil.copytree(seeded_index, index)
    with _env(QA_INDEX_DIR=str(index)):
        yield index


@pytest.fixture(scope="module")
def assistant(seeded_copy: Path) -> Assistant:
    return Assistant(index_dir=seeded_copy)


@given(q=QUESTIONS)
@example(q="???").via("issue 18: ZeroDivisionError in the keyword score")
@example(q="...").via("issue 18")
@example(q="🙂").via("issue 18")
@example(q="\ud800").via("long profile: a lone surrogate in the history crashed the tokenizer")
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_any_question_gets_an_answer_with_exact_citations(assistant: Assistant, q: str) -> None:
    check_answer(assistant, assistant.ask(q))
    history_answer = assistant.ask("And when?", history=[q])  # the same text as an earlier turn
    check_answer(assistant, history_answer)


@given(q=QUESTIONS.filter(lambda q: not q.lstrip().startswith("-")))
@example(q="???")
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_any_question_through_the_cli_exits_0_or_1_with_one_line(seeded_copy: Path, q: str) -> None:
    for args in (["ask", q], ["ask", "--json", q]):
        rc, out, err = run_cli("--index-dir", str(seeded_copy), *args)
        check_cli(rc, out, err)
        if rc == 0 and "--json" in args:
            import json

            assert json.loads(out)["question"] == re.sub("[\ud800-\udfff]", "\ufffd", q)


@pytest.mark.slow
@given(q=QUESTIONS.filter(lambda q: "\x00" not in q and not q.lstrip().startswith("-")))
@example(q="???")
@example(q="🙂")
@settings(max_examples=int(os.environ.get("QA_PROPS_SUBPROCESS_EXAMPLES", "4")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
def test_any_question_through_the_real_qa_command(seeded_copy: Path, q: str) -> None:
    """The `qa` command as a user runs it (the surrogates a terminal cannot send are replaced)."""
    arg = q.encode("utf-8", "replace").decode("utf-8")
    p = subprocess.run([sys.executable, "-m", "qa", "ask", arg], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "QA_INDEX_DIR": str(seeded_copy)}, timeout=300)
    check_cli(p.returncode, p.stdout, p.stderr)


def test_found_a_question_without_word_characters_is_not_a_crash(assistant: Assistant) -> None:
    # Found by Hypothesis (and by hand, issue 18): "???" raised ZeroDivisionError in the keyword score.
    for q in ("???", "...", "🙂", "\u200b"):
        ans = assistant.ask(q)
        assert not ans.answered and not ans.citations
    rc, out, err = run_cli("--index-dir", str(assistant.settings.index_dir), "ask", "???")
    assert rc == 0 and "Traceback" not in err


def test_a_question_that_looks_like_an_option_says_how_to_ask_it(seeded_copy: Path) -> None:
    rc, out, err = run_cli("--index-dir", str(seeded_copy), "ask", "--", "-5 what?")
    check_cli(rc, out, err)
    assert rc == 0 and out.strip()


# --- documents ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def doc_assistant(tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    return Assistant(index_dir=tmp_path_factory.mktemp("props-docs") / "index")


_counter = iter(range(10**9))


@given(files=st.lists(st.tuples(st.sampled_from(SUPPORTED_SUFFIXES), CONTENTS), min_size=1, max_size=4))
@example(files=[(".txt", b"\xef\xbb\xbfA\r\nB\rC\x00D")])
@example(files=[(".md", "Putin\u200b will\u2028travel \ud800 to Vietnam. ".encode("utf-8", "surrogatepass") * 30)])
@example(files=[(".pdf", b"%PDF-1.4 not really"), (".docx", b"PK\x03\x04junk"), (".html", b"<p>\x00</p>")])
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_any_file_is_indexed_exactly_or_reported_failed(doc_assistant: Assistant, tmp_path_factory, files) -> None:
    folder = tmp_path_factory.mktemp(f"docs{next(_counter)}")
    for n, (suffix, data) in enumerate(files):
        (folder / f"f{n}{suffix}").write_bytes(data)
    report = doc_assistant.ingest(folder)  # never raises
    assert {Path(f.path).name for f in report.files} == {f"f{n}{s}" for n, (s, _) in enumerate(files)}
    store = doc_assistant.store()
    for f in report.files:
        assert f.status in ("added", "unchanged", "failed"), f
        if f.status == "failed":
            assert f.reason.strip() and "\n" not in f.reason
            assert not store.chunks.get(where={"source": f.path}, include=[])["ids"]
            continue
        text = doc_assistant.document_text(f.path)
        rows = sorted(((m, t) for _, t, m in store.all_chunks() if m["source"] == f.path), key=lambda r: r[0]["index"])
        assert [m["index"] for m, _ in rows] == list(range(len(rows)))
        for m, t in rows:
            assert text[m["start"]:m["end"]] == t


# --- settings ----------------------------------------------------------------------------------------------------
def _setting_values(name: str) -> st.SearchStrategy[str]:
    junk = st.one_of(st.text(max_size=40), st.integers(-10**6, 10**6).map(str),
                     st.floats(allow_nan=True, allow_infinity=True).map(str), st.sampled_from(["", " ", "0", "-1"]))
    if name.endswith("url"):  # never point a random URL at another machine: loopback or not a URL at all
        loop = st.builds(lambda p, path: f"http://127.0.0.1:{p}{path}", st.integers(0, 70000),
                         st.sampled_from(["", "/", "/v1", "/x?y=1"]))
        return st.one_of(loop, junk.filter(lambda v: "://" not in v and "." not in v))
    return junk


def _fields() -> list[str]:
    from qa.settings import Settings

    return sorted(Settings.model_fields)


@pytest.mark.parametrize("name", _fields())
@settings(max_examples=max(3, settings.default.max_examples // 6))
@given(data=st.data())
def test_any_setting_value_gives_one_clear_line_or_works(seeded_copy: Path, name: str, data) -> None:
    value = data.draw(_setting_values(name)).replace("\x00", "")
    where = [] if name == "index_dir" else ["--index-dir", str(seeded_copy)]
    with _env(**{f"QA_{name.upper()}": value}):
        rc, out, err = run_cli(*where, "status")
    check_cli(rc, out, err)
    if rc == 1 and "key" in name:
        assert value not in err or len(value) < 4  # a key is never echoed


def test_settings_errors_are_qaerrors() -> None:
    with pytest.raises(QAError):
        Assistant(top_k="many")
