"""`python -m benchmarks [NAME ...] [options]`: run the named benchmarks (default all), print a table.

Names: ingest, recipe, startup, latency, memory, load, bigfile, upload, chats, integrity, pdf, library,
backends, languages, hnsw, crash. Options after a single name go to that benchmark,
e.g. `python -m benchmarks ingest --limit 1000`; `python -m benchmarks NAME --help` lists them.
"""

from __future__ import annotations

import importlib
import sys

from .common import HEADER

NAMES = ["ingest", "recipe", "startup", "latency", "memory", "load", "bigfile", "upload", "chats", "integrity",
         "pdf", "library", "backends", "languages", "hnsw", "crash"]


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    names = [a for a in argv if a in NAMES] or NAMES
    options = [a for a in argv if a not in NAMES]
    if options and len(names) > 1:
        print("options apply to one benchmark: python -m benchmarks NAME [options]", file=sys.stderr)
        return 2
    rows: list[str] = []
    for name in names:
        rows += importlib.import_module(f"benchmarks.{name}").main(options)
    print("\n" + HEADER)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
