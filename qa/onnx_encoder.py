"""The exported embedding model on ONNX Runtime, with nothing of LlamaIndex around it.

`qa.onnx_embedding.OnnxEmbedding` (the LlamaIndex embedding the rest of qa uses) runs it, and so does
the encoder process of a big ingest (`qa.ingest`), whose start-up imports only numpy, tokenizers and
ONNX Runtime. As the sentence-transformers config says: word pieces truncated at the model's
max_seq_length, mean pooling over the attention mask, L2 normalization.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from bisect import bisect_left
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TOKENS_PER_BATCH = 512  # word pieces in one model run (2 chunks of 256): fastest and smallest, benchmarks/README.md
RUN_COST = 7  # a model run's own cost, in word pieces' time (int8 MiniLM, one thread: 0.7 ms, 0.1 ms a piece)
LENGTH_COST = 400  # a word piece in a text of n costs (1 + n / LENGTH_COST) (attention grows with length)
_local = threading.local()  # `single_thread` flag set by qa.embedding.one_thread()


@contextmanager
def single_thread() -> Iterator[None]:
    """Encode on one thread in this block (see qa.embedding.one_thread)."""
    before = getattr(_local, "single", False)
    _local.single = True
    try:
        yield
    finally:
        _local.single = before


def cores() -> int:
    """CPUs this process may run on (a container or `taskset` may allow fewer than the machine has)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


class OnnxEncoder:
    """Tokenizer and ONNX Runtime sessions of one exported model folder (see qa.onnx_embedding.export_dir)."""

    def __init__(self, folder: Path, batch_size: int = 64) -> None:
        from tokenizers import Tokenizer

        meta = json.loads((folder / "qa-export.json").read_text())
        self.folder = Path(folder)
        self.model = str(meta["model"])
        self.max_length = int(meta["max_seq_length"])
        self.batch_size = batch_size
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._inputs: set[str] = set()
        self._dim: int | None = None  # the vectors' size, known after the first run
        self._counter = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._counter.no_truncation()
        self._counter.no_padding()
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(self.max_length)
        self._tokenizer.no_padding()  # each batch is padded to its own longest text in encode()
        self._pad_id = self._tokenizer.token_to_id(meta.get("pad_token", "[PAD]")) or 0
        self._wrap = self._special_tokens()

    def _special_tokens(self) -> tuple[list[int], list[int], int] | None:
        """(ids before, ids after, most word pieces kept) that the tokenizer puts around a text's word pieces,
        if it does just that (BERT's [CLS] ... [SEP], truncated on the right): then the word pieces of a
        chunk already tokenized for splitting need not be tokenized again (see `encode`). None otherwise."""
        trunc = self._tokenizer.truncation or {}
        if trunc.get("direction", "right") != "right" or trunc.get("stride", 0):
            return None
        probe = "qa probe, two words"
        inner = self._counter.encode(probe, add_special_tokens=False).ids
        full = self._tokenizer.encode(probe).ids
        for at in range(len(full) - len(inner) + 1):
            if full[at:at + len(inner)] == inner:
                before, after = full[:at], full[at + len(inner):]
                if self._tokenizer.encode("").ids != before + after:
                    return None
                return before, after, self.max_length - len(before) - len(after)
        return None

    def count_tokens(self, text: str) -> int:
        """Word pieces of a text, without special tokens or truncation (for chunk sizing)."""
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def token_starts(self, text: str) -> list[int]:
        """Where each word piece of a text starts (its count is count_tokens'): see qa.embedding.TokenCounter."""
        return [a for a, _ in self._counter.encode(text, add_special_tokens=False).offsets]

    def tokens(self, text: str) -> Tokens | None:
        """A text's word pieces with where each starts and ends and the word it belongs to, for taking a
        chunk's word pieces from its document's (`Tokens.span`); None if `encode` could not use them."""
        if self._wrap is None:
            return None
        enc = self._counter.encode(text, add_special_tokens=False)
        return Tokens(enc.ids, [a for a, _ in enc.offsets], [b for _, b in enc.offsets], enc.word_ids)

    def _session(self, threads: int) -> Any:
        with self._lock:
            if threads not in self._sessions:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
                # Spinning threads burn a shared machine's CPU between the small ops of a short input.
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                # The arena keeps the largest batch's activations for the life of the process (hundreds
                # of MB during an ingest of long chunks); freed after each run, memory stays flat.
                opts.enable_cpu_mem_arena = False
                s = ort.InferenceSession(str(self.folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])
                self._inputs = {i.name for i in s.get_inputs()}
                self._sessions[threads] = s
            return self._sessions[threads]

    def encode(self, texts: list[str], batch_size: int | None = None, pieces: list[Any] | None = None) -> Any:
        """Normalized float32 vectors of texts, in order. `pieces`, if given, holds for each text its word pieces
        (`Tokens.span` of the document it was cut from) or None: those texts are not tokenized again.
        Batches hold texts of similar length (no padding
        wasted) and at most TOKENS_PER_BATCH word pieces: attention's memory grows with batch x length^2,
        and 64 chunks of 256 pieces took 1.3 GB while encoding half as fast as 2 at a time.

        Several batches run side by side, one per core, each on one thread of a one-thread session (ONNX
        Runtime releases the interpreter lock while it runs). That kept 2 cores 1.95 busy where one
        batch at a time on 2 threads kept them 1.73 busy (it waits for its slower thread at every op):
        657 chunks encoded in 4.0 s instead of 4.5-4.7 s (benchmarks/README.md).
        """
        import numpy as np

        single = len(texts) == 1 or getattr(_local, "single", False)
        size = batch_size or self.batch_size
        rows = self._rows(texts, pieces)
        batches = _batches([len(r) for r in rows], size)
        out: list[Any] = [None if self._dim is None else np.zeros((len(texts), self._dim), dtype=np.float32)]

        def run(session: Any, idx: list[int]) -> None:
            longest = max(len(rows[idx[0]]), 1)
            ids = np.full((len(idx), longest), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), longest), dtype=np.int64)
            for row, i in enumerate(idx):
                ids[row, :len(rows[i])] = rows[i]
                mask[row, :len(rows[i])] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = session.run(None, feed)[0]
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            if out[0] is None:
                out[0] = np.zeros((len(texts), pooled.shape[1]), dtype=np.float32)
                self._dim = pooled.shape[1]
            out[0][idx] = pooled

        workers = 1 if single else min(cores(), len(batches))
        session = self._session(1 if single or workers > 1 else cores())
        if workers <= 1:
            for idx in batches:
                run(session, idx)
        else:
            rest = iter(batches)
            if out[0] is None:  # the model's first run sizes the output; after it, no core waits for one
                run(session, next(rest))
            lock = threading.Lock()
            failed: list[BaseException] = []

            def work() -> None:
                while not failed:
                    with lock:
                        idx = next(rest, None)
                    if idx is None:
                        return
                    try:
                        run(session, idx)
                    except BaseException as e:  # noqa: BLE001 - raised in the caller's thread below
                        failed.append(e)

            threads = [threading.Thread(target=work, name="qa-encode", daemon=True) for _ in range(workers - 1)]
            for t in threads:
                t.start()
            work()  # this thread is one of the workers
            for t in threads:
                t.join()
            if failed:
                raise failed[0]
        return out[0] if out[0] is not None else np.zeros((0, 0), dtype=np.float32)

    def _rows(self, texts: list[str], pieces: list[Any] | None) -> list[Any]:
        """Each text's model input ids: its given word pieces wrapped in the special tokens, else tokenized."""
        rows: list[Any] = [None] * len(texts)
        if pieces is not None and self._wrap is not None:
            before, after, keep = self._wrap
            for i, p in enumerate(pieces):
                if p is not None:
                    rows[i] = [*before, *p[:keep], *after]
        todo = [i for i, r in enumerate(rows) if r is None]
        if todo:
            for i, enc in zip(todo, self._tokenizer.encode_batch([texts[i] for i in todo])):
                rows[i] = enc.ids
        return rows


