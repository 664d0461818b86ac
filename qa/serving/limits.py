"""Wrong guesses at a login or the API key are limited: after `MAX_FAILURES` in a minute, 429 with Retry-After.

Failures are counted per client address and, for a UI login (the login form, or HTTP Basic auth to /v1), per
user name too, so that guessing one user's password from many addresses is limited as well. Only the guesser's
address and the guessed name are refused meanwhile; a successful login clears both. A name's count does not
lock its user out of an address she signed in from before (within `KNOWN_SECONDS`): anyone could otherwise keep
her out by guessing wrong at her name. The counts live in memory (a restart clears them), bounded in size.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["CLIENT", "LOGIN_MESSAGE", "LOGIN_PATHS", "MAX_FAILURES", "WINDOW_SECONDS", "LoginLimiter", "RememberClient",
           "TooManyAttempts", "client_address", "keys", "ui_login"]

MAX_FAILURES = 10  # wrong guesses a client address (or a user name) may make ...
WINDOW_SECONDS = 60.0  # ... within this many seconds
KNOWN_SECONDS = 30 * 24 * 3600.0  # an address a user signed in from is hers this long after her last sign-in
MAX_KEYS = 50_000  # addresses and names remembered at once (an attacker may invent any number of names)
LOGIN_PATHS = frozenset({"/login", "/login/"})  # Gradio's login form posts here
# Gradio's login page says nothing when it is answered 429 (only "Incorrect credentials" for 400), so it says so first.
LOGIN_MESSAGE = (f"qa: sign in to ask about the documents. After {MAX_FAILURES} wrong passwords within a minute, "
                 "signing in is refused for up to a minute.")

# The address of the client whose request is being served, for the UI's login check (Gradio passes it only the
# user name and password); set by `RememberClient`.
CLIENT: ContextVar[str] = ContextVar("qa_client", default="")


class TooManyAttempts(Exception):
    """Too many wrong guesses: `retry_after` seconds until the next is accepted."""

    def __init__(self, retry_after: int, by_user: bool) -> None:
        super().__init__(f"Too many wrong {'passwords for this user' if by_user else 'logins or keys from this address'}"
                         f"; try again in {retry_after} s.")
        self.retry_after, self.by_user = retry_after, by_user


def keys(address: str, user: str | None = None) -> tuple[str, ...]:
    """The counters an attempt from `address` (at `user`'s login, if any) counts against."""
    return (f"addr:{address}",) + ((f"user:{user}",) if user is not None else ())


class LoginLimiter:
    """Failures per key (an address, a user name) in a sliding window; shared by the UI login and the API."""

    def __init__(self, max_failures: int = MAX_FAILURES, window: float = WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures, self.window, self.clock = max_failures, window, clock
        self._lock = threading.Lock()  # the API checks keys on worker threads, the UI login on the event loop
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._known: OrderedDict[tuple[str, str], float] = OrderedDict()  # (address, user): last sign-in

    def check(self, counters: tuple[str, ...]) -> None:
        """Raise TooManyAttempts if any of these counters is full (the attempt is then not even checked). A
        user's count does not block her at an address she signed in from before."""
        now = self.clock()
        with self._lock:
            known = self._known_pair(counters, now)
            for key in counters:
                if known and key.startswith("user:"):
                    continue
                times = self._recent(key, now)
                if times is not None and len(times) >= self.max_failures:
                    wait = max(1, math.ceil(times[0] + self.window - now))
                    raise TooManyAttempts(wait, by_user=key.startswith("user:"))

    def failed(self, counters: tuple[str, ...]) -> None:
        now = self.clock()
        with self._lock:
            for key in counters:
                times = self._recent(key, now)
                if times is None:
                    times = self._failures[key] = deque(maxlen=self.max_failures)
                times.append(now)
                self._failures.move_to_end(key)
            while len(self._failures) > MAX_KEYS:  # the least recently failed go first
                self._failures.popitem(last=False)

    def succeeded(self, counters: tuple[str, ...]) -> None:
        with self._lock:
            for key in counters:
                self._failures.pop(key, None)
            pair = _pair(counters)
            if pair is not None:
                self._known[pair] = self.clock()
                self._known.move_to_end(pair)
                while len(self._known) > MAX_KEYS:
                    self._known.popitem(last=False)

    def _known_pair(self, counters: tuple[str, ...], now: float) -> bool:
        """Whether the user of these counters signed in from their address within KNOWN_SECONDS."""
        pair = _pair(counters)
        if pair is None or pair not in self._known:
            return False
        if self._known[pair] <= now - KNOWN_SECONDS:
            del self._known[pair]
            return False
        return True

    @contextmanager
    def attempt(self, counters: tuple[str, ...]) -> Iterator[list[bool]]:
        """`with limiter.attempt(keys(...)) as ok: ok.append(check(...))`: refused at once if a counter is full,
        else counted as a failure or a success by what the block appended (nothing appended: not counted)."""
        self.check(counters)
        outcome: list[bool] = []
        try:
            yield outcome
        finally:  # also when the block raises (the API's 401)
            if outcome:
                (self.succeeded if outcome[-1] else self.failed)(counters)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times


def _pair(counters: tuple[str, ...]) -> tuple[str, str] | None:
    """(address, user) of an attempt's counters (see `keys`), or None if it names no user."""
    found = dict(k.split(":", 1) for k in counters)
    return (found["addr"], found["user"]) if found.get("addr") and "user" in found else None


def client_address(scope: dict[str, Any]) -> str:
    """The address a request came from (as uvicorn gives it: a proxy on this machine may name its client)."""
    client = scope.get("client")
    return str(client[0]) if client else ""


def ui_login(users: dict[str, str], limiter: LoginLimiter) -> Callable[[str, str], bool]:
    """The UI's login check, as Gradio calls it; raises a 429 HTTPException while the address or name is blocked."""
    from fastapi import HTTPException

    from .users import check

    def login(user: str, password: str) -> bool:
        try:
            with limiter.attempt(keys(CLIENT.get(), user)) as outcome:
                outcome.append(check(users, user, password))
        except TooManyAttempts as e:
            raise HTTPException(429, str(e), headers={"Retry-After": str(e.retry_after)}) from None
        return outcome[-1]

    return login


class RememberClient:
    """ASGI middleware: a post to the UI's login form is checked knowing its client's address (`CLIENT`)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in LOGIN_PATHS:
            return await self.app(scope, receive, send)
        token = CLIENT.set(client_address(scope))
        try:
            await self.app(scope, receive, send)
        finally:
            CLIENT.reset(token)
