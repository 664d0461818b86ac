"""A messy real-world folder: every good file indexed, every bad one named with its reason, nothing partial."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qa import Assistant

from .conftest import ROOT, SEED_FILE

pytestmark = pytest.mark.slow

BIG_FACT = "The archive vault Quillmoor-7 stores exactly 4,812 reels of silent film."
LINE_FACT = "The ferry Brimsvik crosses the Skagerrak fjord in ninety-three minutes."
GOOD = {  # name -> (bytes, a question, a word its answer must contain)
    "notes with spaces.txt": ("The lighthouse at Kvitsøy was first lit in 1829.".encode(),
                              "When was the lighthouse at Kvitsøy first lit?", "1829"),
    "Zürich café 東京.md": ("# Café\n\nThe Café Odeon in Zürich opened in 1911.".encode(),
                           "When did the Café Odeon in Zürich open?", "1911"),
    "latin1.txt": ("Le château de Brézolles fut bâti en 1472 par Jehan Morvan.".encode("latin-1"),
                   "Who built the château de Brézolles?", "Morvan"),
    "utf16.txt": ("The Qanat of Gonabad is 2,700 years old and 33 km long.".encode("utf-16"),
                  "How long is the Qanat of Gonabad?", "33 km"),
}
BAD = {  # name -> what its failure line must say
    "empty.txt": "empty file",
    "zero.pdf": "empty file",
    "truncated.pdf": "cannot parse .pdf",
    "binary.txt": "looks binary",
    "secret.txt": "permission denied",  # as a user that may not read it
    "loop": "symlink loop",
    "a-link.txt": "symlink loop",
}


def _messy_folder(docs: Path) -> None:
    docs.mkdir()
    for name, (data, _, _) in GOOD.items():
        (docs / name).write_bytes(data)
    # 50 MB of prose with a fact found only at its very end, and one 5 MB line (no newline at all)
    # with a fact in its middle. The prose repeats, so its ~70,000 chunks embed as a few (ingest
    # remembers the vectors of repeated chunk texts); reading, splitting, writing and committing
    # run exactly as for unique text, whose embedding alone would take ~30 min on 2 cores.
    paragraph = " ".join(SEED_FILE.read_text(encoding="utf-8").split()[:150])
    with open(docs / "big.txt", "w", encoding="utf-8") as f:
        while f.tell() < 50_000_000:
            f.write(paragraph + "\n\n")
        f.write(BIG_FACT + "\n")
    half = " ".join([paragraph] * (2_500_000 // len(paragraph)))
    (docs / "one-line.txt").write_text(f"{half} {LINE_FACT} {half}", encoding="utf-8")

    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(docs / "whole.pdf"))
    c.drawString(72, 720, "The Norrfjord tunnel is 7.2 kilometres long.")
    c.save()
    pdf = (docs / "whole.pdf").read_bytes()
    (docs / "whole.pdf").unlink()
    (docs / "truncated.pdf").write_bytes(pdf[: len(pdf) // 2])
    (docs / "zero.pdf").write_bytes(b"")
    (docs / "empty.txt").write_bytes(b"")
    (docs / "binary.txt").write_bytes(bytes(range(256)) * 64)
    (docs / "secret.txt").write_text("The password is swordfish.")
    (docs / "secret.txt").chmod(0)
    os.symlink(".", docs / "loop")
    os.symlink("b-link.txt", docs / "a-link.txt")
    os.symlink("a-link.txt", docs / "b-link.txt")


def _as_user() -> list[str]:
    """Root reads files without read permission (CAP_DAC_OVERRIDE), so as root the ingest runs without
    that capability: still root, so it reads the checkout wherever it is (a 0700 temp folder too)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("running as root needs setpriv (util-linux) to test an unreadable file")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


def _peak_rss(proc: subprocess.Popen[str], peak: list[int]) -> None:
    while proc.poll() is None:
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]) * 1024)
        except OSError:
            pass
        time.sleep(0.2)