def _batches(lengths: list[int], size: int) -> list[list[int]]:
    """Indexes of texts in batches of at most `size` texts and TOKENS_PER_BATCH word pieces (a longer text
    runs alone), the first of each its longest.

    Texts are sorted by length and cut where the padding saved is worth a model run more (each costs
    about RUN_COST word pieces' time): filling each batch to the limit padded squad-dev's chunks 1.2%
    (rounds of 256, as an ingest sends them) or 3.4% (rounds of 64), this 0.3% and 0.6%. A batch costs
    its padded word pieces, each a little more in a longer text (attention, `LENGTH_COST`).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    longest = [max(lengths[i], 1) for i in order]
    # best[j]: the least cost of the first j texts; cut[j]: where the last batch of that starts
    best = [0.0] + [float("inf")] * len(order)
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        for i in range(j - 1, max(j - size, 0) - 1, -1):
            n, top = j - i, longest[i]
            if n > 1 and n * top > TOKENS_PER_BATCH:
                break
            cost = best[i] + n * top * (1 + top / LENGTH_COST) + RUN_COST
            if cost < best[j]:
                best[j], cut[j] = cost, i
    batches: list[list[int]] = []
    j = len(order)
    while j > 0:
        batches.append(order[cut[j]:j])
        j = cut[j]
    return batches[::-1]


class Tokens:
    """A text's word pieces (ids), the offsets where each starts and ends, and the index of the word (as the
    tokenizer's pre-tokenizer splits at spaces and punctuation) each belongs to."""

    __slots__ = ("ids", "starts", "ends", "words")

    def __init__(self, ids: list[int], starts: list[int], ends: list[int], words: list[int | None]) -> None:
        self.ids, self.starts, self.ends, self.words = ids, starts, ends, words

    def span(self, a: int, b: int) -> list[int] | None:
        """The word pieces of text[a:b], the same as tokenizing it alone, if a and b fall between words;
        else None. The tokenizer's normalizing is character by character and its word pieces never cross a
        word, so a span cut between words is tokenized as it is inside the text; a cut inside a word (a
        character split of a giant word) could be tokenized otherwise."""
        starts, ends, words = self.starts, self.ends, self.words
        i, j = bisect_left(starts, a), bisect_left(starts, b)
        n = len(starts)
        if i > 0 and ends[i - 1] > a or j > 0 and ends[j - 1] > b:
            return None  # a word piece crosses a cut
        if 0 < i < n and words[i] == words[i - 1] or 0 < j < n and words[j] == words[j - 1]:
            return None  # a cut falls inside a word
        return self.ids[i:j]


