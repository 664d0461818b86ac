"""Hybrid retrieval: Chroma dense search and BM25 over the same chunks, fused by LlamaIndex."""

from __future__ import annotations

import copy
import json
import shutil
import threading
import time
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from .answering import CJK_CHARS
from .embedding import one_thread
from .errors import IndexMissingError
from .store import Store
from .types import Passage

# BM25's words: LlamaIndex's default (two or more word characters), but a Chinese or Japanese character is
# a word of its own. Those scripts write no spaces, so under the default a whole clause was one word and a
# question shared none with the documents: their BM25 side found nothing, and only dense search ran.
TOKENS = rf"(?u)[{CJK_CHARS}]|(?:(?![{CJK_CHARS}])\w){{2,}}"
CANDIDATES_PER_SIDE = 4  # each side returns top_k * this before fusion, and at least MIN_CANDIDATES
# The fused order depends on how deep each side's list is (dist_based_score scales each side by its list's
# spread), and the fusion was tuned with 40-50 candidates a side (benchmarks/README.md). At the default top_k
# of 5 a side gave 20, and the top 5 came out worse: `python -m benchmarks.tune_fusion DIR --depths 20,50`,
# squad-dev recall@1 0.8015 -> 0.8072, a top-5 passage holding the answer 0.960 -> 0.968; scifact-train
# recall@5 0.7834 -> 0.8004, ndcg@10 0.7177 -> 0.7259. It costs about 4 ms a question (10 -> 14 ms).
MIN_CANDIDATES = 50
COMMITTED_TTL = 2.0  # seconds: how stale the list of fully indexed files may get on a miss


@cache
def _bm25_class() -> Any:
    """LlamaIndex's BM25Retriever, taking its top k among the chunks that match the question.

    bm25s picks the top k of every chunk's score with np.argpartition, which is slow when most
    scores tie at 0: up to 20 ms a question at 100k chunks, more than the rest of the search.
    """
    import logging

    import bm25s
    import numpy as np
    from llama_index.core.schema import NodeWithScore
    from llama_index.core.vector_stores.utils import metadata_dict_to_node
    from llama_index.retrievers.bm25 import BM25Retriever

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets itself to DEBUG on import

    class MatchingBM25Retriever(BM25Retriever):
        _scope: tuple[frozenset[str], Any] | None = None  # the last scope's sources and chunk mask

        def _retrieve(self, query_bundle: Any) -> list[Any]:
            k = self.similarity_top_k
            scores = self._scores(query_bundle.query_str)
            hits = np.flatnonzero(scores) if scores is not None else ()
            if len(hits) < k or self.corpus_weight_mask:
                return super()._retrieve(query_bundle)  # bm25s fills up with chunks that do not match
            return self._nodes(hits, scores, k)

        def search_within(self, query: str, k: int, sources: frozenset[str]) -> list[Any]:
            """The top k chunks of these sources: every chunk is scored, then only the scope competes."""
            if self._scope is None or self._scope[0] != sources:
                mask = np.fromiter((c.get("source") in sources for c in self.corpus), bool, len(self.corpus))
                self._scope = (sources, np.flatnonzero(mask))
            inside = self._scope[1]
            scores = self._scores(query)
            if scores is None:
                scores = np.zeros(len(self.corpus), dtype=np.float32)
            return self._nodes(inside, scores, k) if len(inside) else []

        def _scores(self, query: str) -> Any:
            tokens = bm25s.tokenize(query, stemmer=None if self.skip_stemming else self.stemmer,
                                    token_pattern=self.token_pattern, return_ids=False, show_progress=False)[0]
            return self.bm25.get_scores(tokens) if tokens and tokens[0] else None

        def _nodes(self, candidates: Any, scores: Any, k: int) -> list[Any]:
            top = candidates if len(candidates) <= k else candidates[np.argpartition(scores[candidates], -k)[-k:]]
            top = np.sort(top)
            top = top[np.argsort(-scores[top], kind="stable")]  # ties: earlier chunk first
            return [NodeWithScore(node=metadata_dict_to_node(self.corpus[int(i)]), score=float(scores[i]))
                    for i in top]

    return MatchingBM25Retriever


