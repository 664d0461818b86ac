"""`qa serve` as one app for people and programs: the HTTP API under /v1 against a real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT, SEED_FILE, free_port

KEY = "qa-test-key-4711"
QUESTION = "Where will Putin travel after North Korea?"


def start(index: Path, log: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """`qa serve` on a free loopback port; (process, base URL) once its UI page answers."""
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "qa", "serve", "--port", str(port), *extra], cwd=ROOT,
                            env={**os.environ, "QA_INDEX_DIR": str(index), "HF_HUB_OFFLINE": "1",
                                 "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})},
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"qa serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url + "/", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop(proc)
    pytest.fail(f"qa serve did not answer within 120 s:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def served(seeded_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """`qa serve --api-key KEY` over a private copy of the seeded index: (base URL, its log, the index)."""
    index = tmp_path_factory.mktemp("served") / "index"
    shutil.copytree(seeded_index, index)
    log = index.parent / "serve.log"
    proc, url = start(index, log, "--api-key", KEY)
    yield url, log, index
    stop(proc)


def api(url: str, method: str, path: str, key: str | None = KEY, **kw: Any) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, url + path, headers=headers, timeout=120, **kw)


def document_text(source: str) -> str:
    return Path(source).read_text()


@pytest.mark.slow
def test_ask_returns_what_qa_ask_json_prints(served: tuple[str, Path, Path]) -> None:
    url, _, index = served
    r = api(url, "POST", "/v1/ask", json={"question": QUESTION})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answered"] and "Vietnam" in body["answer"] and body["question"] == QUESTION
    assert set(body) == {"question", "answer", "answered", "citations", "verified_sentences", "total_sentences"}
    for c in body["citations"]:
        assert f"[{c['id']}]" in body["answer"]
        assert document_text(c["source"])[c["start"]:c["end"]] == c["text"]
    cli = subprocess.run([sys.executable, "-m", "qa", "ask", "--json", QUESTION], capture_output=True, text=True,
                         env={**os.environ, "QA_INDEX_DIR": str(index)}, cwd=ROOT, check=True)
    assert json.loads(cli.stdout) == body


@pytest.mark.slow
def test_status_and_documents(served: tuple[str, Path, Path]) -> None:
    url, *_ = served
    s = api(url, "GET", "/v1/status").json()
    assert s["documents"] >= 1 and s["chunks"] > 0 and s["uploads"] == []
    docs = api(url, "GET", "/v1/documents").json()["documents"]
    assert SEED_FILE.name in {d["name"] for d in docs}


@pytest.mark.slow
def test_key_is_required_and_unknown_routes_are_json(served: tuple[str, Path, Path]) -> None:
    url, log, _ = served
    r = api(url, "POST", "/v1/ask", key=None, json={"question": QUESTION})
    assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"
    assert api(url, "GET", "/v1/status", key="wrong").status_code == 401
    r = api(url, "GET", "/v1/nothing-here")
    assert r.status_code == 404 and "message" in r.json()["error"]
    assert KEY not in log.read_text()
    assert api(url, "GET", "/", key=None).status_code == 200  # the UI has its own login (none here)


def test_to_dict_is_the_one_json_of_an_answer() -> None:
    from qa.server import AnswerOut, CitationOut
    from qa.types import Answer, Citation

    ans = Answer("q", "A [1].", True, (Citation(1, "/x.txt", 0, 1, "A", 0.5),))
    d = ans.to_dict()
    assert set(AnswerOut.model_fields) == set(d) and set(CitationOut.model_fields) == set(d["citations"][0])
    assert json.loads(AnswerOut.model_validate(d).model_dump_json()) == d
