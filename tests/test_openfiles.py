"""A process at its open-file limit (`ulimit -n`): qa says so, never that the index is damaged, and writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qa import Assistant

from .conftest import ROOT, SEEDS
from .test_integrity import QUESTION, files

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc")

# A program that has most of its files open when it asks: the limit is set before qa is imported (as a shell's
# `ulimit -n` would), the modules a program has imported by then are imported, then files are opened until
# only FREE are left. Chroma then reports "unable to open database file", or panics, or the embedding model
# cannot be imported, depending on where the last file goes.
_AT_THE_LIMIT = f"""
import json, os, resource, sys
soft, hard, free = (int(x) for x in sys.argv[1:4])
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
import chromadb, qa.assistant, qa.cli, qa.cli_chats, qa.integrity, qa.store
held = [open(os.devnull) for _ in range(soft - free - (len(os.listdir("/proc/self/fd")) - 1))]
if sys.argv[4:]:  # the qa command
    sys.argv = ["qa", *sys.argv[4:]]
    qa.cli.run()
try:
    answer = qa.Assistant().ask({QUESTION!r})
    print(json.dumps({{"answered": answer.answered}}))
except BaseException as e:
    print(json.dumps({{"error": type(e).__name__, "message": str(e)}}))
"""


def at_the_limit(index: Path, soft: int, hard: int, free: int, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _AT_THE_LIMIT, str(soft), str(hard), str(free), *command], cwd=ROOT,
                          env={**os.environ, "QA_INDEX_DIR": str(index)}, capture_output=True, text=True, timeout=300)


def _says_the_limit_not_damage(message: str) -> None:
    assert message.startswith("Too many open files: this process is at its open-file limit") and "\n" not in message
    assert "ulimit -n" in message and "The index is not damaged and nothing was changed" in message
    assert "rebuild" not in message and "is damaged" not in message and "status --check" not in message


def untouched(index: Path) -> dict[str, str]:
    """The index's files but Chroma's database, which Chroma's own bookkeeping writes at every open, even to read."""
    got = files(index, skip=("chroma.sqlite3",))
    assert got and (index / "chroma.sqlite3").is_file()
    return got


@pytest.mark.parametrize("free", [0, 2, 8])
def test_an_index_read_at_the_open_file_limit_is_not_called_damaged(seeded: Assistant, free: int) -> None:
    index = Path(seeded.settings.index_dir)
    clean = seeded.ask(QUESTION).to_dict()
    seeded.close()
    before = untouched(index)
    r = at_the_limit(index, 200, 200, free)
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got.get("error") == "TooManyOpenFilesError", r.stdout + r.stderr
    _says_the_limit_not_damage(got["message"])
    assert f"at {index} " in got["message"] and "the hard limit is 200 too" in got["message"]
    assert untouched(index) == before  # not moved aside, not repaired
    assert Assistant(index_dir=index).ask(QUESTION).to_dict() == clean  # with files to spare it answers as before


@pytest.mark.parametrize("free", [0, 2, 8])
def test_the_qa_command_at_the_open_file_limit_says_so_in_one_line(seeded: Assistant, free: int) -> None:
    """It said "read-only" (ingest, none free), "damaged ... Run: qa ingest --rebuild", or panicked."""
    index = Path(seeded.settings.index_dir)
    seeded.close()
    before = untouched(index)
    for command in (["ask", QUESTION], ["status", "--check"], ["ingest", "--quiet", str(SEEDS)]):
        r = at_the_limit(index, 200, 200, free, *command)
        errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
        assert r.returncode == 1 and len(errors) == 1 and "Traceback" not in r.stderr, r.stdout + r.stderr
        _says_the_limit_not_damage(errors[0].removeprefix("error: "))
        assert "is damaged" not in r.stdout and "rebuild" not in r.stdout  # status --check's lines
    assert untouched(index) == before


def test_the_qa_command_raises_its_soft_limit_to_the_hard_one(seeded: Assistant) -> None:
    """As Go programs and the JVM do: a soft limit of 200 with a hard one of 4096 no longer stops it."""
    import resource

    index = Path(seeded.settings.index_dir)
    seeded.close()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 400:
        pytest.skip(f"the hard limit is {hard}: no room above a soft limit of 200")
    hard = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    for command in (["ask", QUESTION], ["status", "--check"], ["ingest", "--quiet", str(SEEDS)]):
        r = at_the_limit(index, 200, hard, 2, *command)
        assert r.returncode == 0 and "error" not in r.stderr, r.stdout + r.stderr
    assert "[1]" in at_the_limit(index, 200, hard, 2, "ask", QUESTION).stdout
