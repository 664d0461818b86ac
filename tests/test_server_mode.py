"""Chroma server mode: every command works against a real `chroma run` on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qa import Assistant, ConfigError, QAError

from .conftest import ROOT, SEED_FILE, free_port

pytestmark = pytest.mark.slow
SEED_TEXT = SEED_FILE.read_text(encoding="utf-8")


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


def test_server_collection_never_answers_from_an_embedded_index_in_the_same_folder(
        chroma_url: str, tmp_path: Path) -> None:
    # Both count their changes from 1, and both keep their BM25 copy in QA_INDEX_DIR/bm25/<collection>.
    index, question = tmp_path / "index", "Where will Putin travel after North Korea?"
    embedded = Assistant(index_dir=index, collection="same-folder")
    embedded.ingest(SEED_FILE)
    assert "Vietnam" in embedded.ask(question).answer
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ferry.txt").write_text("The night ferry Nordlys sails from Tromsø to Svalbard every Tuesday.")
    served = Assistant(index_dir=index, collection="same-folder", chroma_url=chroma_url, retrieval="bm25")
    served.ingest(docs)
    assert "Tuesday" in served.ask("When does the night ferry Nordlys sail to Svalbard?").answer
    ans = served.ask(question)
    assert not ans.answered and [Path(p.source).name for p in ans.related] == ["ferry.txt"], ans


def test_two_writers_on_different_hosts_cannot_both_write(chroma_url: str, tmp_path: Path) -> None:
    """Writers with their own index folders (as on two hosts) share no file lock; the lease stops the second."""
    docs, other = tmp_path / "docs", tmp_path / "other"
    docs.mkdir()
    other.mkdir()
    paragraph = " ".join(SEED_TEXT.split()[:150])
    # Unique paragraphs, so the first writer is busy embedding for a while.
    (docs / "long.txt").write_text("\n\n".join(f"Entry {i}: {paragraph}" for i in range(300)))
    (other / "note.txt").write_text("The tram line Vestbanen opened on 3 May 1911.")
    env = {"QA_CHROMA_URL": chroma_url, "QA_COLLECTION": "two-writers"}
    first = subprocess.Popen([sys.executable, "-m", "qa", "ingest", "--quiet", str(docs)], cwd=ROOT,
                             env={**os.environ, **env, "QA_INDEX_DIR": str(tmp_path / "host-a")},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reader = Assistant(chroma_url=chroma_url, collection="two-writers", index_dir=tmp_path / "reader")
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None:  # wait until the first writer holds the lease
        try:
            if reader.store().files.get(ids=["\x00writer"])["ids"]:
                break
        except QAError:
            pass
        time.sleep(0.5)
    second = qa("ingest", str(other), env={**env, "QA_INDEX_DIR": str(tmp_path / "host-b")})
    out, err = first.communicate(timeout=1800)
    assert first.returncode == 0, err
    assert second.returncode == 1 and "Another qa ingest (pid" in second.stderr, second.stderr
    assert sum(line.startswith("error:") for line in second.stderr.splitlines()) == 1
    # The first writer's document is whole; the second writer retries and succeeds.
    records = reader.store().records()
    assert [Path(s).name for s in records] == ["long.txt"]
    chunks = reader.store().chunks.get(include=["metadatas"])["metadatas"]
    assert len(chunks) == next(iter(records.values())).chunks
    assert qa("ingest", str(other), env={**env, "QA_INDEX_DIR": str(tmp_path / "host-b")}).returncode == 0
    assert "1911" in reader.ask("When did the tram line Vestbanen open?").answer


def test_unreachable_server_is_one_clear_line() -> None:
    port = free_port()
    r = qa("status", env={"QA_CHROMA_URL": f"http://127.0.0.1:{port}"})
    assert r.returncode == 1 and "Cannot reach the Chroma server" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(ConfigError, match="not a URL"):
        Assistant(chroma_url="localhost:8000").status()


def _serve(index: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    index.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-m", "qa", "serve", "--port", str(port)], cwd=ROOT,
                            env={**os.environ, **env, "QA_INDEX_DIR": str(index), "GRADIO_ANALYTICS_ENABLED": "False"},
                            stdout=(index / "serve.log").open("wb"), stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}/"


def _client(proc: subprocess.Popen[bytes], url: str, log: Path) -> Any:
    from gradio_client import Client

    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if not r.headers.get("x-qa-starting"):  # the chat UI, not the starting page
                    return Client(url, verbose=False)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    pytest.fail(f"qa serve at {url} did not start:\n{log.read_text()}")


def _ask(client: Any, question: str) -> str:
    """Ask through the UI's "/ask" endpoint; the answer as the chat shows it."""
    chat, _sources, _box = client.predict(question, api_name="/ask")
    answer = chat[-1]["content"][0]["text"]
    assert "qa-error" not in answer, answer
    return answer


