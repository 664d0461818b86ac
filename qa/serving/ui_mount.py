"""The chat UI inside `qa serve`'s app: Gradio mounted at `/`, at once or while the API already answers.

Importing Gradio and building the page takes 2-3 s of a cold start. `qa serve` does not wait for it:
the HTTP API answers at once, `/` shows a small page that says the chat is starting and reloads
itself, and the UI takes over `/` as soon as it is built (in a thread; its own lifespan, which starts
Gradio's queue, runs inside the app's). A program can tell the starting page by its
`X-QA-Starting: 1` header; its other paths answer 503 with `Retry-After` until then.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

STARTING_HEADER = "x-qa-starting"
STARTING_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="1"><title>qa</title>
<style>body{font:16px system-ui,sans-serif;color:#374151;display:grid;place-items:center;height:90vh;margin:0}
p{margin:.3em;text-align:center}.dim{color:#6b7280;font-size:14px}</style></head>
<body><div><p><b>qa</b> is starting: the chat opens in a moment.</p>
<p class="dim">The HTTP API already answers at <a href="/docs">/v1</a>.</p></div></body></html>
"""
FAILED_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>qa</title></head>
<body style="font:16px system-ui,sans-serif"><p>The chat UI could not start: {error}</p>
<p>The HTTP API at <a href="/docs">/v1</a> still answers; the terminal running qa serve shows the details.</p>
</body></html>
"""


class LazyUI:
    """An ASGI app: the Gradio app once `run` has built it, the starting page until then."""

    def __init__(self) -> None:
        import threading

        self.app: Any = None
        self.error: str | None = None
        self.settled = threading.Event()  # set once the UI is up or has failed
        self._stop: asyncio.Event | None = None

    async def run(self, build: Callable[[], Any]) -> None:
        """Build the UI on a thread, then serve it inside its own lifespan until `stop`."""
        self._stop = asyncio.Event()
        try:
            app = await asyncio.to_thread(build)
            async with app.router.lifespan_context(app):
                self.app = app
                self.settled.set()
                await self._stop.wait()
        except Exception as e:  # the API keeps answering; the page says what happened
            import html

            self.error = html.escape(f"{type(e).__name__}: {e}")
            print(f"qa: the chat UI could not start ({type(e).__name__}: {e}); the API at /v1 answers.",
                  file=sys.stderr, flush=True)
            self.settled.set()
            await self._stop.wait()

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.app is not None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1013})  # try again later
            return
        from starlette.responses import HTMLResponse, PlainTextResponse

        if self.error is not None:
            response: Any = HTMLResponse(FAILED_PAGE.format(error=self.error), status_code=500)
        elif scope.get("path", "/").rstrip("/") in ("", scope.get("root_path", "").rstrip("/")):
            response = HTMLResponse(STARTING_PAGE, headers={STARTING_HEADER: "1", "Cache-Control": "no-store"})
        else:
            response = PlainTextResponse("The chat UI is starting; try again in a moment.", status_code=503,
                                         headers={STARTING_HEADER: "1", "Retry-After": "1"})
        await response(scope, receive, send)
