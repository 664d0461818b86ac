"""Errors whose messages say what happened and how to fix it."""

from __future__ import annotations


class QAError(Exception):
    """Base class: the CLI prints the message on one line and exits 1."""


class ConfigError(QAError):
    """A setting has a value that cannot work."""


class InvalidArgumentError(ConfigError, ValueError):
    """An argument of a call cannot work (a question that is not a string, top_k out of range); a ValueError too."""


class IndexMissingError(QAError):
    """There is no index to answer from."""


class EmbeddingMismatchError(QAError):
    """The index was built with a different embedding model."""


class IngestError(QAError):
    """Not raised: `Assistant.ingest` reports each file it cannot index in its IngestReport (status "failed",
    with the reason). Kept so that code naming it still imports."""


class IndexBusyError(QAError):
    """Another process holds the index lock."""


class BackendError(QAError):
    """The answering backend (model server, API) failed."""


class ConversationNotFoundError(QAError):
    """No conversation with that id for this user (someone else's id looks exactly the same)."""


class ConversationStoreError(QAError):
    """The conversation store cannot be opened or written; answering still works without it."""

class IndexDamagedError(QAError):
    """The index cannot be read safely (damaged, or written by a newer qa); nothing is written to it."""


class IndexVersionError(IndexDamagedError):
    """The index was written by a newer qa, in a layout this one does not know."""


class DiskFullError(QAError):
    """An ingest ran out of disk space; what was committed before is intact."""


class TooManyOpenFilesError(QAError):
    """The process is at its open-file limit (ulimit -n), so Chroma could not open the index; it is not damaged."""
