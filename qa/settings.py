"""The one settings object: `QA_*` environment variables, overridable by keyword arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2"


class Settings(BaseSettings):
    """Everything qa can be configured with; each field maps to `QA_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="QA_", extra="forbid")

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
    top_k: int = Field(5, ge=1, le=50, description="Passages retrieved for each question.")
    llm: Literal["extractive"] = Field(
        "extractive", description="Answer backend. 'extractive' needs no model and no key."
    )
    max_sentences: int = Field(2, ge=1, le=10, description="Sentences an extractive answer may use.")
    min_support: float = Field(
        0.45,
        description="Below this evidence score the answer is 'not found in the documents'.",
    )
    max_file_mb: float = Field(100.0, gt=0, description="Files larger than this are skipped.")
