"""Remote embeddings (QA_EMBED_URL) against a real OpenAI-compatible server: infinity-emb on the bundled model.

infinity-emb pins numpy<2 and transformers<5, which qa's own dependencies exceed, so `make test`
installs it into a folder of its own (`.venv/infinity`, see the Makefile) that only its process
puts on the path.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ROOT, SEEDS, free_port, running_server

INFINITY = Path(os.environ.get("QA_TEST_INFINITY", Path(sys.executable).parent.parent / "infinity"))
KEY = f"sk-embed-test-{secrets.token_hex(6)}"
MODEL = "all-MiniLM-L6-v2"
QUESTION = "Where will Putin travel after North Korea?"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (INFINITY / "infinity_emb").exists() and not os.environ.get("CI"),
                       reason=f"infinity-emb is not installed in {INFINITY} (make test installs it)"),
]


@pytest.fixture(scope="module")
def embed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """infinity-emb serving the bundled model on loopback with an API key; yields its URL."""
    from qa.embedding import resolve_model_path

    port = free_port()
    log = tmp_path_factory.mktemp("infinity") / "server.log"
    env = {**os.environ, "PYTHONPATH": str(INFINITY), "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1",
           "INFINITY_ANONYMOUS_USAGE_STATS": "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "infinity_emb.cli", "v2", "--model-id", str(resolve_model_path(MODEL)),
           "--served-model-name", MODEL, "--engine", "torch", "--device", "cpu", "--host", "127.0.0.1",
           "--port", str(port), "--api-key", KEY, "--batch-size", "32"]
    with running_server(cmd, log, f"http://127.0.0.1:{port}", KEY, "infinity", 600, env) as url:
        yield url


def qa(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qa", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=900)


def one_error_line(r: subprocess.CompletedProcess[str], *words: str) -> str:
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def remote_env(tmp_path: Path, url: str, key: str = KEY) -> dict[str, str]:
    env = {**os.environ, "QA_INDEX_DIR": str(tmp_path / "index"), "QA_EMBED_URL": url, "QA_EMBED_MODEL": MODEL,
           "QA_EMBED_API_KEY": key, "QA_EMBED_BATCH_SIZE": "4", "QA_EMBED_CONCURRENCY": "3"}
    env.pop("OPENAI_API_KEY", None)
    return env


def test_ingest_and_ask_through_the_server(embed_server: str, tmp_path: Path) -> None:
    env = remote_env(tmp_path, embed_server)
    r = qa(env, "ingest", str(SEEDS), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "1 added" in r.stdout and "0 failed" in r.stdout
    r = qa(env, "ask", "--json", QUESTION)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["answered"] and "Vietnam" in out["answer"]
    assert "Vietnam" in out["citations"][0]["text"]
    # The same vectors a local index holds (the server runs the same model), batched 4 per request.
    from qa import Assistant

    remote = Assistant(index_dir=tmp_path / "index", embed_url=embed_server, embed_model=MODEL, embed_api_key=KEY)
    local = Assistant(index_dir=tmp_path / "local", embed_precision="fp32")  # the server runs the fp32 weights
    vecs = remote.embedder.encode([QUESTION, "Moscow and Pyongyang denied the arms transfers."] * 5)
    assert vecs.shape == (10, 384)
    import numpy as np

    assert float((vecs * local.embedder.encode([QUESTION, "Moscow and Pyongyang denied the arms transfers."] * 5))
                 .sum(1).min()) > 0.999
    # Vectors from the server never mix with local ones: one line says what to do.
    env_local = {**os.environ, "QA_INDEX_DIR": str(tmp_path / "index")}
    line = one_error_line(qa(env_local, "ask", QUESTION), "re-ingest", "QA_EMBED_URL=", f"QA_EMBED_MODEL={MODEL}")
    assert KEY not in line
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)


def test_wrong_key_is_one_line(embed_server: str, tmp_path: Path) -> None:
    r = qa(remote_env(tmp_path, embed_server, key="sk-wrong"), "ingest", str(SEEDS), "--quiet")
    line = one_error_line(r, "refused the API key", "QA_EMBED_API_KEY")
    assert "sk-wrong" not in r.stderr + r.stdout and KEY not in line


def test_server_down_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    r = qa(remote_env(tmp_path, url), "ingest", str(SEEDS), "--quiet")
    one_error_line(r, "Cannot reach the embedding server", url, "QA_EMBED_URL")
    r = qa(remote_env(tmp_path, url), "status")  # nothing was committed: the index is empty, not broken
    assert r.returncode == 0, r.stderr


def test_a_busy_server_is_asked_again_for_up_to_a_minute_and_a_failing_one_six_times() -> None:
    """A server answering 429 with a short Retry-After was given up on after 6 tries in about 5 s, where the
    README promises a minute; a 5xx keeps its 6 tries."""
    import httpx
    import openai
    import tenacity

    from qa.remote_embedding import RETRIES, RemoteEmbedding

    emb = RemoteEmbedding(model_name="m", api_base="http://127.0.0.1:9/v1", api_key="k", max_retries=RETRIES)
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/embeddings")

    def failing(kind: type[openai.APIStatusError], status: int, times: int) -> tuple[object, list[int]]:
        calls: list[int] = []

        def call() -> str:
            calls.append(1)
            if len(calls) <= times:
                raise kind("busy", response=httpx.Response(status, request=request), body=None)
            return "ok"

        return emb._create_retry_decorator()(call).retry_with(wait=tenacity.wait_none()), calls

    busy, calls = failing(openai.RateLimitError, 429, 12)
    assert busy() == "ok" and len(calls) == 13  # within the minute, however many times
    broken, calls = failing(openai.InternalServerError, 500, 12)
    with pytest.raises(openai.InternalServerError):
        broken()
    assert len(calls) == RETRIES