@cache
def _scoped_class() -> Any:
    """A retriever for QueryFusionRetriever: the BM25 side limited to some documents for one question."""
    from llama_index.core.retrievers import BaseRetriever

    class ScopedBM25(BaseRetriever):
        def __init__(self, bm25: Any, k: int, sources: frozenset[str]) -> None:
            super().__init__()
            self.bm25, self.k, self.sources = bm25, k, sources

        def _retrieve(self, query_bundle: Any) -> list[Any]:
            return self.bm25.search_within(query_bundle.query_str, self.k, self.sources)

    return ScopedBM25


def bm25_stamp(store: Store, generation: int) -> dict[str, Any]:
    """What a saved BM25 copy must have been built from to be used: this collection at this generation, and
    these words. The collection's id as well: generations are small counters, so another collection of the
    same name (a Chroma server after the embedded index, a re-created server) repeats them."""
    return {"collection": str(store.chunks.id), "generation": generation, "tokens": TOKENS}


class BM25Side:
    """LlamaIndex's BM25Retriever (bm25s), persisted beside the index and rebuilt when stale."""

    def __init__(self, store: Store, cache_dir: Path) -> None:
        self.store = store
        self.cache_dir = cache_dir
        self._retriever: Any = None
        self._stamp: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, top_k: int, generation: int | None = None) -> Any:
        """The BM25 retriever for the store's current generation (read now unless given)."""
        if generation is None:
            generation = self.store.state()["generation"]
        stamp = bm25_stamp(self.store, generation)
        with self._lock:  # questions run in threads (qa serve): one rebuild, not one per waiting question
            if self._retriever is None or stamp != self._stamp:
                self._retriever = self._load(stamp) or self._build(stamp)
                self._stamp = stamp
            shared = self._retriever
        # A shallow copy per question: its own top k over the shared index, which another
        # question with a different top k would otherwise change under it.
        retriever = copy.copy(shared)
        n = int(retriever.bm25.scores.get("num_docs", 0))
        retriever.similarity_top_k = max(1, min(top_k, n))
        return retriever

    def _load(self, stamp: dict[str, Any]) -> Any:
        try:
            if json.loads((self.cache_dir / "generation.json").read_text()) == stamp:
                retriever = _bm25_class().from_persist_dir(str(self.cache_dir), show_progress=False)
                retriever.token_pattern = TOKENS  # not among what LlamaIndex saves
                # A damaged copy (a truncated or foreign file) is rebuilt from Chroma, the source of truth:
                # it is a copy, so rebuilding it is the repair (`qa status --check` reports it).
                if int(retriever.bm25.scores.get("num_docs", -1)) == len(retriever.corpus) == self.store.count():
                    return retriever
        except Exception:  # noqa: BLE001 - whatever a damaged copy raises, the answer is to rebuild it
            pass
        return None

    def _build(self, stamp: dict[str, Any]) -> Any:
        # The same node objects the Chroma side returns, so fusion recognises a chunk found by both
        # sides (it matches nodes by hash) and adds up its scores.
        nodes = self.store.chunk_nodes()
        if not nodes:
            raise IndexMissingError("The index is empty. Run: qa ingest seeds/")
        retriever = _bm25_class().from_defaults(nodes=nodes, similarity_top_k=1, token_pattern=TOKENS)
        tmp: Path | None = None
        try:
            # A folder of its own: two processes on one index folder (replicas, `qa ask` beside
            # `qa serve`) may rebuild at once, and must not write into each other's copy.
            tmp = self.cache_dir.with_name(f".{self.cache_dir.name}-{uuid.uuid4().hex}")
            tmp.mkdir(parents=True)
            retriever.persist(str(tmp), show_progress=False)
            (tmp / "generation.json").write_text(json.dumps(stamp))
            shutil.rmtree(self.cache_dir, ignore_errors=True)
            tmp.rename(self.cache_dir)
        except OSError:
            pass  # a read-only index still answers; it rebuilds BM25 in memory each start
        finally:
            if tmp is not None and tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return retriever


