"""Logins: `QA_AUTH="alice:pw1,bob:pw2"` (or `--auth`) and a users file `QA_USERS_FILE`, parsed in one place."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from ..errors import ConfigError


def parse_users(auth: str | None = None, users_file: str | Path | None = None) -> dict[str, str]:
    """{user: password} from `user:pw,user2:pw2` and/or a file of `user:password` lines (# comments)."""
    users: dict[str, str] = {}
    entries: list[tuple[str, str]] = []
    if auth:
        entries += [(f"QA_AUTH entry {i}", e) for i, e in enumerate(auth.split(","), 1) if e.strip()]
    if users_file:
        path = Path(users_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise ConfigError(f"Cannot read the users file {path} ({e.strerror}); fix QA_USERS_FILE.") from None
        entries += [(f"{path} line {i}", line) for i, line in enumerate(lines, 1)
                    if line.strip() and not line.lstrip().startswith("#")]
    for where, entry in entries:
        user, sep, password = entry.strip().partition(":")
        if not sep or not user.strip() or not password:
            raise ConfigError(f"{where}: a login must be given as user:password (--auth, QA_AUTH or QA_USERS_FILE).")
        if user.strip() in users:
            raise ConfigError(f"{where}: user {user.strip()!r} is given twice; keep one password per user.")
        users[user.strip()] = password
    return users


def users_from_env(auth: str | None = None) -> dict[str, str]:
    """The logins `qa serve` requires: `--auth` or QA_AUTH, plus QA_USERS_FILE."""
    return parse_users(auth or os.environ.get("QA_AUTH"), os.environ.get("QA_USERS_FILE"))


def check(users: dict[str, str], user: str, password: str) -> bool:
    """Whether `password` is `user`'s, in constant time (no timing hint of which part was wrong)."""
    expected = users.get(user, "")
    ok = hmac.compare_digest(expected.encode(), (password or "").encode())
    return ok and user in users
