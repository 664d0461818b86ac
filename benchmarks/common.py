"""Shared helpers of the benchmarks: data, timing, the machine line, the markdown row."""

from __future__ import annotations

import hashlib
import os
import resource
import shlex
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qa.reading.formats import SourceText

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("QA_DATA_DIR", ROOT.parent / "shared" / "data"))
# The embedding setups the start-up and memory benchmarks compare, as the environment that selects each:
# the default (ONNX int8 for a new index), ONNX fp32, sentence-transformers on torch.
EMBEDDINGS = {"default": {}, "fp32": {"QA_EMBED_PRECISION": "fp32"}, "torch": {"QA_EMBED_BACKEND": "torch"}}
HEADER = "| benchmark | figure | target | command | machine/load |\n|---|---|---|---|---|"


def machine() -> str:
    """Cores and the 1-minute load average right now (figures are noisy on a loaded machine)."""
    return f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"


def cpu() -> float:
    """CPU seconds of this process and of its children that have ended (a big ingest's encoder process)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def command() -> str:
    """The command line that produced the figures, to print beside them."""
    return "python -m " + " ".join(shlex.quote(a) for a in [_module(), *sys.argv[1:]])


def _module() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name.removesuffix(".__main__") if spec else Path(sys.argv[0]).stem


def row(name: str, figure: str, target: str, cmd: str | None = None) -> str:
    """One line of the results table (markdown)."""
    return f"| {name} | {figure} | {target} | `{cmd or command()}` | {machine()} |"


def texts(dataset: str, limit: int | None = None) -> list[SourceText]:
    """The first `limit` documents of a BEIR folder as SourceTexts, as `qa eval` ingests them."""
    from qa.evaluation import load_benchmark

    bench = load_benchmark(DATA / dataset)
    items = list(bench.corpus.items())[:limit] if limit else list(bench.corpus.items())
    return [SourceText(path=i, text=t, digest=hashlib.sha256(t.encode()).hexdigest()) for i, t in items]


@contextmanager
def scratch(prefix: str = "qa-bench-") -> Iterator[Path]:
    """A temporary folder, removed afterwards (never ./index or .eval-cache)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        yield Path(d)


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile, as `qa eval` computes it."""
    from qa.evaluation import percentile

    return percentile(values, p)
