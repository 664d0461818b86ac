"""Chroma storage: a chunk collection (through LlamaIndex's ChromaVectorStore) and a file catalogue.

The catalogue record of a file is the commit point of its ingest: chunks are written first, then
the record; chunks whose (source, digest) no catalogue record vouches for are orphans of an
interrupted run and are deleted by `repair()`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, EmbeddingMismatchError, IndexMissingError
from .reading import Chunk, SourceText, location

STATE_ID = "\x00state"
_META_KEYS = ["source", "digest", "index", "start", "end", "location"]


@dataclass(frozen=True)
class FileRecord:
    """What the catalogue knows of one indexed file."""

    source: str
    digest: str
    chunks: int


def chunk_id(source: str, digest: str, index: int) -> str:
    """Deterministic id: re-adding the same chunk overwrites it instead of duplicating it."""
    return hashlib.sha1(f"{source}\x00{digest}\x00{index}".encode()).hexdigest()


def open_client(index_dir: Path, chroma_url: str | None, create: bool) -> Any:
    """An embedded PersistentClient at index_dir, or an HttpClient for a Chroma server."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if chroma_url:
        from urllib.parse import urlparse

        u = urlparse(chroma_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ConfigError(f"QA_CHROMA_URL={chroma_url!r} is not a URL; use http://host:port")
        try:
            client = chromadb.HttpClient(host=u.hostname, port=u.port or (443 if u.scheme == "https" else 8000),
                                         ssl=u.scheme == "https", settings=chroma_settings)
            client.heartbeat()
        except Exception as e:
            raise ConfigError(
                f"Cannot reach the Chroma server at {chroma_url} ({type(e).__name__}). "
                "Start it with: chroma run --path DIR --port PORT, or unset QA_CHROMA_URL."
            ) from None
        return client
    if not create and not (index_dir / "chroma.sqlite3").exists():
        raise IndexMissingError(f"No index at {index_dir}. Run: qa ingest seeds/")
    prepare_index_dir(index_dir)
    return chromadb.PersistentClient(path=str(index_dir), settings=chroma_settings)


def prepare_index_dir(index_dir: Path) -> None:
    """Create the index folder, or say in one line why it cannot be used."""
    if index_dir.exists() and not index_dir.is_dir():
        raise ConfigError(f"QA_INDEX_DIR={index_dir} is a file, not a folder; point it at a folder.")
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        probe = index_dir / ".write-test"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise ConfigError(
            f"Cannot write to index folder {index_dir} ({e.strerror}); choose another QA_INDEX_DIR."
        ) from None


class Store:
    """The chunk collection, its file catalogue, and the state record that versions them."""

    def __init__(self, client: Any, name: str, embed_model: str, dim: int, create: bool) -> None:
        from llama_index.vector_stores.chroma import ChromaVectorStore

        self.client = client
        self.embed_model = embed_model
        existing = {c if isinstance(c, str) else c.name for c in client.list_collections()}
        if name not in existing and not create:
            raise IndexMissingError(f"The index has no collection {name!r}. Run: qa ingest seeds/")
        self.chunks = client.get_or_create_collection(
            name, metadata={"hnsw:space": "cosine", "embed_model": embed_model, "embed_dim": dim}
        )
        built_with = (self.chunks.metadata or {}).get("embed_model")
        if built_with and built_with != embed_model:
            raise EmbeddingMismatchError(
                f"The index was built with embedding model {built_with!r}, not {embed_model!r}. "
                f"Set QA_EMBED_MODEL={built_with}, or use a new QA_INDEX_DIR and re-ingest."
            )
        self.files = client.get_or_create_collection(f"{name}_files")
        self.vector_store = ChromaVectorStore(chroma_collection=self.chunks)

    # --- the state record: a generation counter and an "ingest in progress" flag -----------------
    def state(self) -> dict[str, Any]:
        """Generation (bumped by every change) and whether an ingest was interrupted."""
        got = self.files.get(ids=[STATE_ID], include=["metadatas"])
        meta = got["metadatas"][0] if got["ids"] else {}
        return {"generation": int(meta.get("generation", 0)), "dirty": bool(meta.get("dirty", False))}

    def set_state(self, generation: int, dirty: bool) -> None:
        """Write the state record (a dummy embedding: the catalogue is never searched by vector)."""
        self.files.upsert(ids=[STATE_ID], documents=[""], embeddings=[[0.0]],
                          metadatas=[{"generation": generation, "dirty": dirty}])

    # --- catalogue --------------------------------------------------------------------------------
    def records(self) -> dict[str, FileRecord]:
        """Every completely indexed file."""
        got = self.files.get(include=["metadatas"])
        return {
            i: FileRecord(i, m["digest"], int(m["chunks"]))
            for i, m in zip(got["ids"], got["metadatas"]) if i != STATE_ID
        }

    def document(self, source: str) -> tuple[str, tuple[int, ...]] | None:
        """A document's extracted text and page starts, as indexed."""
        got = self.files.get(ids=[source], include=["documents", "metadatas"])
        if not got["ids"]:
            return None
        return got["documents"][0], tuple(json.loads(got["metadatas"][0].get("pages", "[]")))

    # --- writing ----------------------------------------------------------------------------------
    def add_chunks(self, batch: list[tuple[SourceText, list[Chunk], Any]]) -> None:
        """Write chunks of documents; they count only once `commit` records their documents."""
        from llama_index.core.schema import TextNode

        nodes = []
        for source, chunks, embeddings in batch:
            for c, emb in zip(chunks, embeddings):
                meta = {"source": c.source, "digest": source.digest, "index": c.index,
                        "start": c.start, "end": c.end, "location": location(source, c.start)}
                nodes.append(TextNode(
                    id_=chunk_id(c.source, source.digest, c.index), text=c.text, metadata=meta,
                    embedding=emb.tolist() if hasattr(emb, "tolist") else list(emb),
                    excluded_embed_metadata_keys=_META_KEYS, excluded_llm_metadata_keys=_META_KEYS,
                ))
        # One write per few thousand chunks: each Chroma write is a transaction (~50 ms).
        for i in range(0, len(nodes), 4000):
            self.vector_store.add(nodes[i:i + 4000])

    def commit(self, docs: list[tuple[SourceText, int]], replaced: list[SourceText]) -> None:
        """Record fully written documents (the commit point), then drop replaced versions."""
        for i in range(0, len(docs), 1000):
            part = docs[i:i + 1000]
            self.files.upsert(
                ids=[d.path for d, _ in part], documents=[d.text for d, _ in part],
                embeddings=[[0.0]] * len(part),
                metadatas=[{"digest": d.digest, "chunks": n, "pages": json.dumps(list(d.pages))} for d, n in part],
            )
        for d in replaced:
            self.chunks.delete(where={"$and": [{"source": d.path}, {"digest": {"$ne": d.digest}}]})

    def remove(self, source: str) -> None:
        """Forget a file: its record first, so a crash in between leaves only orphans to repair."""
        self.files.delete(ids=[source])
        self.chunks.delete(where={"source": source})

    def repair(self) -> int:
        """Delete chunks no catalogue record vouches for; returns how many."""
        records = self.records()
        got = self.chunks.get(include=["metadatas"])
        orphans = [
            i for i, m in zip(got["ids"], got["metadatas"])
            if (r := records.get(m.get("source", ""))) is None or r.digest != m.get("digest")
            or int(m.get("index", -1)) >= r.chunks
        ]
        for i in range(0, len(orphans), 5000):
            self.chunks.delete(ids=orphans[i:i + 5000])
        return len(orphans)

    # --- reading ----------------------------------------------------------------------------------
    def count(self) -> int:
        """Chunks in the index."""
        return self.chunks.count()

    def all_chunks(self, batch: int = 5000) -> list[tuple[str, str, dict[str, Any]]]:
        """(id, text, metadata) of every chunk, paged so huge indexes do not time out."""
        out: list[tuple[str, str, dict[str, Any]]] = []
        total = self.chunks.count()
        for offset in range(0, total, batch):
            got = self.chunks.get(include=["documents", "metadatas"], limit=batch, offset=offset)
            out.extend(zip(got["ids"], got["documents"], got["metadatas"]))
        return out
