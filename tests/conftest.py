"""Shared fixtures: every test gets its own index folder; a seeded index is built once per session."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
SEED_FILE = next(SEEDS.glob("*.txt"))
DATA = Path(os.environ.get("QA_DATA_DIR", ROOT.parent / "shared" / "data"))
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by `make browser`; Playwright drives it
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# The public evaluation sets sit beside the checkout (../shared/data); CI always has them, so
# there a missing folder fails the data tests instead of skipping them.
needs_data = pytest.mark.skipif(not (DATA / "squad-dev").exists() and not os.environ.get("CI"),
                                reason=f"no evaluation data at {DATA} (set QA_DATA_DIR)")

# The key of the test model server: distinctive, so that tests can search every output for it.
API_KEY = f"sk-qa-test-{secrets.token_hex(8)}"
LLM_THREADS = os.environ.get("QA_TEST_LLM_THREADS", "1")  # the machine is shared; one thread is steadier

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test touches the user's ./index: QA_INDEX_DIR points into the test's tmp folder."""
    index = tmp_path / "index"
    monkeypatch.setenv("QA_INDEX_DIR", str(index))
    for var in ("QA_CHROMA_URL", "QA_LLM", "OPENAI_API_KEY", "OPENAI_BASE_URL", "QA_OPENAI_API_KEY",
                "QA_OPENAI_BASE_URL", "QA_OPENAI_MODEL", "QA_LLM_TIMEOUT", "QA_AUTH"):
        monkeypatch.delenv(var, raising=False)
    return index


@pytest.fixture(scope="session")
def seeded_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of seeds/ built once with the real model and real Chroma; copy it before writing."""
    from qa import Assistant

    index = tmp_path_factory.mktemp("seeded") / "index"
    Assistant(index_dir=index).ingest(SEEDS)
    return index


@pytest.fixture()
def seeded(seeded_index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An Assistant over a private copy of the seeded index."""
    from qa import Assistant

    index = tmp_path / "seeded-index"
    shutil.copytree(seeded_index, index)
    monkeypatch.setenv("QA_INDEX_DIR", str(index))
    return Assistant(index_dir=index)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m qa.llm_server` with the bundled GGUF and API_KEY; yields its /v1 URL; killed at the end."""
    port = free_port()
    log = tmp_path_factory.mktemp("llm-server") / "server.log"
    cmd = [sys.executable, "-m", "qa.llm_server", "--model_alias", "smollm2", "--host", "127.0.0.1",
           "--port", str(port), "--n_threads", LLM_THREADS, "--n_ctx", "2048", "--api_key", API_KEY]
    with running_server(cmd, log, f"http://127.0.0.1:{port}/v1", API_KEY, "qa.llm_server", 180) as url:
        yield url


def start_serve(index: Path, log: Path, *extra: str, env: dict[str, str] | None = None,
                wait: float = 120, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """`qa serve` over `index` on a free loopback port (or `port`): (process, base URL without the last /),
    once the chat UI has taken over `/` from the starting page (qa/serving/ui_mount.py)."""
    port = port or free_port()
    proc = subprocess.Popen([sys.executable, "-m", "qa", "serve", "--port", str(port), *extra], cwd=ROOT,
                            env={**os.environ, "QA_INDEX_DIR": str(index), "HF_HUB_OFFLINE": "1",
                                 "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})},
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"qa serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/", timeout=2) as r:
                if r.status == 200 and not r.headers.get("x-qa-starting"):
                    return proc, url
        except OSError:
            pass
        time.sleep(0.2)
    stop_serve(proc)
    pytest.fail(f"qa serve did not bring up its UI within {wait:.0f} s:\n{log.read_text()}")


def stop_serve(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def server(seeded_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`qa serve` over a private copy of the seeded index, no login: (url ending in /, index folder)."""
    index = tmp_path_factory.mktemp("ui") / "index"
    shutil.copytree(seeded_index, index)
    proc, url = start_serve(index, index.parent / "serve.log")
    yield url + "/", index
    stop_serve(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium, one per test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@contextmanager
def running_server(cmd: list[str], log: Path, url: str, key: str, name: str, wait: float,
                   env: dict[str, str] | None = None) -> Iterator[str]:
    """Start an OpenAI-compatible server process, wait until `url`/models lists a model, stop it at the end."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + wait
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                req = urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {key}"})
                with urllib.request.urlopen(req, timeout=2) as r:
                    if json.load(r)["data"]:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not answer /models:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def local_model():
    """One in-process SmolLM2 shared by the local-backend tests (loading it per test is slow)."""
    from qa.llm import LocalModel

    return LocalModel(None, threads=int(LLM_THREADS))


@pytest.fixture()
def say(capsys: pytest.CaptureFixture[str]):
    """Print a figure to the terminal even under `pytest -q` (crash, load and big-file tests report theirs)."""
    def _say(line: str) -> None:
        with capsys.disabled():
            print(line, flush=True)
    return _say


# Hypothesis: "ci" (the default, bounded so `make test` stays fast, the same examples every run) and
# "long" (QA_HYPOTHESIS_PROFILE=long: many more, new ones each run). The autouse index fixture is
# per test, not per example; the property tests keep their state in module fixtures.
try:
    from hypothesis import HealthCheck
    from hypothesis import settings as _hypothesis

    _quiet = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
    _hypothesis.register_profile("ci", max_examples=25, deadline=None, derandomize=True,
                                 suppress_health_check=_quiet, print_blob=True)
    _hypothesis.register_profile("long", max_examples=500, deadline=None, suppress_health_check=_quiet,
                                 print_blob=True)
    _hypothesis.load_profile(os.environ.get("QA_HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # the test extra brings it; without it only the property tests fail to import
    pass
