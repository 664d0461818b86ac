"""The document library on a real Chroma with the real model: list, remove, scoped questions."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from qa import Assistant, IndexBusyError, QAError
from qa.library import select
from qa.store import ABOUT, record

from .conftest import SEED_FILE

OWLS = "Snowy owls hunt lemmings on the open tundra during the long Arctic summer days."
FERRY = "The night ferry Nordlys sails from Tromsø to Svalbard every Tuesday at nine."


def _folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(SEED_FILE, docs / "putin.txt")
    (docs / "owls.md").write_text(f"# Arctic birds\n\n{OWLS}\n")
    (docs / "ferry.txt").write_text(FERRY + "\n")
    return docs


def test_documents_lists_every_document_with_its_record(tmp_path: Path) -> None:
    docs = _folder(tmp_path)
    a = Assistant()
    a.ingest(docs)
    listed = {Path(d.source).name: d for d in a.documents()}
    assert list(listed) == ["ferry.txt", "owls.md", "putin.txt"]  # sorted by source
    owls = listed["owls.md"]
    assert owls.source == str(docs / "owls.md")
    assert owls.title == "Arctic birds" and owls.type == "md" and owls.pages is None
    assert owls.bytes == (docs / "owls.md").stat().st_size
    assert owls.digest == hashlib.sha256((docs / "owls.md").read_bytes()).hexdigest()
    assert owls.added and owls.added == owls.updated and owls.added.endswith("Z")
    assert listed["putin.txt"].chunks > 1 and sum(d.chunks for d in listed.values()) == a.status().chunks
    assert set(owls.to_dict()) == {"source", "title", "type", "pages", "chunks", "bytes", "added", "updated",
                                   "digest", "name"}

    # An edit keeps "added" and moves "updated"; the size and digest follow the file.
    store = a.store()
    meta = store.files.get(ids=[owls.source], include=["metadatas"])["metadatas"][0]
    about = json.loads(meta[ABOUT])  # the fields only shown, packed in one string (Store.commit)
    about.update(added=about["added"] - 3600, updated=about["updated"] - 3600)
    store.files.update(ids=[owls.source], metadatas=[{**meta, ABOUT: json.dumps(about)}])
    (docs / "owls.md").write_text(f"# Arctic birds\n\n{OWLS} Barn owls hunt mice.\n")
    a.ingest(docs)
    again = {Path(d.source).name: d for d in a.documents()}["owls.md"]
    assert again.added < again.updated and again.added[:13] < owls.added[:13] <= again.updated
    assert again.bytes == (docs / "owls.md").stat().st_size and again.digest != owls.digest


def test_pdf_pages_and_records_of_older_indexes(tmp_path: Path) -> None:
    from reportlab.pdfgen import canvas

    docs = tmp_path / "docs"
    docs.mkdir()
    c = canvas.Canvas(str(docs / "report.pdf"))
    for page in ("The lighthouse at Hvit stands on the northern cape.", "Its lamp was electrified in 1921."):
        c.drawString(72, 720, page)
        c.showPage()
    c.save()
    a = Assistant()
    a.ingest(docs)
    (pdf,) = a.documents()
    assert (pdf.type, pdf.pages, pdf.title) == ("pdf", 2, "The lighthouse at Hvit stands on the northern cape.")

    # A record written before the catalogue kept titles, sizes and times still lists, with defaults.
    store = a.store()
    meta = record(store.files.get(ids=[pdf.source], include=["metadatas"])["metadatas"][0])
    store.files.delete(ids=[pdf.source])
    store.files.add(ids=[pdf.source], documents=[""], embeddings=[[0.0]],
                    metadatas=[{k: meta[k] for k in ("digest", "chunks", "pages")}])
    (legacy,) = Assistant().documents()
    assert legacy.source == pdf.source and legacy.chunks == pdf.chunks and legacy.pages == 2
    assert (legacy.title, legacy.type, legacy.bytes, legacy.added) == ("report.pdf", "pdf", None, None)
    # One written before those fields were packed into one string: each its own key.
    store.files.update(ids=[pdf.source], metadatas=[meta])
    (flat,) = Assistant().documents()
    assert flat == pdf and Assistant().document_text(pdf.source).startswith("The lighthouse at Hvit")


def test_remove_takes_a_document_out_of_both_retrieval_sides(tmp_path: Path) -> None:
    docs = _folder(tmp_path)
    a = Assistant()
    a.ingest(docs)
    question = "When does the night ferry Nordlys sail to Svalbard?"
    ans = a.ask(question)
    assert ans.answered and "Tuesday" in ans.answer
    bm25 = Assistant(retrieval="bm25")
    assert any(p.source.endswith("ferry.txt") for p in bm25.retriever().retrieve(question, 5))

    report = a.remove(str(docs / "ferry.txt"))
    assert report.removed == (str(docs / "ferry.txt"),) and report.chunks == 1
    assert (docs / "ferry.txt").exists()  # the user's own file is never deleted
    for ask in (a, bm25, Assistant(retrieval="dense")):  # the same objects: their caches must follow
        ans = ask.ask(question)
        assert not any(c.source.endswith("ferry.txt") for c in ans.citations)
        assert not any(p.source.endswith("ferry.txt") for p in ans.related)
        assert "Tuesday" not in ans.answer
    store = a.store()
    assert not store.chunks.get(where={"source": str(docs / "ferry.txt")})["ids"]
    assert not store.texts.get(where={"source": str(docs / "ferry.txt")})["ids"]
    assert [Path(d.source).name for d in a.documents()] == ["owls.md", "putin.txt"]
    with pytest.raises(QAError, match="not in the index"):
        a.document_text(str(docs / "ferry.txt"))
    # It comes back with the next ingest of its folder, as a new document.
    assert a.ingest(docs).count("added") == 1


def test_remove_by_glob_folder_and_name_and_nothing_on_a_miss(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    docs = _folder(tmp_path)
    (docs / "sub").mkdir()
    (docs / "sub" / "bats.md").write_text("Bats navigate by echolocation at night.")
    a = Assistant()
    a.ingest(docs)
    before = a.documents()
    with pytest.raises(QAError, match=r"No indexed document matches \*\.pdf; nothing was removed"):
        a.remove("*.txt", "*.pdf")  # one pattern misses: nothing at all is removed
    assert a.documents() == before

    assert a.remove("*.md").removed == (str(docs / "owls.md"), str(docs / "sub" / "bats.md"))
    monkeypatch.chdir(docs)
    assert a.remove("ferry.txt").removed == (str(docs / "ferry.txt"),)  # relative to the current folder
    a.ingest(docs)
    assert a.remove(str(docs / "sub")).removed == (str(docs / "sub" / "bats.md"),)  # a folder
    assert [Path(d.source).name for d in a.documents()] == ["ferry.txt", "owls.md", "putin.txt"]


def test_remove_deletes_the_uploaded_copy_and_waits_for_no_writer(tmp_path: Path) -> None:
    from filelock import FileLock

    a = Assistant()
    uploads = Path(a.settings.index_dir).absolute() / "uploads"
    uploads.mkdir(parents=True)
    (uploads / "ferry.txt").write_text(FERRY)
    a.ingest(uploads / "ferry.txt")
    with FileLock(str(Path(a.settings.index_dir) / ".ingest.lock")):  # an ingest is running
        with pytest.raises(IndexBusyError, match="wait for it to finish"):
            a.remove("ferry.txt")
    assert (uploads / "ferry.txt").exists() and len(a.documents()) == 1
    report = a.remove("ferry.txt")
    assert report.uploads_deleted == (str(uploads / "ferry.txt"),) and not (uploads / "ferry.txt").exists()
    assert a.documents() == ()


def test_select_names_exact_sources_before_globbing() -> None:
    sources = ["/d/notes[1].txt", "/d/notes1.txt", "/d/a.pdf", "/e/a.pdf"]
    assert select(["/d/notes[1].txt"], sources) == (["/d/notes[1].txt"], [])
    assert select(["notes[0-9].txt"], sources) == (["/d/notes1.txt"], [])
    assert select(["a.pdf", "/x"], sources) == (["/d/a.pdf", "/e/a.pdf"], ["/x"])
    assert select(["/d/*.pdf", ""], sources) == (["/d/a.pdf"], [""])


# --- scoped questions --------------------------------------------------------------------------------
def _crowded(tmp_path: Path) -> tuple[Assistant, Path, Path]:
    """More chunks about Putin's travel than either side's 20 candidates, and several about ferries."""
    docs = tmp_path / "docs"
    docs.mkdir()
    putin = docs / "putin.txt"
    putin.write_text("\n\n".join(f"Report {i}: Putin will travel to Vietnam after North Korea, officials said "
                                 f"on day {i}." for i in range(80)))
    ferry = docs / "ferries.txt"
    ferry.write_text("\n\n".join(f"Timetable {i}: the ferry number {i} leaves the harbour at {i} o'clock "
                                 "with cars and cargo." for i in range(24)))
    a = Assistant(chunk_size=64, chunk_overlap=0)
    a.ingest(docs)
    return a, putin, ferry


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_scope_fills_the_top_k_from_inside_it(tmp_path: Path, mode: str) -> None:
    a, putin, ferry = _crowded(tmp_path)
    a = Assistant(a.settings, retrieval=mode)
    question = "Where will Putin travel after North Korea?"
    wide = a.retriever().retrieve(question, 20)
    # Cutting the unscoped ranking down to the scope would leave nothing: the ferry is not in its top 20.
    assert len(wide) == 20 and {p.source for p in wide} == {str(putin)}
    scoped = a.retriever().retrieve(question, 5, sources=[str(ferry)])
    assert len(scoped) == 5 and {p.source for p in scoped} == {str(ferry)}


def test_scoped_answers_cite_only_the_scope(tmp_path: Path) -> None:
    a, putin, ferry = _crowded(tmp_path)
    ans = a.ask("Where will Putin travel after North Korea?")
    assert ans.answered and "Vietnam" in ans.answer
    scoped = a.ask("Where will Putin travel after North Korea?", sources=["ferries.txt"])
    assert not scoped.answered and "Vietnam" not in scoped.answer  # the best passage is outside: not found
    assert scoped.answer == ("Not found in the document you chose to ask (ferries.txt); the other documents "
                             "were not searched.")  # not "in the documents": the user narrowed it
    assert scoped.related and {p.source for p in scoped.related} == {str(ferry)}
    ans = a.ask("When does ferry number 3 leave the harbour?", sources=["*ferr*"])
    assert ans.answered and ans.citations and {c.source for c in ans.citations} == {str(ferry)}
    both = a.ask("Where will Putin travel after North Korea?", sources=["*.pdf", str(putin)])
    assert both.answered and {c.source for c in both.citations} == {str(putin)}


def test_a_scope_that_matches_nothing_says_so(seeded: Assistant) -> None:
    ans = seeded.ask("Where will Putin travel after North Korea?", sources=["contracts/*.pdf"])
    assert not ans.answered and not ans.citations and not ans.related
    assert "No indexed document matches contracts/*.pdf" in ans.answer and "qa docs" in ans.answer
    assert json.loads(json.dumps(ans.to_dict()))["answered"] is False


def test_a_name_typed_in_one_unicode_form_names_a_file_saved_in_the_other() -> None:
    nfd = "/docs/Protokoll_Sitzung_Ma\u0308rz.md"  # as macOS writes names
    assert select(["Protokoll_Sitzung_M\u00e4rz.md"], [nfd, "/docs/other.md"]) == ([nfd], [])
    assert select(["/docs/*M\u00e4rz.md"], [nfd]) == ([nfd], [])
