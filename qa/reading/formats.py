"""Reading files into text and splitting that text into chunks with exact character offsets."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ocr import IMAGE_SUFFIXES

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".rst", ".pdf", ".html", ".htm", ".docx", *IMAGE_SUFFIXES)
PAGE_SEP = "\n\n"
# A .docx is a zip whose text parts are read whole and parsed into a tree, about 15 times their unpacked size in
# memory: a 300 KB file unpacking to 100 MB of XML took 1.5 GB, so a zip bomb of a few MB took the server down.
MAX_DOCX_XML_BYTES = 32_000_000  # a thousand pages of text are a few MB of it


@dataclass(frozen=True)
class SourceText:
    """A file's extracted text, with the character offset where each page starts (PDFs)."""

    path: str
    text: str
    digest: str
    pages: tuple[int, ...] = ()
    layout: Any = None  # PDFs and images: a `qa.reading.positions.Layout` mapping text offsets to word boxes


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: `document_text[start:end] == text`."""

    source: str
    index: int
    start: int
    end: int
    text: str
    # Its word pieces as the embedding model tokenizes it, when taken from the splitter's tokenization of the
    # document (qa.embedding.TokenCounter.keep), else None.
    token_ids: list[int] | None = field(default=None, compare=False, repr=False)


class UnreadableFile(Exception):
    """A file that cannot be read, with a reason fit for one line."""


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks so big files stay cheap in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def discover(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Supported files under the given files and folders, and the paths skipped with a reason."""
    found: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for root in paths:
        if _foreign(root, skipped) or _real(root, skipped) is None:
            continue
        candidates = iter([root]) if not root.is_dir() else _walk(root, skipped)
        for p in candidates:
            if p is not root and _foreign(p, skipped):
                continue
            real = _real(p, skipped)
            if real is None or real in seen:
                continue
            seen.add(real)
            if not real.is_file() and not real.is_dir():  # reading a pipe or a device would never end
                skipped.append((p, "not a regular file (a pipe, socket or device); skipped"))
                continue
            if p.suffix.lower() in SUPPORTED_SUFFIXES:
                found.append(Path(os.path.abspath(p)))  # "a/../a/x.txt" is the document "a/x.txt"
            elif root.is_file():
                skipped.append((p, f"unsupported file type {p.suffix or '(none)'}; "
                                   f"supported: {', '.join(SUPPORTED_SUFFIXES)}"))
    return sorted(found), skipped


def link_maker(path: Path) -> int | None:
    """The user id that made `path` if it is a symbolic link another user made (not the one qa runs as, nor
    root), else None. Such a link is not followed: one put in a folder others may write to (a shared folder
    `qa serve --watch` follows) would have qa read, index and quote any file qa may read and its maker may not."""
    try:
        st = path.lstat()
    except OSError:
        return None
    return st.st_uid if stat.S_ISLNK(st.st_mode) and st.st_uid not in (os.geteuid(), 0) else None


def _foreign(path: Path, skipped: list[tuple[Path, str]]) -> bool:
    """Whether `path` is another user's symbolic link (see `link_maker`), added to `skipped` if so."""
    uid = link_maker(path)
    if uid is not None:
        skipped.append((path, f"a symbolic link made by another user (uid {uid}); qa follows only links of the "
                              "user it runs as (or root), so that a link cannot make it read someone else's file"))
    return uid is not None


def _real(path: Path, skipped: list[tuple[Path, str]]) -> Path | None:
    """The path with its links resolved; None, with the reason added to `skipped`, if it leads nowhere."""
    try:
        return path.resolve(strict=True)
    except RuntimeError:  # Python 3.11 reports a symlink loop this way
        reason = "symlink loop; fix or remove the link"
    except OSError as e:
        if e.errno == errno.ELOOP:
            reason = "symlink loop; fix or remove the link"
        elif path.is_symlink():
            reason = f"broken symlink to {os.readlink(path)}; fix or remove the link"
        else:
            reason = "no such file or folder" if isinstance(e, FileNotFoundError) else f"cannot read: {e.strerror}"
    skipped.append((path, reason))
    return None


