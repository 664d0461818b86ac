"""The local embedding model on ONNX Runtime: the query path never imports torch or transformers.

The model is exported once from its sentence-transformers folder (`qa.onnx_export`, in a child
process, so that torch is loaded only there) into `<embed_cache>/<model>-<digest>-<precision>/`;
here it runs as the sentence-transformers config says: word pieces truncated at the model's
max_seq_length, mean pooling over the attention mask, L2 normalization.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from .errors import ConfigError
from .onnx_encoder import OnnxEncoder

EXPORT_VERSION = 2  # bump when the export recipe changes: old exports are then made anew (2: smoothed int8)


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
    """A LlamaIndex embedding over an exported sentence-transformers model (mean pooling, normalized):
    the model itself runs in `qa.onnx_encoder.OnnxEncoder`, which an ingest's encoder process loads too."""

    folder: str
    max_length: int = 256
    _encoder: OnnxEncoder = PrivateAttr()

    def __init__(self, folder: Path, **kwargs: Any) -> None:
        encoder = OnnxEncoder(folder)
        super().__init__(folder=str(folder), max_length=encoder.max_length, model_name=encoder.model, **kwargs)
        self._encoder = encoder

    @classmethod
    def class_name(cls) -> str:
        return "QAOnnxEmbedding"

    def count_tokens(self, text: str) -> int:
        """Word pieces of a text, without special tokens or truncation (for chunk sizing)."""
        return self._encoder.count_tokens(text)

    def token_starts(self, text: str) -> list[int]:
        """Where each word piece of a text starts (see OnnxEncoder.token_starts)."""
        return self._encoder.token_starts(text)

    def tokens(self, text: str) -> Any:
        """A text's word pieces with their offsets, or None (see OnnxEncoder.tokens)."""
        return self._encoder.tokens(text)

    def encode(self, texts: list[str], batch_size: int | None = None, pieces: list[Any] | None = None) -> Any:
        """Normalized float32 vectors of texts, in order (see OnnxEncoder.encode)."""
        return self._encoder.encode(texts, batch_size or self.embed_batch_size, pieces)

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
