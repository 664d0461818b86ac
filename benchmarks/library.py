"""The document library at 1,000 documents: `qa docs`, scoped questions, the UI filter, and watch latency.

    python -m benchmarks library [--docs 1000] [--queries 30] [--files 5] [--keep DIR] [--no-ui]

The index holds the first `--docs` squad-dev paragraphs (one document each, as `qa eval` ingests
them). Timed: `Assistant.documents()` in-process and `qa docs --json` as a command (Python start-up
included); questions whose gold paragraph is in a scope of 1, 10 and 100 documents, beside the same
questions unscoped; the Library panel's filter over the list, in Python and in headless Chromium
over `qa serve`. Watch: `qa.watch.watch` runs on an empty folder beside the index; each of
`--files` files is saved with a new fact, and the time from its save until a question scoped to it
is answered with a citation of it is measured.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from qa import Assistant
from qa.evaluation import load_benchmark
from qa.serving.ui_library import label, matching, summary
from qa.types import Document

from .common import DATA, ROOT, pct, row, scratch, texts


def _ms(fn: Callable[[], object], n: int) -> list[float]:
    """Milliseconds of n calls."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main(argv: list[str] | None = None) -> list[str]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks library", description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--files", type=int, default=5, help="files saved one after another for the watch figure")
    ap.add_argument("--keep", type=Path, help="build (or reuse) the index here instead of a temp folder")
    ap.add_argument("--no-ui", action="store_true", help="skip the browser figures")
    args = ap.parse_args(argv)
    rows: list[str] = []
    with scratch() as tmp:
        index = (args.keep or tmp) / f"library-{args.docs}"
        a = Assistant(index_dir=index)
        if not (index / "chroma.sqlite3").exists():
            t0 = time.perf_counter()
            a.ingest_texts(texts("squad-dev", args.docs))
            print(f"indexed {args.docs} documents in {time.perf_counter() - t0:.0f} s", flush=True)
        n = len(a.documents())

        lst = _ms(a.documents, 20)
        rows.append(row(f"Assistant.documents(), {n} documents", f"p50 {pct(lst, 50):.0f} ms, p95 {pct(lst, 95):.0f} ms",
                        "—"))
        env = {**os.environ, "QA_INDEX_DIR": str(index), "PYTHONPATH": str(ROOT)}
        cli = _ms(lambda: subprocess.run([sys.executable, "-m", "qa", "docs", "--json"], env=env, check=True,
                                         capture_output=True), 3)
        rows.append(row(f"`qa docs --json`, {n} documents (whole command)", f"median {pct(cli, 50) / 1000:.2f} s",
                        "—"))
        docs = list(a.documents())
        panel = _ms(lambda: [label(d) for d in matching(docs, "super bowl")[:200]], 20)
        rows.append(row(f"Library panel filter, {n} documents", f"p50 {pct(panel, 50):.1f} ms", "< 100 ms"))

        bench = load_benchmark(DATA / "squad-dev")
        indexed = [d.source for d in docs]
        position = {s: i for i, s in enumerate(indexed)}
        questions = [(q, next(iter(bench.qrels[i]))) for i, q, _ in bench.queries
                     if i in bench.qrels and next(iter(bench.qrels[i])) in position][: args.queries]
        a.ask(questions[0][0])  # opens the store and builds BM25 once
        plain = []
        for q, _ in questions:
            t0 = time.perf_counter()
            a.ask(q)
            plain.append((time.perf_counter() - t0) * 1000)
        rows.append(row(f"question, all {n} documents ({len(questions)} squad-dev questions)",
                        f"p50 {pct(plain, 50):.0f} ms, p95 {pct(plain, 95):.0f} ms", "—"))
        for size in (1, 10, 100):
            times, outside = [], 0
            for q, gold in questions:
                start = max(0, min(position[gold] - size // 2, len(indexed) - size))
                scope = indexed[start:start + size]
                t0 = time.perf_counter()
                ans = a.ask(q, sources=scope)
                times.append((time.perf_counter() - t0) * 1000)
                outside += sum(c.source not in scope for c in ans.citations)
            assert outside == 0, f"{outside} citations outside the scope"
            rows.append(row(f"scoped question, {size} of {n} documents",
                            f"p50 {pct(times, 50):.0f} ms, p95 {pct(times, 95):.0f} ms (0 citations outside)", "—"))
        for r in rows:
            print(r, flush=True)

        if not args.no_ui:
            rows += _ui(index, docs)
            for r in rows[-2:]:
                print(r, flush=True)
        rows.append(_watch(a, tmp / "watched", args.files))
        print(rows[-1], flush=True)
    return rows


def _ui(index: Path, docs: list[Document]) -> list[str]:
    """The Library panel in headless Chromium over `qa serve`: first listing, then each filter until shown."""
    from playwright.sync_api import sync_playwright

    from .startup import start_serve, wait_http

    env = {**os.environ, "QA_INDEX_DIR": str(index), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False"}
    proc, url, t0 = start_serve(env)
    try:
        wait_http(url, proc, t0, ui=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(120_000)
            t = time.perf_counter()
            page.goto(url)
            page.wait_for_function(f"document.querySelectorAll('#qa-doc-list label').length === {min(len(docs), 200)}")
            first = time.perf_counter() - t
            words = [d.title.split()[0] for d in docs[:: max(1, len(docs) // 8)]][:8]
            box = page.locator("#qa-doc-filter textarea, #qa-doc-filter input").first
            times = []
            for query in [*words, ""]:
                want = summary(len(matching(docs, query)), len(docs), query)
                t = time.perf_counter()
                box.fill(query)
                page.wait_for_function("w => document.querySelector('#qa-doc-count').innerText.trim() === w", arg=want)
                times.append((time.perf_counter() - t) * 1000)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    return [row(f"Library panel in Chromium, {len(docs)} documents: page load to list shown", f"{first:.1f} s", "—"),
            row(f"Library panel in Chromium, {len(docs)} documents: filter typed to list updated ({len(times)} filters)",
                f"p50 **{pct(times, 50):.0f} ms**, max {max(times):.0f} ms", "< 1 s")]


def _watch(a: Assistant, folder: Path, files: int) -> str:
    """Median seconds from a file's save to a cited answer from it, with `qa.watch.watch` running."""
    from qa.watch import watch

    folder.mkdir()
    stop = threading.Event()
    ready = threading.Event()
    thread = threading.Thread(target=watch, args=(a, [folder]), daemon=True,
                              kwargs={"stop": stop, "on_batch": lambda _: ready.set()})
    thread.start()
    ready.wait(120)  # the initial (empty) ingest: the watcher is armed
    seconds = []
    try:
        for i in range(files):
            path = folder / f"depot{i}.txt"
            question = f"How many crates of pears does depot Kvarn{i} store?"
            t0 = time.perf_counter()
            path.write_text(f"The depot Kvarn{i} stores {100 + i} crates of pears for the winter market.\n")
            while True:
                try:
                    ans = a.ask(question, sources=[str(path)])
                    if ans.answered and any(c.source == str(path) for c in ans.citations):
                        break
                except Exception:  # noqa: BLE001 - not indexed yet
                    pass
                if time.perf_counter() - t0 > 120:
                    raise RuntimeError(f"{path.name} was not answerable within 120 s")
                time.sleep(0.05)
            seconds.append(time.perf_counter() - t0)
            print(f"watch: {path.name} answerable {seconds[-1]:.2f} s after its save", flush=True)
    finally:
        stop.set()
        thread.join(30)
    return row(f"watch: file saved → answerable ({files} files)",
               f"median **{pct(seconds, 50):.2f} s** (max {max(seconds):.2f} s; settle 1.0 s + debounce step 0.3 s)",
               "—")


if __name__ == "__main__":
    main()
