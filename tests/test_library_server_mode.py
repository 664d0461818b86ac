"""The document library against a real `chroma run`: a removal on one replica is seen by another at its next question."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qa import Assistant

from .conftest import SEED_FILE
from .test_server_mode import chroma_url  # noqa: F401 (the module's `chroma run` fixture)

pytestmark = pytest.mark.slow
FERRY = "The night ferry Nordlys sails from Tromsø to Svalbard every Tuesday at nine."
QUESTION = "When does the night ferry Nordlys sail to Svalbard?"


def test_removal_on_one_replica_is_seen_by_another(chroma_url: str, tmp_path: Path) -> None:  # noqa: F811
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(SEED_FILE, docs / "putin.txt")
    (docs / "ferry.txt").write_text(FERRY)
    shared = {"chroma_url": chroma_url, "collection": "library-replicas"}
    a = Assistant(index_dir=tmp_path / "a", **shared)
    b = Assistant(index_dir=tmp_path / "b", **shared)
    b_keywords = Assistant(index_dir=tmp_path / "b2", retrieval="bm25", **shared)
    a.ingest(docs)
    for replica in (b, b_keywords):  # both have answered (and cached BM25, the catalogue) before the removal
        assert "Tuesday" in replica.ask(QUESTION).answer
    assert [Path(d.source).name for d in b.documents()] == ["ferry.txt", "putin.txt"]
    scoped = b.ask("Where will Putin travel after North Korea?", sources=["ferry.txt"])
    assert not scoped.answered and {p.source for p in scoped.related} == {str(docs / "ferry.txt")}

    assert a.remove("ferry.txt").removed == (str(docs / "ferry.txt"),)
    for replica in (b, b_keywords):
        ans = replica.ask(QUESTION)
        assert "Tuesday" not in ans.answer
        assert not any(p.source.endswith("ferry.txt") for p in (*ans.citations, *ans.related))
    assert [Path(d.source).name for d in b.documents()] == ["putin.txt"]
    gone = b.ask(QUESTION, sources=["ferry.txt"])
    assert not gone.answered and "No indexed document matches ferry.txt" in gone.answer
