"""The `qa` command line: a thin layer over `qa.Assistant` that formats its dataclasses."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .errors import QAError

LLM_CHOICES = ("extractive", "local", "openai")
DEFAULT_PATHS = ["seeds"]  # of `qa ingest`; `--rebuild` tells it apart from an explicit seeds/
LLM_HELP = ("answer backend (QA_LLM): extractive (no model), local (bundled SmolLM2), openai (OPENAI_API_KEY, "
            "QA_OPENAI_MODEL, QA_OPENAI_BASE_URL); default openai when OPENAI_API_KEY is set, else extractive")


def _positive(value: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return n


def _folder(value: str) -> str:
    """An argparse type: a folder name, not empty (which would mean the current folder)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("empty: give a folder, e.g. --index-dir ./index")
    return value


class _Version(argparse.Action):
    """`qa --version`: the version is looked up only when asked for (it takes ~0.1 s), not for every command."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print qa's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from . import __version__

        print(f"qa {__version__}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qa", description="Answers from your documents, with cited passages.")
    p.add_argument("--version", action=_Version)
    p.add_argument("--index-dir", type=_folder, help="index folder (QA_INDEX_DIR, default ./index)")
    p.add_argument("--chroma-url", help="use a Chroma server, e.g. http://127.0.0.1:8000 (QA_CHROMA_URL)")
    sub = p.add_subparsers(dest="command")  # none: a short help naming the next step

    ing = sub.add_parser("ingest", help="index files and folders (default: seeds/)")
    ing.add_argument("paths", nargs="*", default=DEFAULT_PATHS, help="files or folders")
    ing.add_argument("--strict", action="store_true", help="exit 1 if any file failed")
    ing.add_argument("--quiet", action="store_true", help="no progress bar")
    ing.add_argument("--rebuild", action="store_true",
                     help="move the index aside (kept, never deleted) and index again the files its catalogue "
                     "names, PATHs and uploads/")
    ing.add_argument("--watch", action="store_true",
                     help="then keep watching the paths: added, changed, removed and renamed files follow")

    ask = sub.add_parser("ask", help="answer a question with cited passages")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="print one JSON object")
    ask.add_argument("--top-k", type=int, help="passages to retrieve (QA_TOP_K)")
    ask.add_argument("--llm", choices=LLM_CHOICES, help=LLM_HELP)
    ask.add_argument("--chat", metavar="ID", help="ask in saved conversation ID (a follow-up uses its questions)")
    ask.add_argument("--new-chat", action="store_true", help="start a saved conversation; prints its id")
    ask.add_argument("--user", help="whose conversations (a QA_AUTH login); default: those made without login")
    ask.add_argument("--source", action="append", metavar="GLOB",
                     help="answer only from documents this path, folder or glob names (repeatable; see qa docs)")

    st = sub.add_parser("status", help="what the index holds")
    st.add_argument("--check", action="store_true",
                    help="run every integrity check (SQLite pages, vector files, catalogue, BM25 copy, uploads)")

    srv = sub.add_parser("serve", help="start the chat UI and the HTTP API (/v1, docs at /docs)")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=7860)
    srv.add_argument("--auth", help="logins user:password[,user2:password2] (QA_AUTH; or a file: QA_USERS_FILE)")
    srv.add_argument("--llm", choices=LLM_CHOICES, help=LLM_HELP)
    srv.add_argument("--api-key", help="key the HTTP API requires as 'Authorization: Bearer <key>' (QA_API_KEY)")
    srv.add_argument("--watch", action="extend", nargs="+", metavar="PATH",
                     help="keep these files or folders indexed while serving (several, or the option repeated)")

    ev = sub.add_parser("eval", help="measure retrieval (and answers) on a BEIR-layout folder")
    ev.add_argument("dir", help="folder with corpus.jsonl[.gz], queries.jsonl, qrels/test.tsv")
    ev.add_argument("--k", type=_positive, default=10, help="cut-off for ndcg/recall/mrr")
    ev.add_argument("--limit", type=_positive, help="evaluate only the first N queries")
    ev.add_argument("--answers", action="store_true", help="also run the full ask pipeline")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    _chats_parser(sub)

    bk = sub.add_parser("backup", help="write a consistent snapshot of the index (while qa serve answers)")
    bk.add_argument("dest", help="new or empty folder")
    rs = sub.add_parser("restore", help="put a backup in place of the index")
    rs.add_argument("src", help="folder written by qa backup")
    rs.add_argument("--force", action="store_true", help="replace a non-empty index (it is moved aside)")

    docs = sub.add_parser("docs", help="list the indexed documents")
    docs.add_argument("--json", action="store_true", help="print a JSON list of document objects")

    rm = sub.add_parser("remove", help="take documents out of the index (and delete uploaded copies)")
    rm.add_argument("patterns", nargs="+", metavar="PATH|GLOB", help="a source as qa docs lists it, a folder, or a glob")
    return p


def _assistant(args: argparse.Namespace, **extra: Any) -> Any:
    from .assistant import Assistant

    overrides = {k: v for k, v in {"index_dir": args.index_dir, "chroma_url": args.chroma_url, **extra}.items()
                 if v is not None}
    return Assistant(**overrides)


def _progress_bar(quiet: bool, desc: str = "Indexing") -> Any:
    if quiet:
        return None, None
    from tqdm import tqdm

    class LazyBar:  # drawn at the first progress call: an ingest refused at once prints only its error
        bar: Any = None

        def close(self) -> None:
            if self.bar is not None:
                self.bar.close()

    lazy = LazyBar()

    def update(done: float, total: int, item: str) -> None:
        if lazy.bar is None:
            lazy.bar = tqdm(total=0, desc=desc, file=sys.stderr, disable=False, leave=False,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix} [{elapsed}<{remaining}]")
        bar = lazy.bar
        # `done` grows by fractions while one big file streams through, so the bar never stalls.
        bar.total = total
        bar.n = done
        bar.set_postfix_str(f"{int(done)}/{total} {Path(item).name[:40]}", refresh=False)
        bar.refresh()

    return update, lazy


def cmd_ingest(args: argparse.Namespace) -> int:
    if args.watch:
        return cmd_watch(args)
    a = _assistant(args)
    if args.rebuild:
        return _rebuild(a, args)
    update, bar = _progress_bar(args.quiet)
    try:
        report = a.ingest(*args.paths, progress=update)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print("interrupted: the files indexed so far are kept; run the same command again to index the rest",
              file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    for f in report.files:
        if f.status == "failed":
            print(f"failed: {f.path}: {f.reason}", file=sys.stderr)
    print(report.summary())
    indexed = report.count("added") + report.count("updated") + report.count("unchanged")
    if indexed == 0 and report.count("removed") == 0:
        if report.count("failed"):
            raise QAError(f"Nothing could be indexed from {' '.join(args.paths)}: see why for each file above")
        raise QAError(f"Nothing could be indexed from {' '.join(args.paths)}; "
                      "give a folder or files of type .txt .md .pdf .html .docx .png .jpg .tif")
    return 1 if args.strict and report.count("failed") else 0


def format_answer(ans: Any) -> str:
    """The answer, then its numbered sources: file, location, offsets, the cited text."""
    lines = [ans.answer]
    if ans.citations:
        lines.append("\nSources:")
        for c in ans.citations:
            where = f"{c.location}, " if c.location else ""
            flag = "" if c.verified else ", NOT verified"
            lines.append(f"[{c.id}] {c.source} ({where}chars {c.start}-{c.end}, score {c.score:.2f}{flag})")
            lines.append(f"    {c.text}")
    return "\n".join(lines)


def _check_local(a: Any) -> None:
    """Say at once, in one line, how to add the local answer mode when it is chosen but not installed."""
    from .llm import local_missing

    if a.settings.llm == "local" and (missing := local_missing(a.settings.local_model)):
        raise QAError(missing)


def cmd_ask(args: argparse.Namespace) -> int:
    a = _assistant(args, top_k=args.top_k, llm=args.llm)
    _check_local(a)
    if args.chat or args.new_chat:
        from .cli_chats import ask_in_chat

        return ask_in_chat(a, args, format_answer)
    ans = a.ask(args.question, sources=args.source)
    print(json.dumps(ans.to_dict(), ensure_ascii=False) if args.json else format_answer(ans))
    from .generation import replaced_note

    if note := replaced_note(ans):  # none of the model's sentences held: say whose answer this is
        print(note, file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    if args.check:
        return _check(_assistant(args))
    s = _assistant(args).status()
    print(f"index:       {s.chroma_url or s.index_dir}")
    print(f"documents:   {s.documents}")
    print(f"chunks:      {s.chunks}")
    print(f"embeddings:  {s.embed_model}")
    print(f"answers:     {s.backend}")
    if not s.chroma_url:
        print(f"size:        {s.size_bytes / 1e6:.1f} MB")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serving.server import serve
    from .serving.ui import index_is_empty

    a = _assistant(args, llm=args.llm)
    _check_local(a)
    if index_is_empty(a):
        print(EMPTY_INDEX.format(where=a.settings.chroma_url or a.settings.index_dir), file=sys.stderr)
    if args.watch:
        from .watch import start_thread

        # Built before the threads start, so the watcher and the server share one store and model.
        a.store(create=True)
        a.embedder  # noqa: B018
        start_thread(a, args.watch, on_batch=_print_batch, on_error=_print_watch_error)
    serve(a, host=args.host, port=args.port, auth=args.auth, api_key=args.api_key)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate, format_report

    update, bar = _progress_bar(False)
    asking, questions = _progress_bar(False, "Answering" if args.answers else "Retrieving")

    def asked(done: float, total: int, item: str) -> None:
        bar.close()  # the index is built
        asking(done, total, item)

    try:
        report = evaluate(_assistant(args), Path(args.dir), k=args.k, limit=args.limit,
                          answers=args.answers, progress=update, query_progress=asked)
    finally:
        bar.close()
        questions.close()
    print(json.dumps(report) if args.json else format_report(report))
    return 0


EMPTY_INDEX = ("The index at {where} has no documents yet. Add some with: qa ingest seeds/ (or your own folder), "
               "or drop files on \"Add documents\" in the page.")


def first_steps(args: argparse.Namespace) -> str:
    """What `qa` alone prints: the few commands, and the next step for this index."""
    from .settings import Settings

    s = Settings(**{k: v for k, v in {"index_dir": args.index_dir, "chroma_url": args.chroma_url}.items() if v})
    where = s.index_dir if s.index_dir.is_absolute() else f"./{s.index_dir}"
    if s.chroma_url:
        step = "qa status  (what the Chroma server's index holds), then qa serve"
    elif (s.index_dir / "chroma.sqlite3").exists():
        step = f"qa serve  (the index at {where} exists; add files with qa ingest PATH)"
    else:
        step = f"qa ingest seeds/  (or your own folder; there is no index at {where} yet), then qa serve"
    return ("qa: answers from your documents, every sentence cited to its exact passage.\n\n"
            "  qa ingest [PATH ...]   index files and folders (seeds/ holds a sample article)\n"
            "  qa ask \"QUESTION\"      an answer with its sources, in the terminal\n"
            "  qa serve               the chat UI on http://127.0.0.1:7860\n"
            "  qa status              what the index holds\n"
            "  qa --help              every command and option\n\n"
            f"Next step: {step}")

def _chats_parser(sub: Any) -> None:
    from .cli_chats import add_parser

    add_parser(sub)


def cmd_chats(args: argparse.Namespace) -> int:
    from .cli_chats import run

    return run(_assistant(args), args)

def _rebuild(a: Any, args: argparse.Namespace) -> int:
    # Paths are only what is given: the default seeds/ would be added to every rebuilt library.
    paths = [] if args.paths is DEFAULT_PATHS else args.paths
    update, bar = _progress_bar(args.quiet, "Rebuilding")
    try:
        r = a.rebuild(*paths, progress=update)
    finally:
        if bar is not None:
            bar.close()
    if r.moved_to:
        print(f"moved the old index aside to {r.moved_to} (nothing deleted)")
    if r.sources_from == "paths" and r.moved_to:
        print("its catalogue was unreadable: rebuilt from the given paths and uploads/", file=sys.stderr)
    for line in r.missing:
        print(f"not rebuilt: {line}", file=sys.stderr)
    for f in r.report.files:
        if f.status == "failed":
            print(f"failed: {f.path}: {f.reason}", file=sys.stderr)
    print(r.report.summary())
    return 1 if args.strict and (r.report.count("failed") or r.missing) else 0


def _check(a: Any) -> int:
    results = a.check()
    for c in results:
        print(f"{'ok  ' if c.ok else 'FAIL'}  {c.name + ':':<16} {c.detail}")
    failed = [c for c in results if not c.ok]
    damage = [c for c in failed if not c.fix]
    if damage:
        print(f"error: the index at {a.settings.chroma_url or a.settings.index_dir} is damaged "
              f"({damage[0].name}). Run: qa ingest --rebuild", file=sys.stderr)
        return 1
    if failed:  # not damage: a full disk, a read-only folder, a stale copy; a rebuild would not help
        print(f"error: {failed[0].fix}", file=sys.stderr)
        return 1
    print("index is healthy")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    m = _assistant(args).backup(args.dest)
    print(f"backed up {len(m['files'])} files ({int(m['bytes']) / 1e6:.1f} MB) to {args.dest} in {m['seconds']} s")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    a = _assistant(args)
    moved = a.restore(args.src, force=args.force)
    if moved:
        print(f"moved the previous index aside to {moved} (nothing deleted)")
    print(f"restored {args.src} to {a.settings.index_dir}")

def _size(n: int | None) -> str:
    if n is None:
        return "-"
    if n < 1000:
        return f"{n} B"
    size, unit = n / 1000, "KB"
    for bigger in ("MB", "GB"):
        if size < 1000:
            break
        size, unit = size / 1000, bigger
    return f"{size:.1f} {unit}"


def _columns(text: str) -> int:
    """How many terminal columns a text takes: wide characters (CJK, most emoji) two, combining marks none."""
    import unicodedata

    return sum(0 if unicodedata.combining(ch) or ch == "\u200d" or "\ufe00" <= ch <= "\ufe0f"
               else 2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def format_documents(docs: list[Any]) -> str:
    """The `qa docs` table: one line per document, then a total."""
    if not docs:
        return "No documents indexed. Add some with: qa ingest PATH"
    rows = [("SOURCE", "TYPE", "PAGES", "CHUNKS", "SIZE", "ADDED", "TITLE")]
    rows += [(d.source, d.type, str(d.pages or "-"), str(d.chunks), _size(d.bytes),
              (d.added or "-").replace("T", " ").removesuffix("Z"), d.title[:60]) for d in docs]
    widths = [max(_columns(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = {2, 3, 4}  # numbers

    def pad(i: int, c: str, w: int) -> str:
        fill = " " * (w - _columns(c))
        return fill + c if i in right else c + fill

    lines = ["  ".join(pad(i, c, w) for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    chunks = sum(d.chunks for d in docs)
    lines.append(f"{len(docs)} document{'s' * (len(docs) != 1)}, {chunks} chunk{'s' * (chunks != 1)}")
    return "\n".join(lines)


def cmd_docs(args: argparse.Namespace) -> int:
    docs = list(_assistant(args).documents())
    print(json.dumps([d.to_dict() for d in docs], ensure_ascii=False) if args.json else format_documents(docs))
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    report = _assistant(args).remove(*args.patterns)
    for s in report.removed:
        print(f"removed: {s}")
    for s in report.uploads_deleted:
        print(f"deleted uploaded file: {s}")
    print(report.summary())
    return 0


def _print_batch(report: Any) -> None:
    for f in (f for f in report.files if f.status != "unchanged"):
        detail = f": {f.reason}" if f.reason else ""
        print(f"{f.status}: {f.path}{detail}", file=sys.stderr if f.status == "failed" else sys.stdout, flush=True)
    print(report.summary(), flush=True)


def _print_watch_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def cmd_watch(args: argparse.Namespace) -> int:
    from .watch import watch

    a = _assistant(args)
    print(f"Watching {' '.join(args.paths)} (Ctrl-C stops)", file=sys.stderr, flush=True)
    watch(a, args.paths, on_batch=_print_batch, on_error=_print_watch_error)
    return 0


def main(argv: list[str] | None = None) -> int:
    """The `qa` command in-process: parse `argv` (default sys.argv[1:]), run it, return the exit code."""
    return _dispatch(_parser().parse_args(argv))


def _dispatch(args: argparse.Namespace) -> int:
    if args.command is None:
        print(first_steps(args))
        return 0
    import logging

    # Libraries log per-file parser warnings and model loading; qa reports failures itself.
    logging.basicConfig(level=logging.ERROR, force=True)
    for h in logging.getLogger().handlers:  # also for libraries that set their own logger to DEBUG (bm25s)
        h.setLevel(logging.ERROR)
    handler = {"ingest": cmd_ingest, "ask": cmd_ask, "status": cmd_status,
               "serve": cmd_serve, "eval": cmd_eval, "chats": cmd_chats, "backup": cmd_backup,
               "restore": cmd_restore, "docs": cmd_docs, "remove": cmd_remove}[args.command]
    if args.command in WRITERS:
        # `kill` (a service manager stopping qa, a container's stop) ends a writer as Ctrl-C does: it says what
        # was kept and gives up its claim on the index, instead of vanishing and leaving a lease for 300 s.
        import signal

        signal.signal(signal.SIGTERM, _interrupt)
    try:
        return handler(args)
    except QAError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # out of files where qa could not tell the index from its other files (an import)
        from .openfiles import says_so, too_many

        if not says_so(e):
            raise
        print(f"error: {too_many(None)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


ONE_SHOT = frozenset({"ask", "status", "docs"})  # read the index, print, end
WRITERS = frozenset({"ingest", "remove", "backup", "restore"})


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run() -> None:
    """The installed `qa` command and `python -m qa`: main(), ending one-shot commands quickly."""
    import gc
    import os

    args = _parser().parse_args()  # bad arguments exit here with the usage
    from .openfiles import raise_limit

    raise_limit()  # a soft limit of a few hundred files stops Chroma in a process that has more open (see openfiles)
    if args.command in ("ingest", "serve"):  # `qa serve` ingests uploads and watched folders too
        from .ingest import bound_heaps

        bound_heaps()  # before Chroma, ONNX Runtime and the server start their threads
    one_shot = args.command in ONE_SHOT
    if one_shot:
        # A one-shot command makes little garbage; the cycle collector would only slow its imports (0.3 s).
        gc.disable()
    try:
        code = _dispatch(args)
        sys.stdout.flush()
    except BrokenPipeError:  # `qa ask ... | head` stopped reading: not an error of qa's
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    if one_shot or code == 130:
        # An interrupted command leaves as a killed one would: a model thread cut short in native code could
        # otherwise abort the teardown ("terminate called without an active exception", exit 134). What was
        # committed is on disk; the rest is repaired by the next run.
        sys.stderr.flush()
        # Everything is written (the conversation store commits each turn); tearing down thousands of
        # modules, the Chroma client and the model sessions would add 0.5 s to every answer.
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
