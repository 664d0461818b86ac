"""Logins: QA_AUTH lists and users files parse in one place; a bad entry is one line saying how to fix it."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.errors import ConfigError
from qa.serving.users import check, parse_users


def test_auth_list_and_users_file(tmp_path: Path) -> None:
    f = tmp_path / "users"
    f.write_text("# team\ncarol:pw:with:colons\n\n  dave:pw4\n")
    users = parse_users("alice:pw1,bob:pw2", f)
    assert users == {"alice": "pw1", "bob": "pw2", "carol": "pw:with:colons", "dave": "pw4"}
    assert check(users, "alice", "pw1") and not check(users, "alice", "pw2")
    assert not check(users, "eve", "") and not check(users, "eve", "pw1")
    assert parse_users(None, None) == {} and parse_users("ann:pa:ss") == {"ann": "pa:ss"}


@pytest.mark.parametrize(("auth", "text", "message"), [
    ("alice", None, "QA_AUTH entry 1: a login must be given as user:password"),
    ("alice:pw1,:pw2", None, "QA_AUTH entry 2: a login"),
    (None, "ok:1\nbroken\n", "line 2: a login must be given as user:password"),
    ("alice:pw1", "alice:other\n", "user 'alice' is given twice"),
])
def test_bad_logins_say_where(tmp_path: Path, auth: str | None, text: str | None, message: str) -> None:
    f = None
    if text is not None:
        f = tmp_path / "users"
        f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        parse_users(auth, f)


def test_missing_users_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Cannot read the users file .*QA_USERS_FILE"):
        parse_users(None, tmp_path / "nope")
