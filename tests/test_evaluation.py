"""`qa eval` on small slices of the public sets: a retrieval regression fails here."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

from qa.evaluation import format_report, ndcg, percentile
from qa.question import TYPES

from .conftest import DATA, ROOT, needs_data


def make_slice(src: Path, dst: Path, queries: int, distractors: int) -> Path:
    """A BEIR folder with the first `queries` queries, their documents and some other documents."""
    qrels_lines = (src / "qrels/test.tsv").read_text().splitlines()
    qs = [json.loads(x) for x in (src / "queries.jsonl").read_text().splitlines()]
    qrels: dict[str, list[str]] = {}
    for line in qrels_lines[1:]:
        q, d, _ = line.split("\t")
        qrels.setdefault(q, []).append(d)
    qs = [q for q in qs if q["_id"] in qrels][:queries]
    wanted = {d for q in qs for d in qrels[q["_id"]]}
    with gzip.open(src / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        docs = [json.loads(x) for x in f]
    keep = [d for d in docs if d["_id"] in wanted] + [d for d in docs if d["_id"] not in wanted][:distractors]
    (dst / "qrels").mkdir(parents=True)
    (dst / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in keep))
    (dst / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs))
    (dst / "qrels/test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q['_id']}\t{d}\t1\n" for q in qs for d in qrels[q["_id"]]))
    return dst


def run_eval(folder: Path, tmp_path: Path, *extra: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "qa", "eval", str(folder), "--json", *extra],
                       capture_output=True, text=True, cwd=tmp_path, timeout=1800)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


@needs_data
def test_squad_slice(tmp_path: Path) -> None:
    folder = make_slice(DATA / "squad-dev", tmp_path / "squad-slice", queries=50, distractors=300)
    m = run_eval(folder, tmp_path, "--answers")
    assert m["queries"] == 50
    assert m["recall@5"] >= 0.9 and m["ndcg@10"] >= 0.75 and m["answer_in_top5"] >= 0.85
    assert m["answer_accuracy"] >= 0.6 and m["citation_precision"] >= 0.5
    assert 0 < m["latency_ms_p50"] <= m["latency_ms_p95"]
    # Answers by question type: every question in one wh-word group, each group scored.
    assert set(m["by_type"]) <= set(TYPES) and sum(t["questions"] for t in m["by_type"].values()) == 50
    assert all(0 <= t["answer_accuracy"] <= 1 for t in m["by_type"].values())


@needs_data
def test_scifact_slice(tmp_path: Path) -> None:
    folder = make_slice(DATA / "scifact-train", tmp_path / "scifact-slice", queries=50, distractors=400)
    m = run_eval(folder, tmp_path)
    assert m["ndcg@10"] >= 0.6 and m["recall@10"] >= 0.7
    assert "answer_in_top5" not in m  # SciFact has no gold answers


def test_ndcg_and_percentile() -> None:
    assert ndcg(["a", "b"], {"a": 1}, 10) == 1.0
    assert abs(ndcg(["x", "a"], {"a": 1}, 10) - 1 / 1.584962500721156) < 1e-9
    assert ndcg(["x"], {"a": 1}, 10) == 0.0
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0 and percentile([], 95) == 0.0


def test_not_a_beir_folder_is_a_clear_error(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "qa", "eval", str(tmp_path)], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 1 and "is not a BEIR folder" in r.stderr and "Traceback" not in r.stderr


def test_a_malformed_benchmark_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n')
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d0", "text": "fine"}\n{"_id": "d1", "text": \n')
    r = subprocess.run([sys.executable, "-m", "qa", "eval", str(tmp_path)], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"{tmp_path / 'corpus.jsonl'}, line 2:" in r.stderr and "one JSON object per line" in r.stderr
    r = subprocess.run([sys.executable, "-m", "qa", "eval", "--limit", "0", str(tmp_path)], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 2 and "at least 1" in r.stderr


def test_report_has_a_table_by_question_type() -> None:
    report = {"answer_accuracy": 0.9, "by_type": {
        "who": {"questions": 3, "answer_accuracy": 1.0, "citation_precision": 0.75, "answered_rate": 1.0}}}
    text = format_report(report)
    assert "answer_accuracy  0.9" in text and "| who | 3 | 1.0 | 0.75 | 1.0 |" in text
    assert "by_type" not in text
