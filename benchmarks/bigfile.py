"""Peak memory and speed of `qa ingest` on one big text file, at growing sizes: memory must stay flat.

    python -m benchmarks bigfile [--mb 1 4 8] [--repeated 50]

Each size is one .txt file of real, unique prose (scifact-train and squad-dev documents, in order,
as paragraphs), ingested by a `qa ingest` child process into a new index; its peak RSS is the
`ru_maxrss` that `os.wait4` returns. `--repeated N` adds an N MB file of one paragraph repeated, the
shape of the 50 MB file in `tests/test_bad_input.py`: its chunks embed as one (ingest remembers the
vectors of repeated chunk texts), so it measures reading, splitting, writing and committing alone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from .common import row, scratch, texts
from .memory import peak_mb


def _unique_prose(mb: float) -> str:
    out, size = [], 0
    for dataset in ("scifact-train", "squad-dev"):
        for d in texts(dataset):
            out.append(" ".join(d.text.split()))
            size += len(out[-1]) + 2
            if size >= mb * 1e6:
                return "\n\n".join(out)
    raise SystemExit(f"only {size / 1e6:.1f} MB of unique prose in the two datasets; ask for less")


def _ingest(folder: Path, index: Path) -> tuple[float, float, str]:
    env = {**os.environ, "QA_INDEX_DIR": str(index), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "qa", "ingest", "--quiet", str(folder)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    code, peak = peak_mb(proc, timeout=7200)
    summary = proc.stdout.read().decode().strip() if proc.stdout else ""
    if code != 0:
        raise SystemExit(f"qa ingest failed ({code}): {summary}")
    return time.perf_counter() - started, peak, summary


def main(argv: list[str] | None = None) -> list[str]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks bigfile", description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, nargs="+", default=[1, 4, 8], help="sizes of unique prose (MB)")
    ap.add_argument("--repeated", type=float, default=50, help="MB of one repeated paragraph (0: skip)")
    args = ap.parse_args(argv)
    rows = []
    with scratch() as tmp:
        cases = [(f"{mb:g} MB unique prose", _unique_prose(mb)) for mb in args.mb]
        if args.repeated:
            para = _unique_prose(0.001).split("\n\n")[0]
            cases.append((f"{args.repeated:g} MB, one paragraph repeated",
                          "\n\n".join([para] * int(args.repeated * 1e6 / (len(para) + 2)))))
        for n, (name, text) in enumerate(cases):
            folder = tmp / f"docs{n}"
            folder.mkdir()
            (folder / "big.txt").write_text(text, encoding="utf-8")
            seconds, peak, summary = _ingest(folder, tmp / f"index{n}")
            chunks = summary.split(" chunks embedded")[0].rsplit(" ", 1)[-1]
            figure = f"peak RSS **{peak:,.0f} MB**, {seconds:.0f} s, {chunks} chunks"
            print(f"{name}: {figure}", file=sys.stderr)
            rows.append(row(f"`qa ingest` of one file, {name}", figure, "flat with file size"))
    return rows
