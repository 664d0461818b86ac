"""The local embedding model on ONNX Runtime: the query path never imports torch or transformers.

The model is exported once from its sentence-transformers folder (`qa.onnx_export`, in a child
process, so that torch is loaded only there) into `<embed_cache>/<model>-<digest>-<precision>/`;
here it runs as the sentence-transformers config says: word pieces truncated at the model's
max_seq_length, mean pooling over the attention mask, L2 normalization.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from .errors import ConfigError

TOKENS_PER_BATCH = 512  # word pieces in one model run (2 chunks of 256): fastest and smallest, benchmarks/README.md
EXPORT_VERSION = 1  # bump when the export recipe changes: old exports are then made anew
_local = threading.local()  # `single_thread` flag set by qa.embedding.one_thread()


@contextmanager
def single_thread() -> Iterator[None]:
    """Encode on one thread in this block (see qa.embedding.one_thread)."""
    before = getattr(_local, "single", False)
    _local.single = True
    try:
        yield
    finally:
        _local.single = before


def export_dir(model_path: Path, cache: Path, precision: str) -> Path:
    """Where the export of this model folder lives: named by model, content digest and precision."""
    h = hashlib.sha256(str(EXPORT_VERSION).encode())
    for name in sorted(os.listdir(model_path)):
        f = model_path / name
        if f.is_file():  # name and size: cheap, and changes whenever the weights do
            h.update(f"{name}\x00{f.stat().st_size}\x00".encode())
    return cache.expanduser() / f"{model_path.name}-{h.hexdigest()[:10]}-{precision}"


def ensure_export(model_path: Path, cache: Path, precision: str) -> Path:
    """The exported model folder, exporting it first (once, under a lock) if it is not there."""
    from filelock import FileLock

    out = export_dir(model_path, cache, precision)
    if (out / "model.onnx").exists():
        return out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"Cannot create the ONNX cache {out.parent} ({e.strerror}); set QA_EMBED_CACHE "
                          "to a writable folder, or QA_EMBED_BACKEND=torch.") from None
    with FileLock(str(out) + ".lock"):
        if not (out / "model.onnx").exists():
            # A child process: the export needs torch, which this process should never load.
            cmd = [sys.executable, "-m", "qa.onnx_export", str(model_path), str(out), "--precision", precision]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0 or not (out / "model.onnx").exists():
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                raise ConfigError(f"Exporting the embedding model to ONNX failed ({tail[0][:200]}); "
                                  "set QA_EMBED_BACKEND=torch to run it without ONNX.")
    return out


class OnnxEmbedding(BaseEmbedding):
    """A LlamaIndex embedding over an exported sentence-transformers model (mean pooling, normalized)."""

    folder: str
    max_length: int = 256
    _tokenizer: Any = PrivateAttr()
    _counter: Any = PrivateAttr()
    _sessions: dict[int, Any] = PrivateAttr(default_factory=dict)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)
    _inputs: set[str] = PrivateAttr(default_factory=set)
    _pad_id: int = PrivateAttr(default=0)

    def __init__(self, folder: Path, **kwargs: Any) -> None:
        from tokenizers import Tokenizer

        meta = json.loads((folder / "qa-export.json").read_text())
        super().__init__(folder=str(folder), max_length=int(meta["max_seq_length"]),
                         model_name=meta["model"], **kwargs)
        self._counter = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._counter.no_truncation()
        self._counter.no_padding()
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(self.max_length)
        self._tokenizer.no_padding()  # each batch is padded to its own longest text in encode()
        self._pad_id = self._tokenizer.token_to_id(meta.get("pad_token", "[PAD]")) or 0

    @classmethod
    def class_name(cls) -> str:
        return "QAOnnxEmbedding"

    def count_tokens(self, text: str) -> int:
        """Word pieces of a text, without special tokens or truncation (for chunk sizing)."""
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def _session(self, threads: int) -> Any:
        with self._lock:
            if threads not in self._sessions:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
                # Spinning threads burn a shared machine's CPU between the small ops of a short input.
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                # The arena keeps the largest batch's activations for the life of the process (hundreds
                # of MB during an ingest of long chunks); freed after each run, memory stays flat.
                opts.enable_cpu_mem_arena = False
                s = ort.InferenceSession(str(Path(self.folder) / "model.onnx"), opts,
                                         providers=["CPUExecutionProvider"])
                self._inputs = {i.name for i in s.get_inputs()}
                self._sessions[threads] = s
            return self._sessions[threads]

    def encode(self, texts: list[str], batch_size: int | None = None) -> Any:
        """Normalized float32 vectors of texts, in order. Batches hold texts of similar length (no padding
        wasted) and at most TOKENS_PER_BATCH word pieces: attention's memory grows with batch x length^2,
        and 64 chunks of 256 pieces took 1.3 GB while encoding half as fast as 2 at a time."""
        import numpy as np

        single = len(texts) == 1 or getattr(_local, "single", False)
        session = self._session(1 if single else (os.cpu_count() or 1))
        size = batch_size or self.embed_batch_size
        enc = self._tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(enc[i].ids))
        out = np.zeros((len(texts), 0), dtype=np.float32)
        start = 0
        while start < len(order):
            longest = max(len(enc[order[start]].ids), 1)  # the first of a batch is its longest
            n = max(1, min(size, TOKENS_PER_BATCH // longest))
            idx = order[start:start + n]
            start += n
            ids = np.full((len(idx), longest), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), longest), dtype=np.int64)
            for row, i in enumerate(idx):
                ids[row, :len(enc[i].ids)] = enc[i].ids
                mask[row, :len(enc[i].ids)] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = session.run(None, feed)[0]
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            if out.shape[1] == 0:
                out = np.zeros((len(texts), pooled.shape[1]), dtype=np.float32)
            out[idx] = pooled
        return out

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.encode([query])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.encode([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self.encode(texts).tolist()


def load_onnx_embedder(model_path: Path, cache: Path, precision: str, batch_size: int = 64) -> OnnxEmbedding:
    """The ONNX embedder of a local sentence-transformers model, exporting it on first use."""
    return OnnxEmbedding(ensure_export(model_path, cache, precision), embed_batch_size=batch_size)
