"""The document library: what the catalogue records about a document, and which documents a path or glob names.

A pattern names a document when it is the document's source, the same path given relative to the
current folder, a folder the document is under, or a glob (`*`, `?`, `[...]`) matching the source;
a pattern without a `/` also matches the file name in any folder (`report.pdf`, `*.pdf`).
"""

from __future__ import annotations

import os
import time
import unicodedata
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from pathlib import PurePosixPath
from typing import Any

from .reading.formats import SourceText
from .types import Document

TITLE_CHARS = 120
_GLOB = set("*?[")


def describe(doc: SourceText) -> dict[str, Any]:
    """The catalogue fields `qa docs` shows besides digest and chunks: bytes, type, title."""
    try:
        size = os.stat(doc.path).st_size
    except OSError:  # texts that are not files (qa eval, benchmarks): their UTF-8 size
        size = len(doc.text.encode("utf-8", "replace"))
    return {"bytes": size, "type": doc_type(doc.path), "title": title_of(doc.text, doc.path)}


def doc_type(source: str) -> str:
    """The lower-case file extension without its dot ('pdf', 'md'); 'text' for sources without one."""
    return PurePosixPath(source).suffix.lower().lstrip(".") or "text"


def title_of(text: str, source: str) -> str:
    """The first line with words in it (Markdown heading marks dropped), else the file name."""
    for line in text[:20_000].splitlines():
        line = " ".join(line.strip().lstrip("#").split())
        if any(ch.isalnum() for ch in line):
            return line if len(line) <= TITLE_CHARS else line[:TITLE_CHARS - 1].rstrip() + "…"
    return PurePosixPath(source).name


def iso(t: Any) -> str | None:
    """Epoch seconds as ISO 8601 UTC (second precision), None when not recorded."""
    if t is None or t == "":
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(t)))


def to_document(source: str, meta: Mapping[str, Any]) -> Document:
    """A catalogue record as a Document; records written before these fields existed get defaults."""
    import json

    pages = len(json.loads(meta.get("pages") or "[]")) or None
    return Document(
        source=source,
        title=str(meta.get("title") or PurePosixPath(source).name),
        type=str(meta.get("type") or doc_type(source)),
        pages=pages,
        chunks=int(meta.get("chunks", 0)),
        bytes=int(meta["bytes"]) if meta.get("bytes") is not None else None,
        added=iso(meta.get("added")),
        updated=iso(meta.get("updated", meta.get("added"))),
        digest=str(meta.get("digest", "")),
    )


def strings(value: str | os.PathLike[str] | Iterable[str]) -> list[str]:
    """Names or patterns given as one string (or path) or several: a string is one (not one per character, as a
    str is an iterable of them and no type checker says otherwise)."""
    return [str(value)] if isinstance(value, str | os.PathLike) else [str(v) for v in value]


def matches(pattern: str, source: str) -> bool:
    """Whether a path, folder or glob names this document (see the module docstring). Names compare in one
    Unicode form: "März" typed on Linux (NFC) names a file macOS saved as "Ma\u0308rz" (NFD)."""
    pattern, source = unicodedata.normalize("NFC", pattern.strip()), unicodedata.normalize("NFC", source)
    if not pattern:
        return False
    absolute = os.path.abspath(os.path.expanduser(pattern))
    if source in (pattern, absolute) or source.startswith(absolute.rstrip("/") + "/"):
        return True
    bare = "/" not in pattern
    name = PurePosixPath(source).name
    if _GLOB & set(pattern):
        return fnmatchcase(source, pattern) or fnmatchcase(source, absolute) or (bare and fnmatchcase(name, pattern))
    return bare and name == pattern


def select(patterns: Iterable[str], sources: Iterable[str]) -> tuple[list[str], list[str]]:
    """The sources the patterns name (sorted), and the patterns that name none.

    A pattern that is exactly an indexed source (or its absolute path) names only that document,
    even when it contains glob characters (a file called `notes[1].txt`).
    """
    sources = list(sources)
    indexed = set(sources)
    chosen: set[str] = set()
    unmatched: list[str] = []
    for p in patterns:
        exact = {p, os.path.abspath(os.path.expanduser(p.strip()))} & indexed if p.strip() else set()
        hits = exact or {s for s in sources if matches(p, s)}
        chosen.update(hits)
        if not hits:
            unmatched.append(p)
    return sorted(chosen), unmatched
