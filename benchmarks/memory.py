"""Peak memory (max RSS) of `qa ingest` on a scifact-train slice and of `qa serve` after a few answers.

    python -m benchmarks memory [--limit 1000] [--questions 5]

Each command runs as a child process; its peak RSS is the `ru_maxrss` that `os.wait4` returns for it.
The documents are written as .txt files so that `qa ingest` reads them as a user's folder; `qa serve`
then answers the first scifact claims over that index through the Gradio API before it is stopped.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .common import EMBEDDINGS, row, scratch, texts
from .startup import start_serve, wait_http

BIN = Path(sys.executable).parent


def peak_mb(proc: subprocess.Popen[bytes], timeout: float = 60) -> tuple[int, float]:
    """Wait for a child (killing it after `timeout` s); (exit status, its max RSS in MB)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            deadline = float("inf")
        time.sleep(0.1)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024  # kB on Linux


def main(argv: list[str] | None = None) -> list[str]:
    from gradio_client import Client

    from qa.evaluation import load_benchmark

    from .common import DATA

    ap = argparse.ArgumentParser(prog="python -m benchmarks memory", description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="scifact-train")
    ap.add_argument("--limit", type=int, default=1000, help="first N documents (0: all)")
    ap.add_argument("--questions", type=int, default=5)
    ap.add_argument("--variants", default="default,torch",
                    help="embeddings to run with: default (ONNX int8), fp32 (ONNX), torch")
    args = ap.parse_args(argv)
    rows = []
    with scratch() as tmp:
        folder = tmp / "docs"
        folder.mkdir()
        docs = texts(args.dataset, args.limit or None)
        for d in docs:
            (folder / f"{d.path}.txt").write_text(d.text, encoding="utf-8")
        questions = [t for _, t, _ in load_benchmark(DATA / args.dataset).queries[: args.questions]]
        for name in args.variants.split(","):  # each on an index of its own: int8 vectors are not torch's
            env = {**os.environ, "QA_INDEX_DIR": str(tmp / f"index-{name}"), **EMBEDDINGS[name]}
            env.pop("QA_CHROMA_URL", None)
            t0 = time.perf_counter()
            proc = subprocess.Popen([str(BIN / "qa"), "ingest", str(folder), "--quiet"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            code, mb = peak_mb(proc, timeout=24 * 3600)
            assert code == 0, f"qa ingest exited with {code}"
            rows.append(row(f"peak RSS `qa ingest` ({args.dataset}, {len(docs)} docs), embeddings {name}",
                            f"**{mb:.0f} MB** ({time.perf_counter() - t0:.0f} s)", "—"))
            print(rows[-1], flush=True)
            proc, url, t0 = start_serve(env)
            try:
                wait_http(url, proc, t0, ui=True)
                client = Client(url, verbose=False)
                for q in questions:
                    client.predict(q, [], 5, "extractive", api_name="/ask")
            finally:
                proc.send_signal(signal.SIGINT)
                _, mb = peak_mb(proc)
            rows.append(row(f"peak RSS `qa serve` after {len(questions)} answers ({len(docs)}-doc index), "
                            f"embeddings {name}", f"**{mb:.0f} MB**", "≤ 600 MB"))
            print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    main()
