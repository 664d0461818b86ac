"""HTML to text as a browser lays it out: whitespace inside running text is one space, blocks are lines.

LlamaIndex's HTMLTagReader kept the source's own line breaks inside paragraphs (HTML wrapped at 72-80
columns) and separated blocks with the same single newline, so the two could not be told apart: a term
(`<dt>`) ran on into its definition, and a sentence broke where its source line did. Here blocks (a
paragraph, heading, list item, table row, term or definition) are separated by a blank line, as plain text
separates paragraphs, and a `<br>` is a single newline; a table's cells are joined with " | "; `<pre>` keeps its lines (single newlines, read
as wrapped text is); scripts, styles and the document head are left out.
"""

from __future__ import annotations

import re
from typing import Any

BLOCKS = frozenset(
    "address article aside blockquote body caption dd details dialog div dl dt fieldset figcaption figure footer "
    "form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table tbody thead tfoot tr ul".split())
SKIP = frozenset("head script style noscript template svg iframe object button select".split())
_SPACE = re.compile(r"\s+")
BREAK = "\x00"


def html_text(markup: str) -> str:
    """The text of an HTML document (its body, or the whole when it has none), block by block."""
    from bs4 import BeautifulSoup, Comment, NavigableString

    soup = BeautifulSoup(markup, "html.parser")
    root = soup.body or soup
    lines: list[str] = []
    line: list[str] = []

    def end_block() -> None:
        # A <br> is a line break inside the block (BREAK until the source's own whitespace is collapsed).
        parts = (_SPACE.sub(" ", part).strip() for part in "".join(line).split(BREAK))
        text = "\n".join(part for part in parts if part)
        if text:
            lines.append(text)
        line.clear()

    def walk(node: Any) -> None:
        for child in node.children:
            if isinstance(child, Comment):
                continue
            if isinstance(child, NavigableString):
                line.append(str(child))
                continue
            name = (child.name or "").lower()
            if name in SKIP:
                continue
            if name == "br":
                line.append(BREAK)
            elif name == "pre":
                end_block()
                pre = "\n".join(ln.rstrip() for ln in child.get_text().strip("\n").splitlines() if ln.strip())
                if pre:
                    lines.append(pre)
            elif name in ("td", "th"):
                if line and "".join(line).strip():
                    line.append(" | ")
                walk(child)
            elif name in BLOCKS:
                end_block()
                walk(child)
                end_block()
            else:
                walk(child)

    walk(root)
    end_block()
    return "\n\n".join(lines)
