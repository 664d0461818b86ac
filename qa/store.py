"""Chroma storage: a chunk collection (through LlamaIndex's ChromaVectorStore) and a file catalogue.

The catalogue record of a file is the commit point of its ingest: chunks are written first, then
the record; chunks whose (source, digest) no catalogue record vouches for are orphans of an
interrupted run and are deleted by `repair()`.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, EmbeddingMismatchError, IndexBusyError, IndexMissingError
from .library import describe
from .reading.formats import Chunk, SourceText, location

STATE_ID = "\x00state"
WRITER_ID = "\x00writer"  # the lease of the one process allowed to write (Chroma server mode)
LEASE_SECONDS = 300  # a writer that has not renewed its lease for this long is presumed dead
RENEW_SECONDS = 30
# A document's text is stored in pieces of this many characters: Chroma full-text-indexes every
# stored text, and writing one 20 MB text took 300 MB of memory at once.
TEXT_PIECE = 1 << 20
# Chroma keeps a collection's writes in its log until that collection's HNSW index is saved, every
# `sync_threshold` records (1,000 by default), and each write reads back every record still in the log.
# For text and word-box pieces (1 MB each; the HNSW index is a one-number dummy), the last pieces of a
# 50 MB text read some 50 MB back at each write: 100 MB of memory at once, and a time quadratic in the
# pieces (60 took 18 s, not 3 to 5). Saving the dummy index every few records bounds the log at that many MB.
PIECE_SYNC = 8
# How widely Chroma's HNSW graph is searched for a question's nearest chunks. At Chroma's default, 10, the
# dense side returned 0.9877 of the exact top 10 on squad-dev's 3,065 chunks and 0.9774 on scifact-train's
# 14,993, and the nearest chunk first for 0.9868 / 0.9876 of the questions (two builds of the same documents
# could answer differently); at 200: 0.9996 / 0.9990 and 0.9981 / 1.0, for 0.15-0.36 ms more a question
# (python -m benchmarks hnsw). nDCG@10, same index: dense 0.7883 -> 0.7896 (squad-dev), 0.6585 -> 0.6648
# (scifact-train); hybrid 0.8985 -> 0.9005, 0.7116 -> 0.7157.
SEARCH_EF = 200
ABOUT = "about"  # the catalogue fields only shown, packed (see `record`)
_META_KEYS = ["source", "digest", "index", "start", "end", "location"]
_STORED_KEYS = ("source", "digest", "index", "_node_content", "_node_type")  # a chunk's Chroma keys: add_chunks


@dataclass(frozen=True)
class FileRecord:
    """What the catalogue knows of one indexed file."""

    source: str
    digest: str
    chunks: int


def chunk_id(source: str, digest: str, index: int) -> str:
    """Deterministic id: re-adding the same chunk overwrites it instead of duplicating it."""
    return hashlib.sha1(f"{source}\x00{digest}\x00{index}".encode()).hexdigest()


def layout_id(source: str, digest: str) -> str:
    """Id of the first stored piece of a document's word boxes."""
    return f"{chunk_id(source, digest, -2)}:0"


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
    with _OPENED_LOCK:
        # Chroma keeps one client per folder per process, its SQLite file open. A folder deleted and made again
        # (a notebook starting over) or replaced (another process's restore or --rebuild) would be read from the
        # old files and written to the deleted one ("attempt to write a readonly database"): open it as it is now.
        key = Path(index_dir).absolute()
        if key in _OPENED and _OPENED[key] != sqlite_id(index_dir):
            from .backup import forget_chroma

            forget_chroma(index_dir)
        client = chromadb.PersistentClient(path=str(index_dir), settings=chroma_settings)
        _OPENED[key] = sqlite_id(index_dir)
    return client


_OPENED: dict[Path, tuple[int, int] | None] = {}  # index folder -> the chroma.sqlite3 Chroma's client there opened
_OPENED_LOCK = threading.Lock()


