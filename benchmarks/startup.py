"""Start-up: `import qa` and `qa --help` wall time, a cold `qa ask`, and `qa serve` until it answers.

    python -m benchmarks startup [--runs 15]

`import qa` and `qa --help` use hyperfine when it is installed (`apt-get install hyperfine`), else a
loop of subprocess runs; both report the median and the best. `qa ask` is timed as a whole process
on an index of seeds/ built first (one per embedding variant: the default ONNX int8, ONNX fp32,
torch); `qa serve` from launch until `/` answers HTTP 200 (at first the starting page, which the
chat UI replaces once Gradio is loaded: qa/serving/ui_mount.py), until the chat UI itself answers, and until
a first question is answered through the UI's API.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .common import EMBEDDINGS, ROOT, free_port, row, scratch

TARGET_S = 0.5
QUESTION = "Where will Putin travel after North Korea?"
BIN = Path(sys.executable).parent


def wall(cmd: list[str], runs: int, env: dict[str, str] | None = None) -> tuple[float, float]:
    """(median, best) seconds of a command, by hyperfine if present."""
    hyperfine = shutil.which("hyperfine")
    if hyperfine and env is None:
        with scratch() as tmp:
            out = tmp / "h.json"
            subprocess.run([hyperfine, "-N", "--warmup", "2", "--runs", str(runs), "--export-json", str(out),
                            "--style", "none", shlex.join(cmd)], check=True, stdout=subprocess.DEVNULL)
            times = json.loads(out.read_text())["results"][0]["times"]
    else:
        subprocess.run(cmd, check=True, capture_output=True, env=env)  # warm-up
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def cold_runs(cmd: list[str], runs: int, env: dict[str, str]) -> tuple[float, float, float]:
    """(median wall, best wall, median CPU) seconds of a command; CPU time (user + system of the process)
    depends much less on what else the machine runs than wall time does."""
    import resource

    subprocess.run(cmd, check=True, capture_output=True, env=env)  # warm-up (page cache, first-use export)
    walls, cpus = [], []
    for _ in range(runs):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        walls.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return statistics.median(walls), min(walls), statistics.median(cpus)


def serve_times(env: dict[str, str]) -> tuple[float, float, float]:
    """Seconds from `qa serve` launch to HTTP 200 at `/` (the starting page or the UI), to the chat UI,
    and to its first answer through the Gradio API."""
    from gradio_client import Client

    proc, url, t0 = start_serve(env)
    try:
        up = wait_http(url, proc, t0)
        ui = wait_http(url, proc, t0, ui=True)
        client = Client(url, verbose=False)
        client.predict(QUESTION, [], 5, "extractive", api_name="/ask")
        return up, ui, time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(30)


def start_serve(env: dict[str, str], log: Path | None = None) -> tuple[subprocess.Popen[bytes], str, float]:
    """Launch `qa serve` on a free loopback port (output to `log`, if given): the process, its URL, the launch time."""
    port = free_port()
    out = log.open("wb") if log else None
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen([str(BIN / "qa"), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                stdout=out or subprocess.DEVNULL, stderr=subprocess.STDOUT if out else subprocess.DEVNULL)
    finally:
        if out:
            out.close()
    return proc, f"http://127.0.0.1:{port}/", t0


def wait_http(url: str, proc: subprocess.Popen[bytes], t0: float, timeout: float = 300, ui: bool = False) -> float:
    """Poll until `url` answers 200 (with `ui`, not with the starting page); seconds since t0."""
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"qa serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200 and not (ui and r.headers.get("x-qa-starting")):
                    return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(url)


def seeded_env(index: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a `qa` process on a fresh embedded index of seeds/, built here with the real command."""
    env = {**os.environ, "QA_INDEX_DIR": str(index), **(extra or {})}
    env.pop("QA_CHROMA_URL", None)
    subprocess.run([str(BIN / "qa"), "ingest", str(ROOT / "seeds"), "--quiet"], env=env, check=True,
                   capture_output=True)
    return env


def main(argv: list[str] | None = None) -> list[str]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks startup", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--asks", type=int, default=3, help="cold `qa ask` runs (median)")
    ap.add_argument("--variants", default="default,fp32,torch",
                    help="embeddings to time ask and serve with: default (ONNX int8), fp32 (ONNX), torch")
    args = ap.parse_args(argv)
    rows = []
    for label, cmd in (("`python -c \"import qa\"`", [sys.executable, "-c", "import qa"]),
                       ("`qa --help`", [str(BIN / "qa"), "--help"])):
        med, best = wall(cmd, args.runs)
        rows.append(row(f"start-up {label}", f"median **{med:.2f} s**, best {best:.2f} s", f"< {TARGET_S} s"))
        print(rows[-1], flush=True)
    with scratch() as tmp:
        for name in args.variants.split(","):
            # Each on an index of its own: int8 vectors do not share one with fp32 and torch vectors.
            env = seeded_env(tmp / name, EMBEDDINGS[name])
            med, best, cpu = cold_runs([str(BIN / "qa"), "ask", QUESTION], args.asks, env)
            rows.append(row(f"cold `qa ask` on seeds/ (whole process), embeddings {name}",
                            f"median **{med:.1f} s**, best {best:.1f} s; CPU time median {cpu:.1f} s", "≤ 2.5 s"))
            print(rows[-1], flush=True)
            up, ui, answered = serve_times(env)
            rows.append(row(f"`qa serve` start-up, embeddings {name}",
                            f"page up (HTTP 200, starting page) **{up:.1f} s**, chat UI {ui:.1f} s, "
                            f"first answer {answered:.1f} s", "page ≤ 2 s"))
            print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    main()