def _walk(root: Path, skipped: list[tuple[Path, str]]) -> Iterator[Path]:
    # Symlinked folders are followed (people link folders into their docs), each real folder once,
    # so a link back to a parent is reported as a loop instead of walked forever.
    visited = {root.resolve()}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=lambda e: skipped.append(
            (Path(e.filename or root), f"cannot list folder: {e.strerror}"))):
        keep = []
        here = Path(dirpath).resolve()
        # Real folders before links, so a file is listed under its real path when both lead to it.
        for d in sorted(dirnames, key=lambda d: ((Path(dirpath) / d).is_symlink(), d)):
            sub = Path(dirpath) / d
            if d.startswith(".") or _foreign(sub, skipped):
                continue
            real = _real(sub, skipped)
            if real is None:
                continue
            if real in visited:
                if real == here or real in here.parents:
                    skipped.append((sub, f"symlink loop (back to {real}); skipped"))
                continue  # another link to a folder already walked
            visited.add(real)
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def read_text_file(path: Path) -> str:
    """Decode a text file: UTF-8 (with or without BOM; a stray invalid byte becomes U+FFFD), UTF-16 (with BOM,
    or detected), else Windows-1252 (Latin-1), or the legacy encoding detected where Windows-1252 would read
    another script as accented Latin letters (Cyrillic, Greek, Arabic, Hebrew, Chinese, Japanese, Korean:
    cp1251, Shift-JIS, GBK, ...) or garble Central European or Turkish letters (cp1250, cp1254); refuse binary."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16")
    elif b"\x00" in data[:8192]:
        text = _detected(data, wide=True)
        if text is None:
            raise UnreadableFile("looks binary (NUL bytes), not text; remove it or give it the right extension")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            lenient = data.decode("utf-8-sig", errors="replace")
            # UTF-8 around a stray byte (a Latin-1 paste) stays UTF-8: decoding the whole file as cp1252
            # would garble every accent ("RenÃ©"). A file with more bad bytes than UTF-8 letters is legacy.
            letters = sum(1 for c in lenient if ord(c) > 127 and c != "\ufffd")
            text = lenient if letters >= lenient.count("\ufffd") else _legacy(data)
    head = text[:65536]
    junk = sum(1 for c in head if c == "\ufffd" or (ord(c) < 32 and c not in "\t\n\r\f\v") or 127 <= ord(c) < 160)
    if junk >= 8 and junk > 0.05 * len(head):  # random bytes without a NUL: a tenth of them are controls
        raise UnreadableFile(f"looks binary ({junk / len(head):.0%} control or undecodable characters), not text; "
                             "remove it or give it the right extension")
    # Same newline handling as Python's text mode, so offsets match `open(path).read()`.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _legacy(data: bytes) -> str:
    """A file in an 8-bit or East Asian legacy encoding. Western European text (the common case) is
    Windows-1252: few of its letters are beyond ASCII, and detecting so short a sample would often
    guess another Latin code page ("crčme"). When most letters would come out beyond ASCII, the text is
    in another script, and charset-normalizer names its encoding."""
    text = data.decode("cp1252", errors="replace")
    letters = [c for c in text[:65536] if c.isalpha()]
    if letters and sum(ord(c) > 127 for c in letters) > 0.3 * len(letters):
        return _detected(data) or text
    page = _latin_page(text[:65536])
    return text if page == "cp1252" else data.decode(page, errors="replace")


# Central European (Windows-1250) and Turkish (Windows-1254) text read as Windows-1252 leaves tells that
# Western European text never has: a symbol inside a word ("zosta³" for "został", "mo¿e" for "może", an
# undefined byte for "ť"; French "œ" is a letter), "ì" inside a word ("mìsto" for "město"), "ø" inside a word of a text with "ý" or
# "ì" (Czech "tøi" for "tři"; Danish has no "ý"), "õ"/"û" beside "ö"/"ü" (Hungarian "ő"/"ű"; Portuguese has
# no "ö"), "ð" beside "è" or "æ" (Croatian "đ", "č", "ć"); and "ý", "þ", "ð" for Turkish "ı", "ş", "ğ". Icelandic
# writes "ý", "þ", "ð" and "æ" too, and is full of the acute vowels that neither Turkish nor Croatian has.
_SYMBOL = "[¹³¿£¥¼¾ºŸ¦\ufffd]"
# Between letters ("g³owa"), or ending a word of four letters or more ("zosta³"; not "m³" or "Ser³").
# Starting one ("¾udia" for "ľudia"; not Spanish "¿qué"), and "è" starting one ("èudovito" for "čudovito": French
# and Italian "è" ends words or stands alone).
_IN_WORD_SYMBOL = re.compile(rf"(?<=[^\W\d_]){_SYMBOL}(?=[^\W\d_])|(?<=[^\W\d_]{{4}}){_SYMBOL}"
                             rf"|(?<![^\W\d_])(?:[¹³£¥¼¾ºŸ¦]|è)(?=[^\W\d_])")
_IN_WORD_I = re.compile(r"(?<=[^\W\d_])ì(?=[^\W\d_])")
_IN_WORD_O = re.compile(r"(?<=[^\W\d_])ø(?=[^\W\d_])")


def _latin_page(text: str) -> str:
    """The Windows code page of Latin text that decoded as Windows-1252: cp1252, cp1250 or cp1254."""
    central = len(_IN_WORD_SYMBOL.findall(text)) + len(_IN_WORD_I.findall(text))
    if _IN_WORD_O.search(text) and ("ý" in text or "ì" in text):
        central += 1
    if ("õ" in text or "û" in text) and ("ö" in text or "ü" in text):
        central += 1
    turkish = sum(text.count(c) for c in "ýþðÝÞÐ")
    acute = sum(text.count(c) for c in "áéíóúÁÉÍÓÚ")
    if ("ð" in text or "Ð" in text) and any(c in text for c in "èæÈÆ") and acute * 10 <= turkish:
        central += 1
    # Turkish writes "ı" in nearly every word: a few "ð" in one Old Norse name ("Norðmaðr") are not Turkish.
    letters = sum(c.isalpha() for c in text)
    if turkish >= 3 and turkish >= 0.01 * letters and acute * 10 <= turkish and not central:
        return "cp1254"
    return "cp1250" if central else "cp1252"


def _detected(data: bytes, wide: bool = False) -> str | None:
    """The text as charset-normalizer decodes it (only UTF-16 or UTF-32, if `wide`), or None."""
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None or (wide and not best.encoding.startswith(("utf_16", "utf_32"))):
        return None
    return str(best)


def _load_with_llamaindex(path: Path) -> list[Any]:
    """Rich formats through LlamaIndex's file readers (PDFs and images: `qa.reading.pdf`, `qa.reading.ocr`)."""
    suffix = path.suffix.lower()
    if suffix == ".docx":
        check_docx(path)
        from llama_index.readers.file import DocxReader

        return DocxReader().load_data(path)
    if suffix in (".html", ".htm"):
        from llama_index.core import Document

        from .html import html_text

        return [Document(text=html_text(read_text_file(path)))]
    raise UnreadableFile(f"unsupported file type {suffix}")


