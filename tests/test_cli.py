"""The `qa` command as a user runs it: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, SEED_FILE


def qa(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qa", *args], capture_output=True, text=True, cwd=cwd,
                          env=os.environ.copy(), timeout=600)


def _one_line_error(r: subprocess.CompletedProcess[str], *words: str) -> None:
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0]


def test_ingest_ask_status_and_reingest(tmp_path: Path) -> None:
    r = qa("ingest", "seeds/")
    assert r.returncode == 0, r.stderr
    assert "1 added" in r.stdout and "0 failed" in r.stdout

    r = qa("ask", "--json", "Where will Putin travel after North Korea?")
    assert r.returncode == 0, r.stderr
    assert "DEBUG" not in r.stderr and "INFO" not in r.stderr  # the first question builds BM25: no library logs
    out = json.loads(r.stdout)
    assert set(out) == {"question", "answer", "answered", "citations", "verified_sentences", "total_sentences"}
    assert out["answered"] and "Vietnam" in out["answer"]
    cite = out["citations"][0]
    # answer_span (the answer words), page and boxes (PDFs, images) appear only when known.
    assert {"id", "source", "start", "end", "text", "score", "verified"} <= set(cite) and cite["verified"]
    assert set(cite) <= {"id", "source", "start", "end", "text", "score", "verified", "answer_span", "page", "boxes"}
    assert Path(cite["source"]).read_text(encoding="utf-8")[cite["start"]:cite["end"]] == cite["text"]

    r = qa("ask", "Who won the 2018 FIFA World Cup?")
    assert r.returncode == 0 and "Not found in the documents" in r.stdout

    r = qa("ask", "Who denied the arms transfers?")
    assert "[1]" in r.stdout and "Sources:" in r.stdout and SEED_FILE.name in r.stdout

    r = qa("status")
    assert r.returncode == 0
    assert "documents:   1" in r.stdout and "all-MiniLM-L6-v2" in r.stdout and "extractive" in r.stdout

    r = qa("ingest", "seeds/")
    assert "0 added, 0 updated, 1 unchanged" in r.stdout and "0 chunks embedded" in r.stdout


def test_errors_are_one_line_with_the_fix(tmp_path: Path) -> None:
    _one_line_error(qa("ask", "anything"), "No index", "qa ingest")
    _one_line_error(qa("status"), "No index")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(qa("ingest", str(empty)), "Nothing could be indexed")
    _one_line_error(qa("ingest", str(tmp_path / "missing")), "Nothing could be indexed")
    env_bad = qa("--index-dir", str(SEED_FILE), "ingest", "seeds/")
    _one_line_error(env_bad, "is a file")


def test_bad_file_is_reported_and_good_ones_indexed(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.txt").write_text("The glacier Hvit retreated four kilometres since 1900.")
    (docs / "bad.pdf").write_bytes(b"%PDF-1.4 truncated")
    (docs / "secret.txt").write_text("you cannot read me")
    (docs / "secret.txt").chmod(0)
    r = qa("ingest", str(docs))
    assert r.returncode == 0
    # root reads files without read permission; everyone else gets a failure for secret.txt
    expected = "2 added" if os.geteuid() == 0 else "1 added"
    assert expected in r.stdout and "Traceback" not in r.stderr
    assert any(line.startswith("failed:") and "bad.pdf" in line for line in r.stderr.splitlines())
    assert qa("ingest", "--strict", str(docs)).returncode == 1


def test_version_prints_the_version_and_nothing_else() -> None:
    from importlib.metadata import version

    r = qa("--version")
    assert (r.returncode, r.stdout, r.stderr) == (0, f"qa {version('qa')}\n", "")


def test_help_is_fast_to_import() -> None:
    r = qa("--help")
    assert r.returncode == 0 and "ingest" in r.stdout and "serve" in r.stdout


def test_serve_watches_several_paths_as_the_readme_writes_it() -> None:
    """`qa serve --watch PATH ...` refused a second path ("unrecognized arguments")."""
    from qa.cli import _parser

    assert _parser().parse_args(["serve", "--watch", "a", "b", "--watch", "c"]).watch == ["a", "b", "c"]
    assert _parser().parse_args(["serve"]).watch is None


def test_status_check_of_no_index_says_to_ingest_not_to_rebuild(tmp_path: Path, monkeypatch) -> None:
    """`qa status --check` called a missing index damaged and advised `qa ingest --rebuild`."""
    monkeypatch.setenv("QA_INDEX_DIR", str(tmp_path / "none"))
    r = qa("status", "--check")
    _one_line_error(r, "No index at", "qa ingest seeds/")
    assert "damaged" not in r.stderr and "--rebuild" not in r.stderr
