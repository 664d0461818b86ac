"""Open files: tell a process at its open-file limit (`ulimit -n`) from a damaged index.

At the limit Chroma does not say "too many open files": it reports "unable to open database file",
"Nothing found on disk" (its vector files) or panics, which read as damage; a rebuild would not help and
would move a sound index aside. An error that says EMFILE, or a storage error while (nearly) every file the
process may open is open, is this instead.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from .errors import TooManyOpenFilesError

# Files still free below the soft limit that count as "at the limit": Chroma opens several at once (SQLite's
# connections and journal, four files per vector segment), and the ones it opened are still open when it fails.
MARGIN = 32
ENOUGH = 4096  # the limit the message suggests (at least); qa itself keeps a few dozen files open
AT_MOST = 1 << 16  # the soft limit the qa command raises itself to (children inherit it; more is never needed)
# EMFILE as Python, Rust (Chroma's panics: "Os { code: 24, ... }") and the C library word it.
_SAYS_SO = re.compile(r"too many open files|os error 24\b|\bcode: 24\b", re.IGNORECASE)


def limits() -> tuple[int, int] | None:
    """(soft, hard) open-file limits of this process, None where there are none to read (not Unix)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def open_files() -> int | None:
    """How many files this process has open (Linux: /proc/self/fd), None where that cannot be counted."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # not the listing's own descriptor
    except OSError as e:
        got = limits()
        return got[0] if e.errno in (errno.EMFILE, errno.ENFILE) and got else None  # no file left to list them


def near_limit() -> bool:
    """Whether (nearly) every file this process may open is open."""
    got, n = limits(), open_files()
    if got is None or n is None or got[0] < 0:  # RLIM_INFINITY
        return False
    return n >= got[0] - MARGIN


def says_so(e: BaseException | None) -> bool:
    """Whether an error (or one it was raised from) says the process or the system ran out of file descriptors."""
    seen = 0
    while e is not None and seen < 5:
        if isinstance(e, OSError) and e.errno in (errno.EMFILE, errno.ENFILE):
            return True
        if _SAYS_SO.search(str(e)):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def reached(e: BaseException) -> bool:
    """Whether a storage error comes from the open-file limit: it says so, or the process is at its limit."""
    return says_so(e) or near_limit()


def too_many(where: Path | str | None) -> TooManyOpenFilesError:
    """The one line for an index (None: some file) that could not be opened or read because the process is at its
    open-file limit: the figures, and how to raise the limit."""
    soft, hard = limits() or (-1, -1)
    n = open_files()
    figures = f"{n} files open, its limit is {soft}; " if n is not None and soft >= 0 else ""
    want = max(ENOUGH, 2 * soft)  # a limit already that high is reached by a program that keeps many files open
    if hard < 0 or hard >= want:
        fix = f"raise it and run again, e.g. ulimit -n {want} in the shell that starts qa"
    elif soft < hard:
        fix = (f"raise it to the hard limit and run again: ulimit -n {hard} (more needs root: LimitNOFILE= for a "
               "service, nofile in /etc/security/limits.conf)")
    else:
        fix = (f"the hard limit is {hard} too: raise both as root (ulimit -Hn {want}; LimitNOFILE={want} for a "
               "service, nofile in /etc/security/limits.conf) and run again")
    what = f"the index at {where} or its models" if where is not None else "the files it needs"
    return TooManyOpenFilesError(f"Too many open files: this process is at its open-file limit ({figures}ulimit -n), "
                                 f"so qa could not open {what}. The index is not damaged and nothing was changed; "
                                 f"{fix}.")


def raise_limit() -> None:
    """Raise the soft open-file limit to the hard one (at most AT_MOST), as Go programs and the JVM do at start:
    a low soft limit protects programs that wait on files with select(), which stops at descriptor 1024; qa and
    its libraries wait with epoll and poll."""
    try:
        import resource
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = AT_MOST if hard == resource.RLIM_INFINITY else min(hard, AT_MOST)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):  # a system that allows less than it says (macOS: kern.maxfilesperproc)
            pass