def test_two_serve_replicas_one_uploads_while_the_other_answers(chroma_url: str, tmp_path: Path, say) -> None:
    from gradio_client import handle_file

    shared = {"QA_CHROMA_URL": chroma_url, "QA_COLLECTION": "serve-replicas"}
    r = qa("ingest", "seeds/", env={**shared, "QA_INDEX_DIR": str(tmp_path / "seeder")})
    assert r.returncode == 0 and "1 added" in r.stdout, r.stderr
    (proc_a, url_a), (proc_b, url_b) = _serve(tmp_path / "a", shared), _serve(tmp_path / "b", shared)
    try:
        a = _client(proc_a, url_a, tmp_path / "a" / "serve.log")
        b = _client(proc_b, url_b, tmp_path / "b" / "serve.log")
        seed_q = "Where will Putin travel after North Korea?"
        new_q = "What is the brass telescope of Hallveig observatory called?"
        assert "Vietnam" in _ask(b, seed_q)
        assert "Not found in the documents" in _ask(b, new_q)  # only the new document can answer it

        doc = tmp_path / "hallveig-observatory.txt"
        doc.write_text("Hallveig observatory\n\nThe Hallveig observatory on Mount Osterkamm keeps its brass "
                       "telescope, called Old Magpie, in the north dome. Visitors may look through it on "
                       "clear Friday nights.\n\n"
                       # Enough text that the ingest takes a few seconds, so B is seen answering inside it.
                       + "\n\n".join(f"Logbook entry {i}: the night of the {i}th was {w} with {i % 7} meteors "
                                       f"and a {w} wind from the {d}."
                                       for i in range(1500) for w, d in [(("clear", "cloudy", "misty")[i % 3],
                                                                          ("north", "south", "west")[i % 3])]))
        # A third client of the server, dense search only, opened before the upload.
        dense = Assistant(chroma_url=chroma_url, collection="serve-replicas", index_dir=tmp_path / "dense",
                          retrieval="dense")
        assert not dense.ask(new_q).answered
        upload = a.submit([handle_file(str(doc))], api_name="/upload")
        answers, during_ingest = 0, 0
        while not upload.done():  # B keeps answering while A ingests
            before = dense.store().state()["dirty"]  # A's ingest is under way
            assert "Vietnam" in _ask(b, seed_q)
            answers += 1
            during_ingest += before and dense.store().state()["dirty"]
        results, status, _files = upload.result()
        assert "added" in results and doc.name in results and "2</b> documents" in status, results
        say(f"\nB answered {answers} times during A's upload, {during_ingest} of them inside A's ingest")
        assert answers >= 2 and during_ingest >= 1, (answers, during_ingest)
        assert (tmp_path / "a" / "uploads" / doc.name).read_text() == doc.read_text()

        # A's write reaches B without a restart: the server's vector search has it, and B's own
        # BM25 copy (which had answered "not found" before) was rebuilt with it.
        assert "Old Magpie" in dense.ask(new_q).answer
        assert "Old Magpie" in _ask(b, new_q)
        assert "Old Magpie" in (tmp_path / "b" / "bm25" / "serve-replicas" / "corpus.jsonl").read_text()
        assert "Old Magpie" in _ask(a, new_q)
        assert "Vietnam" in _ask(a, seed_q)
    finally:
        for proc in (proc_a, proc_b):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
