"""Under load: 20 chat sessions, then 20 API clients, at once against one `qa serve` all get correct, cited answers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks.load import conversation, run_load, serving, warm_up

SESSIONS = 20


@pytest.mark.slow
def test_concurrent_sessions_all_get_correct_cited_answers(seeded_index: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    index = tmp_path / "served-index"
    shutil.copytree(seeded_index, index)
    with serving(index, tmp_path / "serve.log") as url:
        first = warm_up(url)  # what a visitor's page load does: load the models
        report = run_load(url, sessions=SESSIONS, timeout=240)
        api = run_load(url, sessions=SESSIONS, timeout=240, via="api")
    with capsys.disabled():  # the figures belong in the output; speed is judged in benchmarks/README.md
        print(f"\nload: first answer {first:.1f} s; UI: {report.summary()}")
        print(f"load: API (/v1/ask): {api.summary()}")
    for r in (report, api):
        assert r.errors == [], r.error_lines()
        assert r.answered == r.planned == sum(len(conversation(i)) for i in range(SESSIONS))
