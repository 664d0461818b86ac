"""The document library over HTTP: `qa serve` lists, removes and scopes like the CLI, and `--watch` follows a folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from .conftest import ROOT, SEED_FILE
from .test_server import api, start, stop

pytestmark = pytest.mark.slow
QUESTION = "Where will Putin travel after North Korea?"
FERRY = "The night ferry Nordlys sails from Tromsø to Svalbard every Tuesday at nine."


def test_documents_remove_and_scoped_ask_over_http(tmp_path: Path) -> None:
    docs, index = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    shutil.copy(SEED_FILE, docs / "putin.txt")
    (docs / "ferry.txt").write_text(FERRY)
    env = {**os.environ, "QA_INDEX_DIR": str(index)}
    subprocess.run([sys.executable, "-m", "qa", "ingest", str(docs)], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    cli = subprocess.run([sys.executable, "-m", "qa", "docs", "--json"], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True)
    proc, url = start(index, tmp_path / "serve.log")
    try:
        assert api(url, "GET", "/v1/documents", key=None).json() == {"documents": json.loads(cli.stdout)}

        scoped = api(url, "POST", "/v1/ask", key=None, json={"question": QUESTION, "sources": ["ferry.txt"]}).json()
        assert not scoped["answered"] and "Vietnam" not in scoped["answer"]
        whole = api(url, "POST", "/v1/ask", key=None, json={"question": QUESTION, "sources": ["*.txt"]}).json()
        assert whole["answered"] and {Path(c["source"]).name for c in whole["citations"]} == {"putin.txt"}
        none = api(url, "POST", "/v1/ask", key=None, json={"question": QUESTION, "sources": ["*.pdf"]}).json()
        assert not none["answered"] and "No indexed document matches *.pdf" in none["answer"]

        r = api(url, "DELETE", "/v1/documents/" + quote(str(docs / "missing.txt"), safe=""), key=None)
        assert r.status_code == 404 and "nothing was removed" in r.json()["error"]["message"]
        r = api(url, "DELETE", "/v1/documents/" + quote(str(docs / "putin.txt"), safe=""), key=None)
        assert r.status_code == 200, r.text
        assert r.json() == {"removed": [str(docs / "putin.txt")], "chunks": json.loads(cli.stdout)[1]["chunks"],
                            "uploads_deleted": []}
        names = [d["name"] for d in api(url, "GET", "/v1/documents", key=None).json()["documents"]]
        assert names == ["ferry.txt"]
        ans = api(url, "POST", "/v1/ask", key=None, json={"question": QUESTION}).json()
        assert not ans["answered"] and not any(c["source"].endswith("putin.txt") for c in ans["citations"])
    finally:
        stop(proc)


def test_serve_watch_keeps_the_index_in_step_with_a_folder(tmp_path: Path) -> None:
    docs, index = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    shutil.copy(SEED_FILE, docs / "putin.txt")
    proc, url = start(index, tmp_path / "serve.log", "--watch", str(docs))
    try:
        def names() -> list[str]:
            r = api(url, "GET", "/v1/documents", key=None)
            return [d["name"] for d in r.json()["documents"]] if r.status_code == 200 else []

        def until(want: list[str]) -> None:
            deadline = time.monotonic() + 120
            while names() != want:
                assert time.monotonic() < deadline, (names(), (tmp_path / "serve.log").read_text()[-2000:])
                time.sleep(0.3)

        until(["putin.txt"])  # the initial ingest of the watched folder
        (docs / "ferry.txt").write_text(FERRY)
        until(["ferry.txt", "putin.txt"])
        ans = api(url, "POST", "/v1/ask", key=None, json={"question": "When does the night ferry Nordlys sail?"})
        assert "Tuesday" in ans.json()["answer"]
        (docs / "putin.txt").unlink()
        until(["ferry.txt"])
        assert not api(url, "POST", "/v1/ask", key=None, json={"question": QUESTION}).json()["answered"]
    finally:
        stop(proc)
