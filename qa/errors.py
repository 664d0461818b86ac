"""Errors whose messages say what happened and how to fix it."""

from __future__ import annotations

import re

# The fixes messages give as `qa` commands, and the call a Python program makes instead. They are added as a note
# (PEP 678), which a traceback and Jupyter show and str() does not: the CLI, the HTTP API and the UI show the
# message as it is.
_PYTHON_FORMS = tuple((re.compile(pattern), call) for pattern, call in (
    (r"(?P<cmd>\bqa ingest --rebuild\b)", "a.rebuild()"),
    (r"[Rr]un: (?P<cmd>qa ingest (?!--)(?P<path>\S+?))[.,;:)]*(?=\s|$)", "a.ingest({path!r})"),
    (r"(?P<cmd>\bqa status --check\b)", "a.check()"),
    (r"(?P<cmd>\bqa docs\b)", "a.documents()"),
    (r"(?P<cmd>\bqa chats\b)", "a.conversations()"),
    (r"(?P<cmd>\bulimit -n (?P<n>\d+))", "resource.setrlimit(resource.RLIMIT_NOFILE, ({n}, hard))"),
))


def python_note(message: str) -> str | None:
    """The Python calls for the `qa` commands a message names, as one line; None when it names none."""
    forms = [f"`{m['cmd']}` is `{call.format(**m.groupdict())}`"
             for pattern, call in _PYTHON_FORMS if (m := pattern.search(message))]
    return f"In Python (a = qa.Assistant(...)): {'; '.join(forms)}" if forms else None


class QAError(Exception):
    """Base class: the CLI prints the message on one line and exits 1; a traceback also shows the Python calls for
    the commands it names."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        if args and isinstance(args[0], str) and (note := python_note(args[0])):
            self.add_note(note)


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