def sqlite_id(index_dir: Path | str) -> tuple[int, int] | None:
    """Which file the index's chroma.sqlite3 is (device, inode); None when there is none."""
    try:
        st = (Path(index_dir) / "chroma.sqlite3").stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def close_client(client: Any) -> None:
    """Give up a Chroma client: the folder's files are closed when the last client of it in this process goes.
    A client of a folder replaced since (open_client forgot its system) counts for nothing any more: closing it
    would stop the system now open there for others."""
    from chromadb.api import ServerAPI
    from chromadb.api.shared_system_client import SharedSystemClient

    system = SharedSystemClient._identifier_to_system.get(getattr(client, "_identifier", None) or "")
    if system is not None and system.instance(ServerAPI) is getattr(client, "_server", None):
        client.close()


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
        from .openfiles import says_so, too_many

        if says_so(e):  # no file left to open: the folder may well be writable
            raise too_many(index_dir) from None
        if (index_dir / "chroma.sqlite3").exists():
            raise read_only(index_dir, str(e.strerror)) from None
        raise ConfigError(
            f"Cannot write to index folder {index_dir} ({e.strerror}); choose another QA_INDEX_DIR."
        ) from None


def read_only(index_dir: Path | str, reason: str) -> ConfigError:
    """The one line for an index qa may not write to (a read-only mount or folder)."""
    return ConfigError(f"The index at {index_dir} is read-only ({reason}); Chroma opens an index for writing, even to "
                       "answer. Make the folder writable, or copy it (cp -a) and point QA_INDEX_DIR at the copy.")


def recorded_embedder(client: Any, name: str) -> str | None:
    """What made the vectors of collection `name` (see qa.embedding.embedder_id); None for a new index."""
    existing = {c if isinstance(c, str) else c.name for c in client.list_collections()}
    if name not in existing:
        return None
    return (client.get_collection(name).metadata or {}).get("embed_model")


