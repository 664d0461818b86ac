"""Chroma server mode: every command works against a real `chroma run` on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qa import Assistant, ConfigError

from .conftest import ROOT

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    chroma = Path(sys.executable).parent / "chroma"
    port = free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    proc = subprocess.Popen([str(chroma), "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("chroma run did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def qa(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qa", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **env}, timeout=600)


def test_ingest_ask_status_through_the_server(chroma_url: str, tmp_path: Path) -> None:
    env = {"QA_CHROMA_URL": chroma_url, "QA_COLLECTION": "served-seeds"}
    r = qa("ingest", "seeds/", env=env)
    assert r.returncode == 0 and "1 added" in r.stdout, r.stderr
    r = qa("ask", "--json", "Where will Putin travel after North Korea?", env=env)
    assert r.returncode == 0 and "Vietnam" in r.stdout, r.stderr
    r = qa("status", env=env)
    assert chroma_url in r.stdout and "documents:   1" in r.stdout
    # Nothing was written to the local index folder except the BM25 cache and the lock.
    assert not (Path(os.environ["QA_INDEX_DIR"]) / "chroma.sqlite3").exists()


def test_one_process_ingests_while_another_answers(chroma_url: str, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "seed.txt").write_text((ROOT / "seeds").glob("*.txt").__next__().read_text(encoding="utf-8"))
    reader = Assistant(chroma_url=chroma_url, collection="shared-replicas", index_dir=tmp_path / "reader")
    writer_env = {"QA_CHROMA_URL": chroma_url, "QA_COLLECTION": "shared-replicas",
                  "QA_INDEX_DIR": str(tmp_path / "writer")}
    assert qa("ingest", str(docs), env=writer_env).returncode == 0
    assert "Vietnam" in reader.ask("Where will Putin travel after North Korea?").answer

    (docs / "ferry.txt").write_text("The night ferry Nordlys sails from Tromsø to Svalbard every Tuesday.")
    writer = subprocess.Popen([sys.executable, "-m", "qa", "ingest", str(docs)], cwd=ROOT,
                              env={**os.environ, **writer_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    answers = 0
    while writer.poll() is None:  # the reader keeps answering while the writer works
        assert reader.ask("Where will Putin travel after North Korea?").answered
        answers += 1
    assert writer.returncode == 0 and answers >= 1
    ans = reader.ask("When does the night ferry Nordlys sail to Svalbard?")
    assert ans.answered and "Tuesday" in ans.answer


def test_unreachable_server_is_one_clear_line() -> None:
    port = free_port()
    r = qa("status", env={"QA_CHROMA_URL": f"http://127.0.0.1:{port}"})
    assert r.returncode == 1 and "Cannot reach the Chroma server" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(ConfigError, match="not a URL"):
        Assistant(chroma_url="localhost:8000").status()
