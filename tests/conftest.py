"""Shared fixtures: every test gets its own index folder; a seeded index is built once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
SEED_FILE = next(SEEDS.glob("*.txt"))
DATA = Path(os.environ.get("QA_DATA_DIR", ROOT.parent / "shared" / "data"))
ARTIFACTS = ROOT / "test-artifacts"
# The public evaluation sets sit beside the checkout (../shared/data); CI always has them, so
# there a missing folder fails the data tests instead of skipping them.
needs_data = pytest.mark.skipif(not (DATA / "squad-dev").exists() and not os.environ.get("CI"),
                                reason=f"no evaluation data at {DATA} (set QA_DATA_DIR)")

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test touches the user's ./index: QA_INDEX_DIR points into the test's tmp folder."""
    index = tmp_path / "index"
    monkeypatch.setenv("QA_INDEX_DIR", str(index))
    for var in ("QA_CHROMA_URL", "QA_LLM", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
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