# --- the encoder process of a big ingest ----------------------------------------------------------------
# While the model encodes one round of chunks in a child process, the ingest splits the next round and
# writes the one before. Threads cannot do this: splitting and Chroma's writes hold the interpreter lock,
# and the model's thread waits for it between runs, so on 2 cores a thread pipeline was no faster.
# The child is `python -m qa.onnx_encoder FOLDER`: multiprocessing's spawn would run the parent's main
# script again in it, which breaks any script that calls qa without an `if __name__ == "__main__"` guard.
# Requests and answers are pickled frames on its stdin and stdout, answered in order.


def _send(stream: Any, obj: Any) -> None:
    import pickle
    import struct

    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _receive(stream: Any) -> Any:
    import pickle
    import struct

    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("the encoder process closed its output")
    (n,) = struct.unpack("<Q", head)
    data = stream.read(n)
    if len(data) < n:
        raise EOFError("the encoder process closed its output")
    return pickle.loads(data)


class EncoderProcess:
    """An OnnxEncoder in a child process: `submit` texts, then `result` their vectors, in the same order."""

    def __init__(self, folder: Path, batch_size: int = 64) -> None:
        import queue
        import subprocess

        here = str(Path(__file__).resolve().parent.parent)  # this qa, whatever the parent's path or folder
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
        # numpy's OpenBLAS starts a thread per core at import (0.05-0.1 CPU-s of the child's 0.4 s start-up,
        # taken from the encoding on a busy machine); the child's numpy only pools and normalizes, no BLAS.
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        self._child = subprocess.Popen(
            [sys.executable, "-m", "qa.onnx_encoder", str(folder), str(batch_size)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        # Requests go out on a thread of their own: a round larger than the pipe's buffer must not block
        # this one while the child, busy with the round before, is not reading.
        self._outbox: queue.Queue[tuple[list[str], list[Any] | None] | None] = queue.Queue()
        self._sender = threading.Thread(target=self._send_all, name="qa-encoder-requests", daemon=True)
        self._sender.start()

    def _send_all(self) -> None:
        try:
            while (request := self._outbox.get()) is not None:
                _send(self._child.stdin, request)
        except (BrokenPipeError, OSError, ValueError):
            pass  # the child is gone: `result` says so

    def submit(self, texts: list[str], pieces: list[Any] | None = None) -> None:
        """Queue texts to encode (with their word pieces where known, see OnnxEncoder.encode); their vectors
        come from the matching `result` call."""
        self._outbox.put((texts, pieces))

    def result(self) -> Any:
        """The vectors of the oldest submitted texts not yet returned (raises EOFError if the child died)."""
        answer = _receive(self._child.stdout)
        if isinstance(answer, str):
            raise RuntimeError(f"the encoder process failed: {answer}")
        return answer

    def close(self) -> None:
        """Stop the child (a round still encoding is abandoned)."""
        self._outbox.put(None)
        if self._child.poll() is None:
            self._child.kill()
        self._child.wait()
        for stream in (self._child.stdin, self._child.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._sender.join(timeout=5)


def _serve(folder: str, batch_size: int) -> None:
    """The child's loop: encode each request from stdin, answer on stdout, until stdin closes."""
    encoder = OnnxEncoder(Path(folder), batch_size)
    encoder.encode(["warm up"] * 2, batch_size=1)  # two runs side by side, on the session rounds use
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            texts, pieces = _receive(stdin)
        except EOFError:
            return
        try:
            answer = encoder.encode(texts, pieces=pieces)
        except Exception as e:  # noqa: BLE001 - reported to the parent, which encodes the round itself
            answer = f"{type(e).__name__}: {e}"
        _send(stdout, answer)


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