def _ingest(docs: Path, index: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], int]:
    env = {**os.environ, "QA_INDEX_DIR": str(index), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([*_as_user(), sys.executable, "-m", "qa", "ingest", "--quiet", *extra, str(docs)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    watcher = threading.Thread(target=_peak_rss, args=(proc, peak), daemon=True)
    watcher.start()
    out, err = proc.communicate(timeout=1800)
    watcher.join()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), peak[0]


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, subprocess.CompletedProcess[str], int]]:
    root = tmp_path_factory.mktemp("messy")
    docs, index = root / "docs", root / "index"
    _messy_folder(docs)
    started = time.perf_counter()
    result, peak = _ingest(docs, index)
    yield docs, index, result, peak, time.perf_counter() - started
    (docs / "secret.txt").chmod(0o600)
    shutil.rmtree(root, ignore_errors=True)


def test_every_good_file_indexed_every_bad_one_reported(messy, say) -> None:
    docs, index, r, peak, seconds = messy
    say(f"\nmessy folder (50 MB file, 5 MB line, 7 bad files): ingested in {seconds:.0f} s, "
        f"peak RSS {peak / 1e6:.0f} MB")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    failures = {Path(line.split(": ", 2)[1]).name: line for line in r.stderr.splitlines()
                if line.startswith("failed: ")}
    for name, reason in BAD.items():
        assert name in failures and reason in failures[name], (name, r.stderr)
    assert f"{len(GOOD) + 2} added" in r.stdout, r.stdout
    assert all(len(line) < 300 for line in r.stderr.splitlines())


def test_nothing_partial_and_offsets_exact(messy, say) -> None:
    docs, index, *_ = messy
    store = Assistant(index_dir=index).store()
    records = store.records()
    assert sorted(Path(s).name for s in records) == sorted([*GOOD, "big.txt", "one-line.txt"])
    by_source: dict[str, list[tuple[int, int, int, str]]] = {}
    for _, text, m in store.all_chunks():
        by_source.setdefault(m["source"], []).append((m["index"], m["start"], m["end"], text))
    assert set(by_source) == set(records)  # no chunk of a failed file, none without its record
    for source, rows in by_source.items():
        assert sorted(i for i, *_ in rows) == list(range(records[source].chunks))
        text = store.document(source)[0]
        assert all(text[a:b] == t for _, a, b, t in rows), source
    big = records[str(docs / "big.txt")]
    say(f"big.txt: {big.chunks} chunks; one-line.txt: {records[str(docs / 'one-line.txt')].chunks} chunks")


def test_questions_reach_every_good_file(messy) -> None:
    docs, index, *_ = messy
    a = Assistant(index_dir=index)
    cases = [(q, word, name) for name, (_, q, word) in GOOD.items()]
    cases += [("How many reels of silent film does the vault Quillmoor-7 store?", "4,812", "big.txt"),
              ("How long does the ferry Brimsvik take to cross the Skagerrak?", "ninety-three", "one-line.txt")]
    for question, word, name in cases:
        ans = a.ask(question)
        assert ans.answered and word in ans.answer, (question, ans.answer)
        assert any(Path(c.source).name == name for c in ans.citations), (question, ans.citations)


def test_memory_stays_bounded_and_strict_fails(messy, say, tmp_path: Path) -> None:
    docs, index, _, peak, _ = messy
    (tmp_path / "docs").mkdir()
    for name, (data, _, _) in GOOD.items():
        (tmp_path / "docs" / name).write_bytes(data)
    r, baseline = _ingest(tmp_path / "docs", tmp_path / "small-index")
    assert r.returncode == 0, r.stderr
    say(f"peak RSS: 4 small files {baseline / 1e6:.0f} MB, messy folder with 50 MB + 5 MB files "
          f"{peak / 1e6:.0f} MB (+{(peak - baseline) / 1e6:.0f} MB)")
    # Streaming holds one window of chunks at a time. What grows is the extracted text (its curly quotes
    # make the 50 MB file a 99 MB str), Chroma's index of ~69k chunks (~105 MB) and the write of the text
    # record (~50 MB): +306 to +346 MB in 9 runs (2 cores, load 1.2-6). It was +406 to +734 MB (CI) while
    # Chroma read the text's pieces back at every write (store.PIECE_SYNC), nltk imported scikit-learn,
    # SciPy and pandas with the first long text (chunks now end at qa's own sentences) and 15 glibc heaps kept
    # what threads had freed (ingest.bound_heaps). Writing the text as one Chroma record had cost
    # +1,005 MB; splitting the whole file at once, GBs.
    assert peak - baseline < 450e6
    again, _ = _ingest(docs, index, "--strict")
    assert again.returncode == 1 and f"{len(GOOD) + 2} unchanged" in again.stdout