class Store:
    """The chunk collection, its file catalogue, and the state record that versions them."""

    def __init__(self, client: Any, name: str, embed_model: str, dim: int | None, create: bool) -> None:
        self.client = client
        self.embed_model = embed_model
        existing = {c if isinstance(c, str) else c.name for c in client.list_collections()}
        if name not in existing and not create:
            raise IndexMissingError(f"The index has no collection {name!r}. Run: qa ingest seeds/")
        meta: dict[str, Any] = {"hnsw:space": "cosine", "hnsw:search_ef": SEARCH_EF, "embed_model": embed_model}
        if dim:
            meta["embed_dim"] = dim
        self.chunks = client.get_or_create_collection(name, metadata=meta)
        if create and ((self.chunks.configuration or {}).get("hnsw") or {}).get("ef_search") != SEARCH_EF:
            # An index made before: changed by the next ingest (a reader never writes to the index).
            self.chunks.modify(configuration={"hnsw": {"ef_search": SEARCH_EF}})
        built_with = (self.chunks.metadata or {}).get("embed_model")
        if built_with and built_with != embed_model:
            raise EmbeddingMismatchError(
                f"The index was built with embeddings of {built_with!r}, not {embed_model!r}; their vectors "
                f"do not mix. Go back to the settings it was built with ({_settings_for(built_with)}), "
                "or re-ingest into a new QA_INDEX_DIR, or re-embed everything here with: qa ingest --rebuild."
            )
        self.files = client.get_or_create_collection(f"{name}_files")
        self.texts = _pieces_collection(client, f"{name}_texts")
        self.layouts = _pieces_collection(client, f"{name}_layouts")  # PDFs, images: word boxes
        self._writer: dict[str, Any] | None = None
        self._renewed = 0.0
        self._vector_store: Any = None

    def close(self) -> None:
        """Give up the Chroma client (see close_client); the store cannot be used after."""
        close_client(self.client)

    @property
    def vector_store(self) -> Any:
        """LlamaIndex's ChromaVectorStore over the chunks, made on first use: `qa docs` and `qa status`
        never import LlamaIndex (10 s of a 12 s `qa docs` on a busy machine)."""
        if self._vector_store is None:
            from llama_index.vector_stores.chroma import ChromaVectorStore

            self._vector_store = ChromaVectorStore(chroma_collection=self.chunks)
        return self._vector_store

    # --- the state record: a generation counter and an "ingest in progress" flag -----------------
    def state(self) -> dict[str, Any]:
        """Generation (bumped by every change) and whether an ingest was interrupted."""
        got = self.files.get(ids=[STATE_ID], include=["metadatas"])
        meta = got["metadatas"][0] if got["ids"] else {}
        return {"generation": int(meta.get("generation", 0)), "dirty": bool(meta.get("dirty", False))}

    def set_state(self, generation: int, dirty: bool) -> None:
        """Write the state record (a dummy embedding: the catalogue is never searched by vector)."""
        from .integrity import LAYOUT, qa_version

        self.files.upsert(ids=[STATE_ID], documents=[""], embeddings=[[0.0]],
                          metadatas=[{"generation": generation, "dirty": dirty, "layout": LAYOUT,
                                      "qa_version": qa_version()}])

    # --- the writer lease: one ingest per collection, across processes and hosts ------------------
    def acquire_writer(self, where: str, local: bool = False) -> None:
        """Become the only writer of this collection, or raise IndexBusyError naming the current one.

        Chroma's `add` ignores an id that exists, so add-then-read-back is an atomic claim. A lease
        not renewed for LEASE_SECONDS, or held by a dead process on this host, is taken over. With `local`
        the caller holds the index folder's file lock, which every writer on this host takes: a lease of
        this host is then a dead writer's, even where its pid is alive again (a container's pid 1).
        """
        me = {"owner": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid()}
        for _ in range(2):
            got = self.files.get(ids=[WRITER_ID], include=["metadatas"])
            if got["ids"]:
                held = got["metadatas"][0]
                age = time.time() - float(held.get("renewed", 0))
                dead = self._dead(held) or local and held.get("host") == socket.gethostname()
                if age < LEASE_SECONDS and not dead:
                    raise IndexBusyError(
                        f"Another qa ingest (pid {held.get('pid')} on {held.get('host')}) is writing to "
                        f"{where}, last seen {age:.0f} s ago; wait for it to finish and run again "
                        f"(if it died, its claim lapses after {LEASE_SECONDS} s).")
                self.files.delete(ids=[WRITER_ID], where={"owner": held["owner"]})  # stale: free it
            self.files.add(ids=[WRITER_ID], documents=[""], embeddings=[[0.0]],
                           metadatas=[{**me, "renewed": time.time()}])
            got = self.files.get(ids=[WRITER_ID], include=["metadatas"])
            if got["ids"] and got["metadatas"][0]["owner"] == me["owner"]:
                self._writer, self._renewed = me, time.time()
                return
        raise IndexBusyError(f"Another qa ingest just started writing to {where}; wait for it and run again.")

    @staticmethod
    def _dead(held: dict[str, Any]) -> bool:
        if held.get("host") != socket.gethostname():
            return False
        try:
            os.kill(int(held.get("pid", 0)), 0)
        except ProcessLookupError:
            return True
        except (OSError, ValueError):
            return False
        return False

    def renew_writer(self) -> None:
        """Keep the lease fresh during a long ingest (cheap: at most one write per RENEW_SECONDS)."""
        me = self._writer
        if me and time.time() - self._renewed > RENEW_SECONDS:
            self.files.upsert(ids=[WRITER_ID], documents=[""], embeddings=[[0.0]],
                              metadatas=[{**me, "renewed": time.time()}])
            self._renewed = time.time()

    def release_writer(self) -> None:
        """Give up the lease (only our own: a lease taken over from us is left alone)."""
        me = self._writer
        if me:
            self.files.delete(ids=[WRITER_ID], where={"owner": me["owner"]})
            self._writer = None

    # --- catalogue --------------------------------------------------------------------------------
    def records(self) -> dict[str, FileRecord]:
        """Every completely indexed file."""
        return {
            i: FileRecord(i, m["digest"], int(m["chunks"]))
            for i, _, m in _get_all(self.files, ["metadatas"]) if i not in (STATE_ID, WRITER_ID)
        }

    def catalogue(self) -> list[tuple[str, dict[str, Any]]]:
        """(source, record metadata) of every completely indexed file: what `qa docs` lists."""
        return [(i, record(m)) for i, _, m in _get_all(self.files, ["metadatas"]) if i not in (STATE_ID, WRITER_ID)]

    def document(self, source: str) -> tuple[str, tuple[int, ...]] | None:
        """A document's extracted text and page starts, as indexed."""
        got = self.files.get(ids=[source], include=["documents", "metadatas"])
        if not got["ids"]:
            return None
        meta = record(got["metadatas"][0])
        pages = tuple(json.loads(meta.get("pages", "[]")))
        if "pieces" not in meta:  # indexes written before texts were stored in pieces
            return got["documents"][0], pages
        if meta["pieces"] == 0:  # the document is its one chunk (see commit)
            chunk = self.chunks.get(ids=[chunk_id(source, meta["digest"], 0)], include=["documents", "metadatas"])
            if not chunk["ids"]:
                return None
            return chunk_text(chunk["documents"][0], chunk["metadatas"][0]), pages
        pieces = self.texts.get(where={"$and": [{"source": source}, {"digest": meta["digest"]}]},
                                include=["documents", "metadatas"])
        ordered = sorted(zip(pieces["metadatas"], pieces["documents"]), key=lambda x: int(x[0]["piece"]))
        return "".join(t or m.get("text", "") for m, t in ordered), pages  # older indexes: a Chroma document

    def digests(self, sources: set[str] | list[str]) -> dict[str, str]:
        """The content digest of each of these documents that the catalogue holds (missing: not indexed)."""
        got = self.files.get(ids=sorted(sources), include=["metadatas"])
        return {i: m["digest"] for i, m in zip(got["ids"], got["metadatas"]) if i not in (STATE_ID, WRITER_ID)}

    # --- writing ----------------------------------------------------------------------------------
    def add_chunks(self, batch: list[tuple[SourceText, list[Chunk], Any]]) -> None:
        """Write chunks of documents; they count only once `commit` records their documents.

        A chunk is the record LlamaIndex's ChromaVectorStore writes, with one difference: its text stays
        inside the node's JSON instead of going to Chroma as a document. Chroma full-text-indexes every
        document (trigrams, in SQLite), which qa never searches (BM25 is its keyword side), and that index
        took half of the write: 1,400 chunks took 1.0 s as documents, 0.5 s inside the metadata. Readers
        take the document when there is one (indexes written before) and the JSON's text otherwise
        (`metadata_dict_to_node(meta, text=None)`), so both kinds read the same. And of the keys LlamaIndex
        writes beside the node JSON, only those qa filters on are kept (_STORED_KEYS): Chroma writes each key
        as a row of its own, and start, end, location and LlamaIndex's three "None" document ids, which
        readers take from the node JSON, cost 0.17 of the 2.8 CPU-s this process spent in an ingest of
        1,000 squad-dev paragraphs.
        """
        import numpy as np
        from llama_index.core.schema import TextNode
        from llama_index.core.vector_stores.utils import node_to_metadata_dict

        ids: list[str] = []
        metadatas: list[dict[str, Any]] = []
        vectors: list[Any] = []
        for source, chunks, embeddings in batch:
            for c, emb in zip(chunks, embeddings):
                meta = {"source": c.source, "digest": source.digest, "index": c.index,
                        "start": c.start, "end": c.end, "location": location(source, c.start)}
                node = TextNode(id_=chunk_id(c.source, source.digest, c.index), text=c.text, metadata=meta,
                                excluded_embed_metadata_keys=_META_KEYS, excluded_llm_metadata_keys=_META_KEYS)
                ids.append(node.node_id)
                flat = node_to_metadata_dict(node, flat_metadata=True)
                metadatas.append({k: flat[k] for k in _STORED_KEYS})
                vectors.append(emb)
        # One write per few thousand chunks: each Chroma write is a transaction (~50 ms).
        matrix = np.asarray(vectors, dtype=np.float32)
        for i in range(0, len(ids), 4000):
            self.chunks.add(ids=ids[i:i + 4000], metadatas=metadatas[i:i + 4000], embeddings=matrix[i:i + 4000])

    def commit(self, docs: list[tuple[SourceText, int]], replaced: list[SourceText],
               whole: set[str] | frozenset[str] = frozenset()) -> None:
        """Record fully written documents (the commit point), then drop replaced versions.

        A document in `whole` (paths) is its one chunk, start to end: that chunk's text is its stored text,
        with no text record of its own (`pieces` 0). Short documents are often one chunk (652 of 1,000
        squad-dev paragraphs): a second copy of each was a third of their writes.
        """
        self._write_texts([d for d, _ in docs if d.path not in whole])
        self._write_layouts([d for d, _ in docs if d.layout is not None])

        now = time.time()
        for i in range(0, len(docs), 1000):
            part = docs[i:i + 1000]
            ids = [d.path for d, _ in part]
            before = self.files.get(ids=ids, include=["metadatas"])  # an updated document keeps its "added"
            added = {s: record(m).get("added") for s, m in zip(before["ids"], before["metadatas"])}
            self.files.upsert(
                ids=ids, embeddings=[[0.0]] * len(part),
                metadatas=[{"digest": d.digest, "chunks": n, "pieces": 0 if d.path in whole else _pieces(d.text),
                            ABOUT: json.dumps({"pages": json.dumps(list(d.pages)), **describe(d),
                                               "added": added.get(d.path) or now, "updated": now})}
                           for d, n in part],
            )
        for d in replaced:
            old = {"$and": [{"source": d.path}, {"digest": {"$ne": d.digest}}]}
            self.chunks.delete(where=old)
            self.texts.delete(where=old)
            self.layouts.delete(where=old)

    def _write_texts(self, docs: list[SourceText]) -> None:
        """Store documents' text in pieces, about 1 MB per write, before their records vouch for them."""
        rows: list[tuple[str, dict[str, Any]]] = []
        size = 0
        for d in docs:
            for n in range(_pieces(d.text)):
                piece = d.text[n * TEXT_PIECE:(n + 1) * TEXT_PIECE]
                rows.append((f"{chunk_id(d.path, d.digest, -1)}:{n}",
                             {"source": d.path, "digest": d.digest, "piece": n, "text": piece}))
                size += len(piece)
                if size >= TEXT_PIECE:
                    self._upsert_texts(rows)
                    rows, size = [], 0
        self._upsert_texts(rows)

    def _upsert_texts(self, rows: list[tuple[str, dict[str, Any]]]) -> None:
        if rows:
            # The text goes in the metadata, not as a Chroma document: see add_chunks.
            self.texts.upsert(ids=[r[0] for r in rows], embeddings=[[0.0]] * len(rows),
                              metadatas=[r[1] for r in rows])

    def remove(self, source: str) -> None:
        """Forget a file: its record first, so a crash in between leaves only orphans to repair."""
        self.files.delete(ids=[source])
        self.chunks.delete(where={"source": source})
        self.texts.delete(where={"source": source})
        self.layouts.delete(where={"source": source})

    def remove_many(self, sources: list[str]) -> None:
        """Forget files, records first (as `remove`), a few hundred per Chroma call."""
        for i in range(0, len(sources), 500):
            part = sources[i:i + 500]
            self.files.delete(ids=part)
            self.chunks.delete(where={"source": {"$in": part}})
            self.texts.delete(where={"source": {"$in": part}})
            self.layouts.delete(where={"source": {"$in": part}})

    def repair(self) -> int:
        """Delete chunks and text pieces no catalogue record vouches for; returns how many chunks."""
        records = self.records()

        def stray(m: dict[str, Any]) -> bool:
            r = records.get(m.get("source", ""))
            return r is None or r.digest != m.get("digest") or int(m.get("index", -1)) >= r.chunks

        deleted = []
        for collection in (self.chunks, self.texts, self.layouts):  # pieces have no index: -1 passes
            ids = [i for i, _, m in _get_all(collection, ["metadatas"]) if stray(m)]
            for i in range(0, len(ids), 5000):
                collection.delete(ids=ids[i:i + 5000])
            deleted.append(len(ids))
        return deleted[0]

    def _write_layouts(self, docs: list[SourceText]) -> None:
        """Store documents' word boxes (compressed, in pieces) next to their text."""
        for d in docs:
            data = d.layout.encode()
            n = max(1, -(-len(data) // TEXT_PIECE))
            ids = [f"{chunk_id(d.path, d.digest, -2)}:{i}" for i in range(n)]  # ids[0] == layout_id(...)
            self.layouts.upsert(ids=ids, documents=[""] * n, embeddings=[[0.0]] * n, metadatas=[
                {"source": d.path, "digest": d.digest, "piece": i, "data": data[i * TEXT_PIECE:(i + 1) * TEXT_PIECE]}
                for i in range(n)])

    def layout_ids(self) -> set[str]:
        """Ids of every stored layout piece (ids only: the boxes themselves are not read)."""
        ids: set[str] = set()
        while True:
            got = self.layouts.get(include=[], limit=5000, offset=len(ids))
            ids.update(got["ids"])
            if len(got["ids"]) < 5000:
                return ids

    def layout(self, source: str, known: tuple[str, Any] | None = None) -> tuple[str, Any] | None:
        """(digest, `qa.reading.positions.Layout`) of an indexed document (the layout None unless a PDF or image).

        None if it is not indexed. `known` is a copy read before: returned as is while the document's
        digest has not changed.
        """
        from .reading.positions import Layout

        got = self.files.get(ids=[source], include=["metadatas"])
        if not got["ids"]:
            return None
        digest = got["metadatas"][0]["digest"]
        if known is not None and known[0] == digest:
            return known
        pieces = self.layouts.get(where={"$and": [{"source": source}, {"digest": digest}]}, include=["metadatas"])
        if not pieces["ids"]:
            return digest, None
        ordered = sorted(pieces["metadatas"], key=lambda m: int(m["piece"]))
        return digest, Layout.decode("".join(m["data"] for m in ordered))

    # --- reading ----------------------------------------------------------------------------------
    def count(self) -> int:
        """Chunks in the index."""
        return self.chunks.count()

    def all_chunks(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(id, text, metadata) of every chunk; the metadata is its node's (source, digest, index, start, end,
        location), which the Chroma record keeps in the node JSON (see add_chunks)."""
        out = []
        for i, t, m in _get_all(self.chunks, ["documents", "metadatas"]):
            node = json.loads(m.get("_node_content") or "{}")
            out.append((i, t if t is not None else str(node.get("text", "")), {**m, **node.get("metadata", {})}))
        return out

    def chunk_nodes(self) -> list[Any]:
        """LlamaIndex nodes of every chunk, the same objects the Chroma side's search returns (its text from
        the document of an older index, else from the node JSON, which is parsed once)."""
        from llama_index.core.vector_stores.utils import metadata_dict_to_node

        return [metadata_dict_to_node(m, text=t) for _, t, m in _get_all(self.chunks, ["documents", "metadatas"])]


def record(meta: dict[str, Any]) -> dict[str, Any]:
    """A catalogue record's fields. Those it only shows (pages, bytes, type, title, added, updated) are one JSON
    string, ABOUT, since index layout 3: Chroma writes each metadata key as a row of its own, and 1,000 records
    took 0.44 s with them as keys, 0.25 s packed. Records written before have them as keys."""
    if ABOUT not in meta:
        return meta
    return {**json.loads(meta[ABOUT]), **{k: v for k, v in meta.items() if k != ABOUT}}


def chunk_text(document: str | None, metadata: dict[str, Any]) -> str:
    """A chunk's text from its Chroma record: the document of indexes written before add_chunks kept it in
    the node JSON of the metadata, else that JSON's text."""
    if document is not None:
        return document
    return str(json.loads(metadata.get("_node_content") or "{}").get("text", ""))


def _pieces_collection(client: Any, name: str) -> Any:
    """A collection of text or word-box pieces, whose log is saved every PIECE_SYNC records (see there)."""
    def config() -> Any:  # a new one for each call: Chroma adds its defaults to the one it is given
        return {"hnsw": {"sync_threshold": PIECE_SYNC, "batch_size": PIECE_SYNC}}

    collection = client.get_or_create_collection(name, configuration=config())
    # Indexes made before: changed once, before this process reads the collection (Chroma keeps the
    # setting of an index it has loaded).
    if ((collection.configuration or {}).get("hnsw") or {}).get("sync_threshold") != PIECE_SYNC:
        collection.modify(configuration=config())
    return collection


def _settings_for(built_with: str) -> str:
    """The settings that produce embeddings recorded as `built_with` (see qa.embedding.embedder_id)."""
    if built_with.startswith("remote "):
        return f"QA_EMBED_URL=<a server of it> QA_EMBED_MODEL={built_with.removeprefix('remote ')}"
    from .embedding import INT8_IDS

    for precision, tag in INT8_IDS.items():
        if built_with.endswith(f" {tag}"):
            return (f"QA_EMBED_MODEL={built_with.removesuffix(f' {tag}')} QA_EMBED_BACKEND=onnx "
                    f"QA_EMBED_PRECISION={precision}")
    return f"QA_EMBED_MODEL={built_with}, QA_EMBED_URL unset, QA_EMBED_PRECISION=fp32 or QA_EMBED_BACKEND=torch"


def _pieces(text: str) -> int:
    return max(1, -(-len(text) // TEXT_PIECE))


def _get_all(collection: Any, include: list[str], batch: int = 5000) -> list[tuple[str, Any, dict[str, Any]]]:
    """Every record of a collection, paged: one unpaged get fails past ~30k records (SQL variables)."""
    out: list[tuple[str, Any, dict[str, Any]]] = []
    offset = 0
    while True:
        got = collection.get(include=include, limit=batch, offset=offset)
        docs = got.get("documents") or [None] * len(got["ids"])
        out.extend(zip(got["ids"], docs, got["metadatas"]))
        if len(got["ids"]) < batch:
            return out
        offset += batch
