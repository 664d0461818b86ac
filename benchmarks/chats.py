"""Opening a long saved conversation: 1,000 turns read, checked for stale citations, rendered, exported.

    python -m benchmarks chats [--turns 1000] [--repeat 5]

Indexes seeds/ in a scratch folder, answers one real question (so every turn carries real citations
with their passages), stores it as each of `--turns` turns of one conversation, then times, best of
`--repeat`: `Assistant.conversation(id).turns` (SQLite read, JSON decode, stale check against the
catalogue), the Markdown export, and what the UI does when the conversation is opened or the page
reloaded (`Chats.view`: turns, chat and sources-panel HTML, export file).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from .common import ROOT, row, scratch


def best(fn: Callable[[], Any], repeat: int) -> float:
    """The fastest of `repeat` runs, in seconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> list[str]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks chats", description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=1000, help="turns of the conversation")
    ap.add_argument("--repeat", type=int, default=5, help="runs per figure (the best is reported)")
    args = ap.parse_args(argv)
    from qa import Assistant
    from qa.serving.ui_chats import Chats

    with scratch() as tmp:
        a = Assistant(index_dir=tmp / "index")
        a.ingest(ROOT / "seeds")
        answer = a.ask("Where will Putin travel after North Korea?")
        conv = a.conversation()
        store = a.conversation_store()
        docs = a.store().digests({c.source for c in answer.citations})
        t0 = time.perf_counter()
        for _ in range(args.turns):
            store.add_turn(conv.id, "", answer, docs)
        write = (time.perf_counter() - t0) / args.turns
        size = (tmp / "index" / "conversations.sqlite3").stat().st_size
        turns = best(lambda: a.conversation(conv.id).turns, args.repeat)
        export = best(lambda: a.conversation(conv.id).markdown(), args.repeat)
        view = best(lambda: Chats(a).view(None, conv.id), args.repeat)
    n = args.turns
    print(f"{n} turns: store {write * 1000:.2f} ms/turn, file {size / 1e6:.1f} MB; open (turns + stale check) "
          f"{turns:.2f} s; export {export:.2f} s; UI open/reload {view:.2f} s", flush=True)
    return [row(f"Open a {n}-turn conversation: `conversation(id).turns` (read, decode, stale check)",
                f"**{turns:.2f} s**", "< 1 s"),
            row(f"UI open/reload of a {n}-turn conversation (chat + sources HTML, export file)",
                f"**{view:.2f} s**", "< 2 s"),
            row(f"Markdown export of a {n}-turn conversation", f"{export:.2f} s", "< 1 s"),
            row("Store one turn (SQLite WAL, one transaction)", f"{write * 1000:.2f} ms", "< 10 ms")]


if __name__ == "__main__":
    main()
