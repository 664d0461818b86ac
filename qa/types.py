"""Plain frozen dataclasses returned by the public API."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import PurePath
from typing import Any

# Every ASCII punctuation mark, which CommonMark lets a backslash make literal.
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def _short(text: str, limit: int) -> str:
    """The text on one line, cut to `limit` characters with an ellipsis: for reprs."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _literal(text: str) -> str:
    """Text as Markdown that shows it as it is: a document's `<script>`, `*` or `#` is printed, never rendered."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def _name(source: str) -> str:
    return PurePath(source).name or source


@dataclass(frozen=True)
class Box:
    """A rectangle on a page, in PDF points (1/72 inch) with the origin at the page's top-left corner.

    `y` grows downwards, like the rendered image's pixels. Images count one point per pixel.
    """

    page: int  # 1-based
    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True, repr=False)
class Citation:
    """One numbered source of an answer: an exact span of a document's extracted text."""

    id: int
    source: str
    start: int
    end: int
    text: str
    score: float
    passage_start: int = 0
    passage_end: int = 0
    passage: str = ""
    location: str = ""
    verified: bool = True  # a passage supports the cited sentence (extractive: by construction)
    page: int | None = None  # PDFs and images: the 1-based page where the span starts
    boxes: tuple[Box, ...] = ()  # PDFs and images: where the span's words are drawn (one box per line)
    answer_span: tuple[int, int] | None = None  # document offsets of the answer words, when known with confidence

    def __repr__(self) -> str:
        # Short, for notebooks and logs: the passage and the word boxes are left out (hundreds of characters each).
        extra = (f", page={self.page}" if self.page is not None else "") + ("" if self.verified else ", verified=False")
        return (f"Citation(id={self.id}, source={self.source!r}, start={self.start}, end={self.end}, "
                f"text={_short(self.text, 80)!r}, score={self.score:.2f}{extra})")


@dataclass(frozen=True, repr=False)
class Passage:
    """A retrieved chunk: what the answer composer and the UI work from."""

    source: str
    start: int
    end: int
    text: str
    score: float
    location: str = ""

    def __repr__(self) -> str:
        # Short, for notebooks and logs: a chunk is up to a thousand characters.
        where = f", location={self.location!r}" if self.location else ""
        return (f"Passage(source={self.source!r}, start={self.start}, end={self.end}, "
                f"text={_short(self.text, 80)!r}, score={self.score:.2f}{where})")


