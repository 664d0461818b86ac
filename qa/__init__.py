"""qa: answers from your documents, with every sentence cited to its exact passage."""

from .assistant import Assistant
from .errors import (
    BackendError,
    ConfigError,
    EmbeddingMismatchError,
    IndexBusyError,
    IndexMissingError,
    IngestError,
    QAError,
)
from .settings import Settings
from .types import Answer, Citation, FileResult, IngestReport, Passage, Status

__all__ = [
    "Answer",
    "Assistant",
    "BackendError",
    "Citation",
    "ConfigError",
    "EmbeddingMismatchError",
    "FileResult",
    "IngestReport",
    "IndexBusyError",
    "IndexMissingError",
    "IngestError",
    "Passage",
    "QAError",
    "Settings",
    "Status",
]
