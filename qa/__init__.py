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
    TooManyOpenFilesError,
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
    if name == "__version__":  # looked up on first use: finding the installed distribution takes ~0.1 s
        value: Any = _version()
    elif name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(_LAZY[name], __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def _version() -> str:
    """qa's version: the installed distribution's, else (a source tree that is not installed) its pyproject.toml's."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("qa")
    except PackageNotFoundError:
        pass
    import tomllib
    from pathlib import Path

    try:
        project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
        if project.get("name") == "qa":
            return str(project["version"])
    except (OSError, ValueError, KeyError, TypeError):  # no pyproject beside it, or not one of qa's
        pass
    return "0+unknown"

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
    "TooManyOpenFilesError",
]
