"""`qa chats` (list, export, rename, delete saved conversations) and `qa ask --chat/--new-chat`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .errors import ConversationStoreError

USER_HELP = "whose conversations (a QA_AUTH login); default: those made without a login"


def add_parser(sub: Any) -> None:
    """The `qa chats` subcommand and its own subcommands."""
    ch = sub.add_parser("chats", help="saved conversations: list, export, rename, delete")
    ch.add_argument("--json", action="store_true", help="print one JSON object")
    ch.add_argument("--search", default="", help="only conversations whose title, questions or answers contain this")
    ch.add_argument("--user", help=USER_HELP)
    cmds = ch.add_subparsers(dest="chats_command", metavar="{export,rename,delete}")
    ex = cmds.add_parser("export", help="a conversation as Markdown with numbered citations")
    ex.add_argument("id")
    rn = cmds.add_parser("rename", help="give a conversation a new title")
    rn.add_argument("id")
    rn.add_argument("title")
    rm = cmds.add_parser("delete", help="delete a conversation")
    rm.add_argument("id")
    for p in (ex, rn, rm):  # SUPPRESS: a value given before the subcommand is not reset to None
        p.add_argument("--user", default=argparse.SUPPRESS, help=USER_HELP)
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def run(a: Any, args: argparse.Namespace) -> int:
    """`qa chats [...]`."""
    cmd = args.chats_command
    if cmd is None:
        found = a.conversations(args.user, args.search)
        if args.json:
            print(json.dumps({"conversations": [_info(c) for c in found]}, ensure_ascii=False))
        elif not found:
            print("No saved conversations. Start one with: qa ask --new-chat \"...\"", file=sys.stderr)
        for c in [] if args.json else found:
            print(f"{c.id}  {_date(c.updated)}  {c.turns:>3} turn{'s' * (c.turns != 1)}  {c.title}")
        return 0
    conv = a.conversation(args.id, args.user)
    if cmd == "export":
        sys.stdout.write(conv.markdown())
    elif cmd == "rename":
        conv.rename(args.title)
        print(f"renamed {conv.id}: {conv.title}")
    elif cmd == "delete":
        conv.delete()
        print(f"deleted {conv.id}")
    return 0


def ask_in_chat(a: Any, args: argparse.Namespace, format_answer: Callable[[Any], str]) -> int:
    """`qa ask --chat ID` / `--new-chat`: answer, store the turn; a broken store still answers (one line)."""
    problem = ""
    try:
        conv = a.conversation(args.chat, args.user)
        answers = conv.stream(args.question)
    except ConversationStoreError as e:
        if args.chat:  # the earlier questions are needed to understand a follow-up
            raise
        conv, problem, answers = None, str(e), a.stream(args.question)
    final = None
    try:
        for partial in answers:
            final = partial
    except ConversationStoreError as e:  # answered, but the turn could not be stored
        if final is None:
            raise
        problem = str(e)
    if args.json:
        saved = conv is not None and not problem
        print(json.dumps({**final.to_dict(), "conversation_id": conv.id if saved else None}, ensure_ascii=False))
    else:
        print(format_answer(final))
    from .generation import replaced_note

    if note := replaced_note(final):  # none of the model's sentences held: say whose answer this is
        print(note, file=sys.stderr)
    if problem:
        print(f"warning: {problem}", file=sys.stderr)
    elif conv is not None and args.new_chat and not args.chat:
        print(f"conversation {conv.id} (follow up with: qa ask --chat={conv.id} \"...\")", file=sys.stderr)
    return 0


def _info(c: Any) -> dict[str, Any]:
    return {"id": c.id, "title": c.title, "created": c.created, "updated": c.updated, "turns": c.turns}


def _date(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")
