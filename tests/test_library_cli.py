"""`qa docs`, `qa remove`, `qa ask --source` and `qa ingest --watch` as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .conftest import ROOT, SEED_FILE
from .test_cli import _one_line_error, qa

FERRY = "The night ferry Nordlys sails from Tromsø to Svalbard every Tuesday at nine."


def test_docs_remove_and_scoped_ask(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(SEED_FILE, docs / "putin.txt")
    (docs / "ferry.txt").write_text(FERRY)
    assert qa("docs").returncode == 1  # no index yet
    assert qa("ingest", str(docs)).returncode == 0

    r = qa("docs")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["SOURCE", "TYPE", "PAGES", "CHUNKS", "SIZE", "ADDED", "TITLE"]
    assert lines[1].startswith(str(docs / "ferry.txt")) and "The night ferry Nordlys" in lines[1]
    assert lines[-1].startswith("2 documents,")

    r = qa("docs", "--json")
    listed = json.loads(r.stdout)
    assert [Path(d["source"]).name for d in listed] == ["ferry.txt", "putin.txt"]
    assert set(listed[0]) == {"source", "name", "title", "type", "pages", "chunks", "bytes", "added", "updated",
                              "digest"}
    assert listed[0]["bytes"] == (docs / "ferry.txt").stat().st_size and listed[0]["type"] == "txt"

    r = qa("ask", "--json", "--source", "ferry.txt", "Where will Putin travel after North Korea?")
    out = json.loads(r.stdout)
    assert not out["answered"] and "Vietnam" not in out["answer"]
    r = qa("ask", "--json", "--source", "*.pdf", "--source", str(docs / "putin.*"),
           "Where will Putin travel after North Korea?")
    out = json.loads(r.stdout)
    assert out["answered"] and {Path(c["source"]).name for c in out["citations"]} == {"putin.txt"}
    r = qa("ask", "--source", "nothing-like-this", "Where will Putin travel?")
    assert r.returncode == 0 and "No indexed document matches nothing-like-this" in r.stdout

    _one_line_error(qa("remove", "*.txt", "missing.pdf"), "No indexed document matches missing.pdf",
                    "nothing was removed", "qa docs")
    assert len(json.loads(qa("docs", "--json").stdout)) == 2
    r = qa("remove", "ferry.*")
    assert r.returncode == 0 and f"removed: {docs / 'ferry.txt'}" in r.stdout and "removed 1 document" in r.stdout
    r = qa("ask", "--json", "When does the night ferry Nordlys sail to Svalbard?")
    assert not any(c["source"].endswith("ferry.txt") for c in json.loads(r.stdout)["citations"])
    assert [Path(d["source"]).name for d in json.loads(qa("docs", "--json").stdout)] == ["putin.txt"]


def _ctrl_c_as_in_a_terminal() -> None:
    """SIGINT as a terminal delivers it. A test run started in the background by a shell without job control
    (`make test &` in a script) hands its children SIGINT ignored, and Python then leaves it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ingest_watch_follows_the_folder_until_interrupted(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "orca.txt").write_text("Orcas were seen in the Lyngen fjord on the fourteenth of November.")
    proc = subprocess.Popen([sys.executable, "-m", "qa", "ingest", "--watch", str(docs)], cwd=ROOT,
                            env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ctrl_c_as_in_a_terminal)
    try:
        deadline = time.monotonic() + 120
        seen: list[str] = []
        assert proc.stdout is not None
        while not any(line.startswith("added: ") and "orca.txt" in line for line in seen):
            seen.append(proc.stdout.readline())
            assert time.monotonic() < deadline and proc.poll() is None, seen
        (docs / "ferry.txt").write_text(FERRY)
        while not any(line.startswith("added: ") and "ferry.txt" in line for line in seen):
            seen.append(proc.stdout.readline())
            assert time.monotonic() < deadline and proc.poll() is None, seen
        r = qa("ask", "--json", "When does the night ferry Nordlys sail to Svalbard?")
        assert "Tuesday" in json.loads(r.stdout)["answer"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130) and "Traceback" not in err, err


def test_docs_table_columns_line_up_with_wide_characters() -> None:
    """Emoji and CJK letters take two terminal columns: padded by len(), their rows' columns were shifted."""
    from qa.cli import _columns, format_documents
    from qa.types import Document

    docs = [Document(source="/d/plain.txt", type="text", chunks=3, bytes=1200, title="Plain"),
            Document(source="/d/東京 café 📄.md", type="markdown", chunks=12, bytes=52000, title="Tokyo"),
            Document(source="/d/Zürich é.txt", type="text", chunks=1, bytes=90, title="Zurich")]
    lines = format_documents(docs).splitlines()[:4]
    starts = set()
    for line, kind in zip(lines, ["TYPE", "text", "markdown", "text"]):
        starts.add(_columns(line[:line.index(kind, line.index("/d/") + 3 if "/d/" in line else 0)]))
    assert len(starts) == 1, lines
    assert _columns("東京📄") == 6 and _columns("Zürich") == 6 and _columns("e\u0301") == 1