class Retriever:
    """Top passages for a question by dense, BM25 or fused (hybrid) search."""

    def __init__(self, store: Store, embedder: Any, mode: str, dense_weight: float, cache_dir: Path,
                 fusion: str = "relative_score") -> None:
        from llama_index.core import VectorStoreIndex

        self.store = store
        self.mode = mode
        self.dense_weight = dense_weight
        self.fusion = fusion
        self.index = VectorStoreIndex.from_vector_store(store.vector_store, embed_model=embedder)
        self.bm25 = BM25Side(store, cache_dir)
        self._committed: dict[str, str] = {}  # source -> digest of every fully indexed file
        self._committed_at = -COMMITTED_TTL
        self._committed_generation = -1

    def _is_committed(self, meta: dict[str, Any], generation: int) -> bool:
        """Whether a chunk belongs to a fully indexed file, not one still streaming in or left by a crash."""
        source, digest = meta.get("source", ""), meta.get("digest")
        # On a miss, re-read the catalogue: at once after an ingest finished (the generation moved),
        # at most every COMMITTED_TTL seconds while one is running (files commit as they finish).
        if self._committed.get(source) != digest and (
                generation != self._committed_generation or time.monotonic() - self._committed_at > COMMITTED_TTL):
            self._committed = {s: r.digest for s, r in self.store.records().items()}
            self._committed_at = time.monotonic()
            self._committed_generation = generation
        return self._committed.get(source) == digest

    def retrieve(self, question: str, top_k: int, sources: list[str] | None = None) -> list[Passage]:
        """The best `top_k` passages, best first; with `sources`, only from those documents.

        A scope filters both sides before fusion (a Chroma `where` on the source, and the BM25
        ranking taken among the scope's chunks), so the top k is filled from inside it.
        """
        from llama_index.core.llms import MockLLM
        from llama_index.core.retrievers import QueryFusionRetriever

        wide = max(top_k * CANDIDATES_PER_SIDE, MIN_CANDIDATES)
        generation = self.store.state()["generation"]
        if sources is None:
            dense = self.index.as_retriever(similarity_top_k=wide)
        else:
            from llama_index.core.vector_stores import FilterOperator, MetadataFilter, MetadataFilters

            where = MetadataFilters(filters=[MetadataFilter(key="source", operator=FilterOperator.IN,
                                                            value=list(sources))])
            dense = self.index.as_retriever(similarity_top_k=wide, filters=where)

        def keywords() -> Any:
            bm25 = self.bm25.get(wide, generation)
            return bm25 if sources is None else _scoped_class()(bm25, wide, frozenset(sources))

        with one_thread():  # the question is one short text to embed
            if self.mode == "dense":
                results = dense.retrieve(question)
            elif self.mode == "bm25":
                results = keywords().retrieve(question)
            else:
                fusion = QueryFusionRetriever(
                    [dense, keywords()], llm=MockLLM(), mode=self.fusion, num_queries=1,
                    use_async=False, similarity_top_k=wide,
                    retriever_weights=[self.dense_weight, 1.0 - self.dense_weight],
                )
                results = fusion.retrieve(question)
        # Counted only then: a count costs 15 ms at 100k chunks. An empty scope is no empty index.
        if not results and sources is None and self.store.count() == 0:
            raise IndexMissingError("The index is empty. Run: qa ingest seeds/")
        passages: list[Passage] = []
        seen: set[str] = set()
        for r in results:
            if r.node.node_id in seen:
                continue
            seen.add(r.node.node_id)
            m = r.node.metadata
            if not self._is_committed(m, generation):
                continue
            passages.append(Passage(source=m["source"], start=int(m["start"]), end=int(m["end"]),
                                    text=r.node.get_content(), score=float(r.score or 0.0),
                                    location=m.get("location", "")))
            if len(passages) == top_k:
                break
        return passages
