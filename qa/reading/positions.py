"""Where a document's text is drawn: word boxes keyed by character offsets, and spans mapped to boxes.

A PDF's or image's extracted text comes with one run per word: `[start, end)` of the document text
and its box on a page (PDF points, origin top-left; see `qa.types.Box`). Runs are kept in text order
as numpy arrays and stored compressed (about 10 bytes a word), so a 1,000-page PDF costs a few MB.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass
from typing import Any

from ..types import Box

_FIELDS = 7  # start, end, page, x0, y0, x1, y1


@dataclass(frozen=True)
class Layout:
    """Word runs of one document: `spans` (n, 3) int32 [start, end, page], `rects` (n, 4) float32."""

    spans: Any
    rects: Any

    @classmethod
    def from_runs(cls, runs: list[tuple[int, int, int, float, float, float, float]]) -> Layout:
        """From (start, end, page, x0, y0, x1, y1) tuples in text order."""
        import numpy as np

        a = np.asarray(runs, dtype=np.float64).reshape(-1, _FIELDS)
        return cls(a[:, :3].astype(np.int32), a[:, 3:].astype(np.float32))

    def __len__(self) -> int:
        return len(self.spans)

    def shifted(self, offset: int, page: int = 0) -> Layout:
        """The same runs with text offsets (and page numbers) moved: used to join pages."""
        spans = self.spans.copy()
        spans[:, :2] += offset
        spans[:, 2] += page
        return Layout(spans, self.rects)

    @staticmethod
    def concat(parts: list[Layout]) -> Layout:
        """One layout from consecutive pieces."""
        import numpy as np

        parts = [p for p in parts if len(p)]
        if not parts:
            return Layout.from_runs([])
        return Layout(np.concatenate([p.spans for p in parts]), np.concatenate([p.rects for p in parts]))

    def boxes(self, start: int, end: int) -> tuple[Box, ...]:
        """Boxes of the words that `[start, end)` touches, merged into one box per line and page."""
        import numpy as np

        if not len(self) or end <= start:
            return ()
        # Runs are in text order and never overlap, so both ends are sorted.
        lo = int(np.searchsorted(self.spans[:, 1], start, side="right"))
        hi = int(np.searchsorted(self.spans[:, 0], end, side="left"))
        out: list[list[float]] = []
        for (_, _, page), (x0, y0, x1, y1) in zip(self.spans[lo:hi].tolist(), self.rects[lo:hi].tolist()):
            if out:
                last = out[-1]
                height = min(last[4] - last[2], y1 - y0)
                same_line = (last[0] == page and min(last[4], y1) - max(last[2], y0) > 0.5 * height
                             and -2 <= x0 - last[3] < 3 * max(height, 1))
                if same_line:
                    last[1:] = [min(last[1], x0), min(last[2], y0), max(last[3], x1), max(last[4], y1)]
                    continue
            out.append([page, x0, y0, x1, y1])
        return tuple(Box(int(b[0]), *(round(v, 1) for v in b[1:])) for b in out)

    def page_of(self, offset: int) -> int | None:
        """The page of the first word at or after `offset`."""
        import numpy as np

        i = int(np.searchsorted(self.spans[:, 1], offset, side="right"))
        return int(self.spans[i, 2]) if i < len(self) else None

    # --- storage: compressed bytes, split in base64 pieces that fit a Chroma metadata value -------
    def encode(self) -> str:
        """The runs as base64 text (zlib of the arrays)."""
        import numpy as np

        raw = np.ascontiguousarray(self.spans, dtype="<i4").tobytes() + np.ascontiguousarray(
            self.rects, dtype="<f4").tobytes()
        return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")

    @classmethod
    def decode(cls, data: str) -> Layout:
        """The inverse of `encode`."""
        import numpy as np

        raw = zlib.decompress(base64.b64decode(data))
        n = len(raw) // (4 * _FIELDS)
        spans = np.frombuffer(raw[:12 * n], dtype="<i4").reshape(n, 3)
        rects = np.frombuffer(raw[12 * n:], dtype="<f4").reshape(n, 4)
        return cls(spans, rects)


@dataclass
class Line:
    """One line of a page in reading order: its text, its words' boxes, and what joins it to the line before.

    `words` holds (start, end, x0, y0, x1, y1) with offsets into `text`; `sep` is " " when the line
    continues the sentence flow of the previous one, "\\n" when it starts a new paragraph or block.
    """

    text: str
    words: list[tuple[int, int, float, float, float, float]]
    sep: str = "\n"


SENTENCE_END = (".", "!", "?", ":", '"', "”", ")", "]")


def assemble(pages: list[list[Line]], sep: str = "\n\n") -> tuple[str, tuple[int, ...], Layout]:
    """Join pages of lines into one text with page starts and word runs.

    A page that ends mid-sentence is joined to the next with a space, so a sentence across a page
    break stays one sentence (and its citation has boxes on both pages).
    """
    parts: list[str] = []
    starts: list[int] = []
    layouts: list[Layout] = []
    pos = 0
    for number, lines in enumerate(pages, start=1):
        if pos and lines:
            join = sep if parts[-1].rstrip().endswith(SENTENCE_END) else " "
            parts.append(join)
            pos += len(join)
        starts.append(pos)
        runs = []
        for i, line in enumerate(lines):
            if i:
                parts.append(line.sep)
                pos += len(line.sep)
            runs.extend((pos + s, pos + e, number, x0, y0, x1, y1) for s, e, x0, y0, x1, y1 in line.words)
            parts.append(line.text)
            pos += len(line.text)
        layouts.append(Layout.from_runs(runs))
    return "".join(parts), tuple(starts), Layout.concat(layouts)