@dataclass(frozen=True, repr=False)
class Answer:
    """The reply to one question, with the citations its markers point at."""

    question: str
    answer: str
    answered: bool
    citations: tuple[Citation, ...] = ()
    related: tuple[Passage, ...] = ()
    backend: str = "extractive"
    seconds: float = 0.0
    # Of the sentences the backend wrote (generative: including dropped ones), how many a passage supports.
    verified_sentences: int = 0
    total_sentences: int = 0

    def __repr__(self) -> str:
        # Short, for notebooks and logs: the full repr held every citation's passage and every related passage (~6 KB).
        sources = list(dict.fromkeys(_name(c.source) for c in self.citations))
        cited = f"{len(self.citations)} from {', '.join(sources)}" if sources else "0"
        return (f"Answer(question={_short(self.question, 80)!r}, answer={_short(self.answer, 120)!r}, "
                f"answered={self.answered}, citations={cited})")

    def _repr_markdown_(self) -> str:
        """How Jupyter shows an answer: the question, the answer, then each citation's source and exact text."""
        lines = [f"**{_literal(' '.join(self.question.split()))}**", "", _literal(self.answer)]
        for c in self.citations:
            where = ", ".join([_name(c.source), *([c.location] if c.location else []),
                               f"chars {c.start}-{c.end}", *([] if c.verified else ["not verified"])])
            lines += ["", f"**\\[{c.id}\\]** {_literal(where)}", ""]
            lines += [f"> {_literal(line)}" if line.strip() else ">" for line in c.text.split("\n")]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape printed by `qa ask --json`."""
        return {
            "question": self.question,
            "answer": self.answer,
            "answered": self.answered,
            "citations": [
                {k: c[k] for k in ("id", "source", "start", "end", "text", "score", "verified", "page", "boxes")
                 if k not in ("page", "boxes") or c[k]}
                | ({"answer_span": list(c["answer_span"])} if c["answer_span"] else {})
                for c in (asdict(c) for c in self.citations)
            ],
            "verified_sentences": self.verified_sentences,
            "total_sentences": self.total_sentences,
        }


@dataclass(frozen=True)
class FileResult:
    """What ingest did with one file."""

    path: str
    status: str  # added | updated | unchanged | removed | failed
    chunks: int = 0
    reason: str = ""


@dataclass(frozen=True, repr=False)
class IngestReport:
    """Summary of one ingest run."""

    files: tuple[FileResult, ...] = field(default_factory=tuple)
    chunks_total: int = 0
    seconds: float = 0.0

    def count(self, status: str) -> int:
        """How many files ended with this status."""
        return sum(1 for f in self.files if f.status == status)

    @property
    def chunks_embedded(self) -> int:
        """Chunks embedded in this run (0 when nothing changed)."""
        return sum(f.chunks for f in self.files if f.status in ("added", "updated"))

    def __repr__(self) -> str:
        # Short: an ingest of a folder holds one FileResult per file.
        failed = [_name(f.path) for f in self.files if f.status == "failed"]
        more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        return f"IngestReport({self.summary()}{'; failed: ' + ', '.join(failed[:3]) + more if failed else ''})"

    def summary(self) -> str:
        """The one-line summary the CLI prints."""
        parts = [f"{self.count(s)} {s}" for s in ("added", "updated", "unchanged", "removed", "failed")]
        return (
            f"{', '.join(parts)}; {self.chunks_embedded} chunks embedded, "
            f"{self.chunks_total} in index; {self.seconds:.1f}s"
        )


@dataclass(frozen=True)
class Status:
    """What `qa status` shows."""

    index_dir: str
    documents: int
    chunks: int
    embed_model: str
    size_bytes: int
    backend: str
    chroma_url: str | None = None


@dataclass(frozen=True)
class Check:
    """The result of one index health check (`qa status --check`)."""

    name: str
    ok: bool
    detail: str
    fix: str = ""  # for a failure that is not damage (a full disk, a stale copy): what to do instead of a rebuild


@dataclass(frozen=True)
class RebuildReport:
    """What `qa ingest --rebuild` did: where the old index went, and the ingest of its sources."""

    moved_to: str | None
    report: IngestReport
    missing: tuple[str, ...] = ()  # catalogued sources that no longer exist (nothing to rebuild them from)
    sources_from: str = "catalogue"  # "catalogue", or "paths" when the damaged catalogue was unreadable


@dataclass(frozen=True)
class Document:
    """One indexed document, as `qa docs` lists it; times are ISO 8601 UTC, None when not recorded."""

    source: str
    title: str = ""
    type: str = ""
    pages: int | None = None  # PDFs only
    chunks: int = 0
    bytes: int | None = None
    added: str | None = None
    updated: str | None = None
    digest: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of `qa docs --json` and `GET /v1/documents` (one object per document)."""
        return {**asdict(self), "name": self.source.rsplit("/", 1)[-1]}  # the file name, for lists


@dataclass(frozen=True)
class RemoveReport:
    """What `Assistant.remove` took out of the index."""

    removed: tuple[str, ...] = ()
    chunks: int = 0
    uploads_deleted: tuple[str, ...] = ()  # uploaded copies under <index>/uploads/ that were deleted

    def summary(self) -> str:
        """The one-line summary the CLI prints."""
        n = len(self.removed)
        return f"removed {n} document{'s' * (n != 1)} ({self.chunks} chunk{'s' * (self.chunks != 1)})"
