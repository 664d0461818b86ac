"""qa: answers from your documents, with every sentence cited to its exact passage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    BackendError,
    ConfigError,
    ConversationNotFoundError,
    ConversationStoreError,
    DiskFullError,
    EmbeddingMismatchError,
    IndexBusyError,
    IndexDamagedError,
    IndexMissingError,
    IndexVersionError,
    IngestError,
    InvalidArgumentError,
    QAError,
)
from .types import Answer, Box, Citation, Document, FileResult, IngestReport, Passage, RemoveReport, Status

if TYPE_CHECKING:
    from .assistant import Assistant
    from .conversations import Conversation, ConversationInfo, Turn
    from .settings import Settings

# Loaded on first use: pydantic-settings alone takes ~0.3 s, and `import qa` / `qa --help` stay fast.
_LAZY = {"Assistant": ".assistant", "Settings": ".settings", "Conversation": ".conversations",
         "ConversationInfo": ".conversations", "Turn": ".conversations"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value

__all__ = [
    "Answer",
    "Assistant",
    "BackendError",
    "Citation",
    "ConfigError",
    "Conversation",
    "ConversationInfo",
    "ConversationNotFoundError",
    "ConversationStoreError",
    "EmbeddingMismatchError",
    "FileResult",
    "IngestReport",
    "IndexBusyError",
    "IndexMissingError",
    "IngestError",
    "InvalidArgumentError",
    "Passage",
    "QAError",
    "Settings",
    "Status",
    "Turn",
    "DiskFullError",
    "IndexDamagedError",
    "IndexVersionError",
    "Box",
    "Document",
    "RemoveReport",
]
