"""`qa eval`: retrieval (and answer) quality on a BEIR-layout folder, scored per document."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .question import TYPES, question_type
from .reading.formats import SourceText

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Benchmark:
    """A BEIR folder: documents, queries with graded relevant documents, optional gold answers."""

    corpus: dict[str, str]
    queries: list[tuple[str, str, list[str]]]  # (id, text, answers)
    qrels: dict[str, dict[str, int]]
    digest: str


def load_benchmark(folder: Path) -> Benchmark:
    """Read corpus.jsonl[.gz], queries.jsonl and qrels/test.tsv; title and text become one document."""
    corpus_path = next((folder / n for n in ("corpus.jsonl.gz", "corpus.jsonl") if (folder / n).exists()), None)
    if corpus_path is None or not (folder / "queries.jsonl").exists() or not (folder / "qrels/test.tsv").exists():
        raise ConfigError(f"{folder} is not a BEIR folder: it needs corpus.jsonl[.gz], queries.jsonl "
                          "and qrels/test.tsv (see ../shared/data/README.md)")
    opener: Any = gzip.open if corpus_path.suffix == ".gz" else open
    corpus: dict[str, str] = {}
    h = hashlib.sha256()
    where = (corpus_path, 0)
    try:
        with opener(corpus_path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                where = (corpus_path, n)
                h.update(line.encode())
                d = json.loads(line)
                title = (d.get("title") or "").strip()
                corpus[d["_id"]] = f"{title}\n\n{d['text']}" if title else d["text"]
        qrels: dict[str, dict[str, int]] = {}
        path = folder / "qrels/test.tsv"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()[1:], 2):
            where = (path, n)
            qid, did, score = line.split("\t")
            if int(score) > 0:
                qrels.setdefault(qid, {})[did] = int(score)
        queries = []
        path = folder / "queries.jsonl"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = (path, n)
            q = json.loads(line)
            if q["_id"] in qrels:
                queries.append((q["_id"], q["text"], list(q.get("answers") or [])))
    except (ValueError, KeyError, TypeError, AttributeError, OSError, EOFError) as e:  # JSON, UTF-8, gzip, fields
        path, n = where
        what = f"no {e} field" if isinstance(e, KeyError) else str(e).splitlines()[0][:200]
        raise ConfigError(f"{path}, line {n}: {what}. A BEIR corpus and queries have one JSON object per line "
                          "with _id and text; qrels/test.tsv is query-id, corpus-id, score (tab-separated).") from None
    return Benchmark(corpus, queries, qrels, h.hexdigest()[:16])


def ndcg(ranked: list[str], rel: dict[str, int], k: int) -> float:
    """nDCG@k with graded relevance (the BEIR/trec_eval definition)."""
    dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sum(r / math.log2(i + 2) for i, r in enumerate(sorted(rel.values(), reverse=True)[:k]))
    return dcg / ideal if ideal else 0.0


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))] if s else 0.0


def _contains(text: str, answers: list[str]) -> bool:
    low = text.lower()
    return any(a.lower() in low for a in answers)


def evaluate(assistant: Any, folder: Path, k: int = 10, limit: int | None = None, answers: bool = False,
             progress: Progress | None = None, cache_root: Path | None = None,
             query_progress: Progress | None = None) -> dict[str, Any]:
    """Index the corpus (cached by corpus and settings), run every query, return the metrics.

    `progress` follows the indexing, and the queries too unless `query_progress` is given."""
    from .assistant import Assistant

    bench = load_benchmark(folder)
    s = assistant.settings
    from .embedding import embedder_id
    from .reading.formats import SPLITTER

    key = hashlib.sha256(json.dumps([bench.digest, embedder_id(s), s.chunk_size, s.chunk_overlap, SPLITTER]).encode())
    cache = (cache_root or Path(".eval-cache")) / f"{folder.name}-{key.hexdigest()[:12]}"
    a = Assistant(s.model_copy(update={"index_dir": cache, "chroma_url": None}))
    started = time.perf_counter()
    texts = [SourceText(path=i, text=t, digest=hashlib.sha256(t.encode()).hexdigest())
             for i, t in bench.corpus.items()]
    a.ingest_texts(texts, progress=progress)
    index_seconds = time.perf_counter() - started

    queries = bench.queries[:limit] if limit else bench.queries
    m: dict[str, list[float]] = {n: [] for n in ("ndcg", "r1", "r5", "rk", "mrr", "ms", "ans5",
                                                 "acc", "cprec", "answered", "ask_s", "vsent", "tsent")}
    has_answers = any(ans for _, _, ans in queries)
    by_type: dict[str, dict[str, list[float]]] = {}
    wide = max(k * 3, 30)
    for n, (qid, text, gold) in enumerate(queries, 1):
        rel = bench.qrels[qid]
        t0 = time.perf_counter()
        passages = a.retriever().retrieve(text, wide)
        m["ms"].append((time.perf_counter() - t0) * 1000)
        ranked: list[str] = []
        for p in passages:  # a document ranks where its best chunk does
            if p.source not in ranked:
                ranked.append(p.source)
        m["ndcg"].append(ndcg(ranked, rel, k))
        for name, cut in (("r1", 1), ("r5", 5), ("rk", k)):
            m[name].append(len(set(ranked[:cut]) & set(rel)) / len(rel))
        m["mrr"].append(next((1 / (i + 1) for i, d in enumerate(ranked[:k]) if d in rel), 0.0))
        if gold:
            m["ans5"].append(float(any(_contains(p.text, gold) for p in passages[:5])))
        if answers:
            t0 = time.perf_counter()
            ans = a.ask(text)
            m["ask_s"].append(time.perf_counter() - t0)
            m["answered"].append(float(ans.answered))
            m["vsent"].append(ans.verified_sentences)
            m["tsent"].append(ans.total_sentences)
            if gold:  # accuracy over the questions that have gold answers
                m["acc"].append(float(ans.answered and _contains(ans.answer, gold)))
            m["cprec"].extend(float((bool(gold) and _contains(c.text, gold)) or c.source in rel)
                              for c in ans.citations)
            t = by_type.setdefault(question_type(text), {"acc": [], "cprec": [], "answered": []})
            if gold:
                t["acc"].append(m["acc"][-1])
            t["answered"].append(m["answered"][-1])
            t["cprec"].extend(m["cprec"][len(m["cprec"]) - len(ans.citations):])
        if query_progress or progress:
            (query_progress or progress)(n, len(queries), qid)

    def mean(xs: list[float]) -> float:
        return round(sum(xs) / len(xs), 4) if xs else 0.0

    report: dict[str, Any] = {
        "dataset": folder.name, "queries": len(queries), "documents": len(bench.corpus),
        "chunks": a.store().count(), "retrieval": s.retrieval,
        f"ndcg@{k}": mean(m["ndcg"]), "recall@1": mean(m["r1"]), "recall@5": mean(m["r5"]),
        f"recall@{k}": mean(m["rk"]), f"mrr@{k}": mean(m["mrr"]),
        "index_seconds": round(index_seconds, 1),
        "latency_ms_p50": round(percentile(m["ms"], 50), 1), "latency_ms_p95": round(percentile(m["ms"], 95), 1),
    }
    if has_answers:
        report["answer_in_top5"] = mean(m["ans5"])
    if answers:
        report.update({
            "answer_accuracy": mean(m["acc"]) if has_answers else None,
            "citation_precision": mean(m["cprec"]), "answered_rate": mean(m["answered"]),
            # share of the sentences the backend wrote that a retrieved passage supports
            "verified_rate": round(sum(m["vsent"]) / max(1, sum(m["tsent"])), 4),
            "seconds_per_question": round(sum(m["ask_s"]) / max(1, len(m["ask_s"])), 3),
            "backend": a.backend,
            "by_type": {q: {"questions": len(t["answered"]), "answer_accuracy": mean(t["acc"]) if has_answers else None,
                            "citation_precision": mean(t["cprec"]), "answered_rate": mean(t["answered"])}
                        for q in TYPES if (t := by_type.get(q))},
        })
    return report


def format_report(report: dict[str, Any]) -> str:
    """A readable two-column table."""
    width = max(len(k) for k in report)
    lines = [f"{k:<{width}}  {v}" for k, v in report.items() if k != "by_type"]
    if report.get("by_type"):  # answers by the question's wh-word
        lines += ["", "| question type | questions | answer_accuracy | citation_precision | answered_rate |",
                  "|---|---|---|---|---|"]
        lines += [f"| {q} | {t['questions']} | {t['answer_accuracy']} | {t['citation_precision']} | "
                  f"{t['answered_rate']} |" for q, t in report["by_type"].items()]
    return "\n".join(lines)