def check_docx(path: Path) -> None:
    """Raise UnreadableFile if the parts of a .docx that are read (document, headers, footers, as docx2txt names
    them) unpack to more than MAX_DOCX_XML_BYTES. The sizes are the zip's own; Python's zipfile reads no more."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        size = sum(i.file_size for i in z.infolist()
                   if i.filename == "word/document.xml" or re.match(r"word/(header|footer)[0-9]*.xml", i.filename))
    if size > MAX_DOCX_XML_BYTES:
        raise UnreadableFile(f"its text unpacks to {size / 1e6:,.0f} MB of XML, more than qa reads from a .docx "
                             f"({MAX_DOCX_XML_BYTES / 1e6:g} MB); split it, or save it as PDF or text")


def load(path: Path, digest: str | None = None, progress: Callable[[float], None] | None = None) -> SourceText:
    """Extract a file's text; raises UnreadableFile with a one-line reason.

    `progress` is told the fraction of a PDF's or image's pages read (OCR is slow: one call per page).
    """
    layout = None
    try:
        if path.stat().st_size == 0:
            raise UnreadableFile("empty file (0 bytes); nothing to index")
        digest = digest or file_digest(path)
        suffix = path.suffix.lower()
        if suffix == ".pdf":
            from .pdf import read_pdf

            text, page_starts, layout, _ = read_pdf(path, progress)
        elif suffix in IMAGE_SUFFIXES:
            from .ocr import read_image

            text, page_starts, layout = read_image(path, progress)
        elif suffix in (".docx", ".html", ".htm"):
            docs = _load_with_llamaindex(path)
            pages, parts, pos = [], [], 0
            for d in docs:
                pages.append(pos)
                parts.append(d.text)
                pos += len(d.text) + len(PAGE_SEP)
            text = PAGE_SEP.join(parts)
            page_starts = tuple(pages) if path.suffix.lower() == ".pdf" else ()
        else:
            text, page_starts = read_text_file(path), ()
    except UnreadableFile:
        raise
    except PermissionError:
        raise UnreadableFile("permission denied; make it readable (chmod +r) or remove it") from None
    except Exception as e:  # readers raise anything from struct errors to KeyError on bad files
        last = getattr(e, "last_attempt", None)  # LlamaIndex's PDF reader retries via tenacity
        if last is not None and last.exception() is not None:
            e = last.exception()
        first = (str(e).splitlines() or [""])[0][:200]
        raise UnreadableFile(f"cannot parse {path.suffix} file ({type(e).__name__}: {first})") from None
    if not text.strip():
        raise UnreadableFile("no text could be extracted (empty file, or OCR found no words)")
    return SourceText(path=str(path), text=text, digest=digest, pages=page_starts, layout=layout)


# Part of the evaluation cache's key (qa/evaluation.py): its chunks are made again by a new splitter. An index
# keeps the chunks it has; a changed file is chunked by the splitter of the day.
SPLITTER = "qa-sentences-1"


def make_splitter(chunk_size: int, chunk_overlap: int, tokenizer: Callable[[str], list[Any]]) -> Any:
    """A sentence-aware LlamaIndex splitter that counts tokens with the embedding model's tokenizer.

    Its sentences are the ones answers quote (`qa.answering.sentence_cuts`: abbreviations, reference marks,
    wrapped lines, other scripts' stops) rather than LlamaIndex's default, nltk's English Punkt model, whose
    import cost an ingest 1.5 s and 115 MB (it pulls in scikit-learn, SciPy and pandas) and which ran
    Chinese and Japanese sentences together.
    """
    from llama_index.core.node_parser import SentenceSplitter

    from ..answering import sentence_cuts

    pieces = getattr(tokenizer, "pieces", None)  # qa.embedding.TokenCounter: counts them all at once

    def sentences(text: str) -> list[str]:
        cuts = sentence_cuts(text)
        if pieces is not None:
            pieces(text, cuts)
        return [text[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]

    return SentenceSplitter(
        chunk_size=chunk_size,
        chunk_overlap=min(chunk_overlap, chunk_size // 2),
        tokenizer=tokenizer,
        chunking_tokenizer_fn=sentences,
        include_metadata=False,
        include_prev_next_rel=False,
    )


WINDOW_CHARS = 1 << 16  # text handed to the splitter at a time: memory stays flat for any file size
_CUTS = ("\n\n", "\n", ". ", " ")  # where a window may end, best first


def _window_end(text: str, start: int, size: int) -> int:
    """Where the window starting at `start` ends: at a paragraph, line, sentence or word break."""
    limit = start + size
    if limit >= len(text):
        return len(text)
    for sep in _CUTS:
        cut = text.rfind(sep, start + size // 2, limit)
        if cut >= 0:
            return cut + len(sep)
    return limit  # one huge token (a base64 blob, a minified line): cut it anyway


def iter_chunks(source: SourceText, splitter: Any, window: int = WINDOW_CHARS) -> Iterator[Chunk]:
    """Chunks of a document, split a window at a time; offsets index its text exactly."""
    text, index, pos = source.text, 0, 0
    counter = getattr(splitter, "_tokenizer", None)  # qa.embedding.TokenCounter, in qa's splitter
    keep = getattr(counter, "keep", None)
    while pos < len(text):
        end = _window_end(text, pos, window)
        part, search_from = text[pos:end], 0
        if keep is not None:
            keep(part)
        # The splitter's own texts, placed the way its get_nodes_from_documents places them (each found
        # after the start of the one before), without building a Document and nodes around them: that
        # cost 20% of splitting.
        for piece in splitter.split_text(part):
            start = part.find(piece, search_from)
            if start < 0:
                continue  # never store a chunk we cannot point back into the document with
            ids = counter.span(part, start, start + len(piece)) if keep is not None else None
            yield Chunk(source.path, index, pos + start, pos + start + len(piece), piece, ids)
            index += 1
            search_from = start + 1
        pos = end
    if keep is not None:
        keep(None)


def split(source: SourceText, splitter: Any) -> list[Chunk]:
    """All chunks of a document (see `iter_chunks`)."""
    return list(iter_chunks(source, splitter))


def location(source: SourceText | tuple[int, ...], offset: int) -> str:
    """Human location of an offset: 'page N' for PDFs, else ''."""
    pages = source.pages if isinstance(source, SourceText) else source
    if not pages:
        return ""
    n = sum(1 for p in pages if p <= offset)
    return f"page {max(n, 1)}"
