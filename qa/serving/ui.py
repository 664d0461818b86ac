"""The chat UI: a thin Gradio layer over `qa.Assistant` that renders its dataclasses as escaped HTML.

Everything that comes from a document is passed through `esc()`; the only markup in the answer and
the sources panel is built here, so a document cannot inject tags, handlers or templates.
"""

from __future__ import annotations

import contextlib
import html
import re
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, tzinfo
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from ..errors import IndexDamagedError, IndexMissingError, QAError
from ..llm import local_missing
from ..settings import Settings, bounds
from ..types import Answer, Citation, FileResult, Passage, Status
from .uploads import stage, uploads_dir

if TYPE_CHECKING:
    import gradio as gr

    from ..assistant import Assistant
    from .writer import Writer

__all__ = ["build_app", "serve"]

Turn = tuple[str, str]  # (question, its sources-panel section)
# Run in the browser as a question is sent: the chat scrolls to its end, so the question and its answer are in
# view even after the reader scrolled up to an earlier turn (the chat follows new messages only from its end).
TO_THE_END = ("(...inputs) => { const w = document.querySelector('#qa-chat .bubble-wrap');"
              " if (w) w.scrollTo(0, w.scrollHeight); return inputs; }")
PENDING = '<div class="qa-answer qa-pending">Searching the documents…</div>'
# A model takes seconds (the local one tens of seconds) before its first sentence: say that it is writing.
WRITING = ('<div class="qa-answer qa-pending">Searching the documents, then the model writes the answer; '
           'its first sentence can take a while…</div>')
EMPTY_PANEL = '<p class="qa-empty">Ask a question: the passages its answer cites appear here.</p>'
_MARKER = re.compile(r"\[(\d+)\]")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
ASK_CONCURRENCY = 4  # questions answered at once (each on one torch thread); more wait their turn
UPLOAD_CONCURRENCY = 16  # uploads waiting on the writer at once (the writer itself indexes one at a time)


# --- rendering (pure functions: what the user sees) ----------------------------------------------
def esc(text: str) -> str:
    """HTML-escape text, also `{ } $` so that no template engine downstream can evaluate it."""
    return html.escape(text, quote=True).replace("{", "&#123;").replace("}", "&#125;").replace("$", "&#36;")


def source_id(turn: int, n: int) -> str:
    """The element id of citation `n` of conversation turn `turn` in the sources panel."""
    return f"qa-src-{turn}-{n}"


def render_answer(ans: Answer, turn: int) -> str:
    """The answer as HTML: escaped text whose `[n]` markers link (and hover-preview) their passages."""
    if not ans.answered:
        hint = ('<span class="qa-hint">The closest passages are listed under Sources as related, '
                "not cited.</span>") if ans.related else ""
        return f'<div class="qa-answer qa-notfound" dir="auto">{esc(ans.answer)}{hint}</div>'
    cited = {c.id: c for c in ans.citations}

    def link(m: re.Match[str]) -> str:
        c = cited.get(int(m.group(1)))
        if c is None:
            return m.group(0)
        # A generative backend may keep a sentence no passage supports (QA_KEEP_UNVERIFIED).
        tip = c.text if c.verified else f"Not verified by the passage: {c.text}"
        return (f'<a class="qa-cite{"" if c.verified else " qa-unverified"}" href="#{source_id(turn, c.id)}" '
                f'title="{esc(tip)}" aria-label="Source {c.id}">[{c.id}]</a>')

    return f'<div class="qa-answer" dir="auto">{_MARKER.sub(link, esc(ans.answer))}</div>'


def highlight(c: Citation) -> str:
    """The citation's passage, escaped, with the cited span inside <mark> and its answer words in <b>."""
    a, b = c.start - c.passage_start, c.end - c.passage_start
    if not c.passage or not 0 <= a <= b <= len(c.passage) or c.passage[a:b] != c.text:
        return f"<mark>{esc(c.text)}</mark>"
    p = c.passage
    cited = esc(p[a:b])
    if c.answer_span and c.start <= c.answer_span[0] < c.answer_span[1] <= c.end:  # the answer words in bold
        x, y = c.answer_span[0] - c.start, c.answer_span[1] - c.start
        cited = f"{esc(c.text[:x])}<b>{esc(c.text[x:y])}</b>{esc(c.text[y:])}"
    return f"{esc(p[:a])}<mark>{cited}</mark>{esc(p[b:])}"


def page_view(c: Citation, page_url: Callable[..., str]) -> str:
    """A PDF's or image's cited words on the page (a crop per page they are on), linking to the whole page."""
    pages = sorted({b.page for b in c.boxes})
    name = Path(c.source).name
    return "".join(
        f'<a class="qa-page" href="{esc(page_url(c.source, p, c.start, c.end))}" target="_blank" rel="noopener" '
        f'title="Open page {p} with the cited words highlighted">'
        f'<img src="{esc(page_url(c.source, p, c.start, c.end, crop=True))}" loading="lazy" '
        f'alt="{esc(f"{name}, page {p}: the cited words, highlighted")}"></a>' for p in pages)


def _score(item: Citation | Passage) -> str:
    # Two scales: a citation's is its sentence's support for the answer (what the not-found threshold reads),
    # a related passage's its retrieval match. Both called "score", a refusal beside a 0.83 looked arbitrary.
    if isinstance(item, Citation):
        return (f'<span class="qa-score" title="How well the cited sentence supports the answer (below '
                f'QA_MIN_SUPPORT an answer is not given)">support {item.score:.2f}</span>')
    return (f'<span class="qa-score" title="How well the passage as a whole matches the question (retrieval); '
            f'no sentence of it supported an answer">match {item.score:.2f}</span>')


def _card(n: int | None, item: Citation | Passage, body: str, elem_id: str, extra: str = "",
          figure: str = "") -> str:
    loc = f'<span class="qa-loc">{esc(item.location)}</span>' if item.location else ""
    if isinstance(item, Citation) and not item.verified:
        loc += '<span class="qa-flag">not verified</span>'
    num = f'<span class="qa-n">[{n}]</span>' if n is not None else ""
    return (f'<article class="qa-src{extra}" id="{elem_id}" tabindex="-1"><header>{num}'
            f'<bdi class="qa-file" title="{esc(item.source)}">{esc(Path(item.source).name)}</bdi>{loc}'
            f'{_score(item)}</header>'
            f'{figure}<p class="qa-passage" dir="auto">{body}</p></article>')


def render_sources(ans: Answer, turn: int, page_url: Callable[..., str] | None = None) -> str:
    """One turn's section of the sources panel: only the cited passages, or related ones if not found.

    With `page_url` (the server's signed image URLs), a PDF or image citation also shows its page.
    """
    total, ok = ans.total_sentences, ans.verified_sentences
    checked = f" · {ok} of {total} generated sentences verified against the passages" if total > ok else ""
    shown = ans.question if len(ans.question) <= 160 else ans.question[:159].rstrip() + "…"
    q = f'<p class="qa-q">for “<bdi>{esc(shown)}</bdi>” · {ans.seconds:.1f} s{checked}</p>'
    if ans.answered:
        cards = "".join(_card(c.id, c, highlight(c), source_id(turn, c.id), figure=page_view(c, page_url)
                              if page_url and c.page and c.boxes else "") for c in ans.citations)
        return f'<section class="qa-turn" id="qa-turn-{turn}"><h2>Sources</h2>{q}{cards}</section>'
    cards = "".join(_card(None, p, esc(p.text), f"qa-rel-{turn}-{i}", " qa-related")
                    for i, p in enumerate(ans.related, 1))
    none = "" if cards else '<p class="qa-empty">No passages were retrieved.</p>'
    return (f'<section class="qa-turn qa-turn-notfound" id="qa-turn-{turn}">'
            f"<h2>Related, not cited</h2>{q}{none}{cards}</section>")


def render_panel(sections: Sequence[str], busy: bool = False) -> str:
    """The sources panel: every turn's section; CSS shows the last one, a marker click shows its own."""
    state = "qa-busy" if busy else "qa-done"
    # Focusable and named: it scrolls (related passages are long), and a keyboard scrolls only what has focus.
    return (f'<div class="qa-sources {state}" tabindex="0" role="region" aria-label="Sources">'
            f'{"".join(sections) or EMPTY_PANEL}</div>')


def render_status(status: Status | None, error: str = "") -> str:
    """The index status line."""
    if status is None:
        return f'<div class="qa-status">{esc(error)}</div>'
    where = status.chroma_url or status.index_dir
    docs = "document" if status.documents == 1 else "documents"
    return (f'<div class="qa-status"><b>{status.documents}</b> {docs} · <b>{status.chunks}</b> chunks · '
            f"embeddings <b>{esc(status.embed_model)}</b> · answers <b>{esc(status.backend)}</b>"
            f'<span class="qa-path" title="{esc(where)}">index {esc(where)}</span></div>')


def render_banner(error: str) -> str:
    """The red banner over the page when the index is damaged: what is wrong and what to run."""
    return (f'<div class="qa-banner qa-damaged" role="alert" style="background:#fde8e8;color:#7f1d1d;'
            f'border:1px solid #f5b5b5;border-radius:8px;padding:10px 14px;font-weight:600">{esc(error)}</div>')


def render_ingest(results: Sequence[FileResult]) -> str:
    """One line per uploaded file: its status badge, name, chunks or the reason it failed."""
    rows = []
    for f in results:
        chunks = f' · {f.chunks} chunk{"s" * (f.chunks != 1)}' if f.chunks else ""
        # An upload of a name already in the library replaces that document, whoever added it: say so.
        replaced = " · replaced the document of the same name" if f.status == "updated" else ""
        detail = (f'<span class="qa-reason"> — {esc(f.reason)}</span>' if f.reason
                  else f'<span class="qa-reason">{replaced}{chunks}</span>' if replaced or chunks else "")
        rows.append(f'<li><span class="qa-badge {esc(f.status)}">{esc(f.status)}</span>'
                    f"{esc(Path(f.path).name)}{detail}</li>")
    return f'<ul class="qa-files">{"".join(rows)}</ul>'


# --- dates as the reader's clock shows them ------------------------------------------------------------
ZONE_COOKIE = "qa_tz"  # the browser's IANA time zone, set by the page's script (ui_assets.HEAD)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def reader_zone(request: Any) -> tzinfo | None:
    """The time zone of the request's browser, None if it did not say (then the server's is used)."""
    from urllib.parse import unquote
    from zoneinfo import ZoneInfo

    try:
        name = unquote(request.cookies.get(ZONE_COOKIE) or "")
        return ZoneInfo(name) if name else None
    except Exception:  # noqa: BLE001 - no request, no cookie jar, or a name that is no zone: the server's time
        return None


def local_time(t: float, zone: tzinfo | None = None, now: float | None = None) -> str:
    """A moment in the reader's time zone: "30 Nov 14:03" this year, "30 Nov 2025 14:03" in another."""
    when = datetime.fromtimestamp(t, zone)  # None: the server's local time
    this_year = (datetime.fromtimestamp(now if now is not None else time.time(), when.tzinfo)).year
    year = "" if when.year == this_year else f" {when.year}"
    return f"{when.day} {_MONTHS[when.month - 1]}{year} {when:%H:%M}"


# --- small helpers ----------------------------------------------------------------------------------
def answer_modes() -> tuple[str, ...]:
    """The answer backends the settings allow."""
    return tuple(get_args(Settings.model_fields["llm"].annotation))


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """The first login of `user:password[,...]` as Gradio's auth tuple (`qa.serving.users` parses them all)."""
    from .users import parse_users

    users = parse_users(value)
    return next(iter(users.items())) if users else None


def exposure_warning(host: str, credentials: tuple[str, str] | None) -> str:
    """The loud warning for a server that other machines can reach without a login, else ""."""
    if credentials is not None or host in _LOOPBACK:
        return ""
    return (f"\n*** WARNING: serving on {host} with no login: anyone who can reach this machine can read "
            "your documents and add files. Use --auth user:password (or QA_AUTH). ***\n")


EMPTY_CHAT = ("No documents yet. Add files under Documents → Add documents (or run qa ingest seeds/), "
              "then ask about them here.")
ASK_CHAT = "Ask about the indexed documents. Answers cite the exact passages they quote."


def index_is_empty(assistant: Assistant) -> bool:
    """Whether there is nothing to answer from yet: no index, or one without documents."""
    try:
        return assistant.status().documents == 0
    except IndexMissingError:
        return True
    except QAError:
        return False  # another problem (a Chroma server down): the status line and answers say which


def _message(e: QAError) -> str:
    if isinstance(e, IndexMissingError):
        return f"{e} (or add files under Documents)"
    return str(e)


# --- the app ----------------------------------------------------------------------------------------
def _forget_browser_copies(files: list[str]) -> None:
    """Delete Gradio's copies of uploaded files once qa has its own: Gradio keeps every upload in its cache
    folder (/tmp/gradio) for as long as the server runs, a second copy of the library growing on disk."""
    from gradio.utils import get_upload_folder

    cache = Path(get_upload_folder()).resolve()
    for f in files:
        path = Path(f).resolve()
        if cache in path.parents:
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # its own folder (Gradio names one per upload), if now empty


def build_app(assistant: Assistant, writer: Writer | None = None,
              page_url: Callable[..., str] | None = None) -> gr.Blocks:
    """The chat UI over an assistant; uploads go to `writer` (the server's one background writer)."""
    import gradio as gr

    from .writer import Writer, metered, prepare

    writer = writer or Writer(assistant)
    engines: dict[str, Any] = {assistant.settings.llm: assistant}

    def engine(mode: str) -> Assistant:
        if mode not in engines:
            engines[mode] = type(assistant)(assistant.settings, llm=mode)
        return engines[mode]

    def status_html() -> str:
        try:
            status = assistant.status()
            if status.documents == 0:
                return render_status(None, "No documents yet: add files below (or run qa ingest seeds/).")
            return render_status(status)
        except IndexMissingError:
            return render_status(None, "No index yet: add documents below to create one.")
        except QAError as e:
            return render_status(None, str(e))

    def banner_html() -> str:
        try:
            assistant.store()
        except IndexDamagedError as e:
            return render_banner(str(e))
        except QAError:
            pass
        return ""

    def warm() -> None:
        # Load the models while the visitor reads the page; a question waits for this on the parts lock.
        try:
            prepare(assistant, writer.parts_lock)
        except QAError:
            pass  # no index yet: the status line says so

    from .ui_chats import Chats

    chats = Chats(assistant, page_url)

    def ask(question: str, chat: list[dict[str, Any]], turns: list[Turn], top_k: float,
            mode: str, chat_id: str | None, scope: list[str] | None = None,
            request: Any = None) -> Iterator[tuple[Any, ...]]:
        q = question.strip()
        if not q:
            gr.Warning("Type a question first.")
            yield chat, render_panel([s for _, s in turns]), turns, question, "", chat_id
            return
        n = len(turns) + 1
        chat = [*chat, {"role": "user", "content": f'<div class="qa-question" dir="auto">{esc(q)}</div>'},
                {"role": "assistant", "content": PENDING if mode == "extractive" else WRITING}]
        earlier = [s for _, s in turns]
        yield chat, render_panel(earlier, busy=True), turns, "", "", chat_id
        section = ""
        asked_in = chat_id  # a new conversation is saved with its first answer: none if that fails
        try:
            # Stored in the open conversation (a new one if none), whose questions make the history.
            eng = engine(mode)
            prepare(eng, writer.parts_lock)
            # Metered inside: an answer the page leaves is finished by the server in the background, in turn too.
            answers, chat_id = chats.answers(eng, q, [t for t, _ in turns], chat_id, request,
                                             partial(metered, assistant=eng, writer=writer), top_k=int(top_k),
                                             sources=scope or None)
            yield chat, render_panel(earlier, busy=True), turns, "", "", chat_id  # the conversation it is stored in
            for ans in answers:
                chat[-1] = {"role": "assistant", "content": render_answer(ans, n)}
                section = render_sources(ans, n, page_url)
                yield chat, render_panel([*earlier, section], busy=True), turns, "", "", chat_id
        except QAError as e:
            chat[-1] = {"role": "assistant", "content": f'<div class="qa-answer qa-error">{esc(_message(e))}</div>'}
            # The next question goes to the conversation this one was asked in; a new one that was never saved
            # would be "deleted (in another window)".
            yield chat, render_panel(earlier), turns, "", _message(e), asked_in
            return
        turns = [*turns, (q, section)]
        yield chat, render_panel([s for _, s in turns]), turns, "", "", chat_id

    ask.__annotations__["request"] = gr.Request  # how Gradio knows to pass the request (its login)

    tracker = gr.Progress()  # Gradio finds the progress bar by this default value

    def upload(files: list[str] | None, progress: gr.Progress = tracker) -> tuple[Any, ...]:
        if not files:
            return gr.skip(), gr.skip(), gr.skip(), ""
        try:  # a damaged index refuses the files before one of them is saved into its folder
            assistant.store(create=True)
        except IndexDamagedError as e:
            return gr.skip(), status_html(), None, str(e)
        try:
            writer.check_room()  # before an upload replaces a file of the same name
        except QAError as e:
            return gr.skip(), gr.skip(), None, str(e)
        try:  # saved apart, moved into the library when the writer indexes them (qa.serving.uploads)
            staged = stage([(Path(f).name, Path(f)) for f in files], uploads_dir(assistant),
                           assistant.settings.max_file_mb)
        except QAError as e:
            return gr.skip(), gr.skip(), None, str(e)
        finally:
            _forget_browser_copies(files)
        results: list[FileResult] = list(staged.refused)
        if staged.files:
            # The server's one writer indexes it; questions go on being answered meanwhile.
            try:
                job = writer.submit(staged)
            except QAError as e:
                return render_ingest(results), status_html(), None, str(e)
            while not job.finished:
                if job.state == "queued":
                    ahead = f"{job.position} upload{'s' * (job.position != 1)} ahead"
                    progress(0, desc=f"Queued: {ahead}")
                elif job.state == "waiting":  # another ingest holds the index: the writer tries again
                    progress(0, desc="Waiting for another ingest to finish")
                else:
                    progress(job.done / max(job.total, 1),
                             desc=f"Indexing {job.current} ({int(job.done)}/{job.total})")
                job = writer.wait(job.id, timeout=5, changed=job)
            if job.state == "failed":
                return render_ingest(results), status_html(), None, job.error
            results = list(job.results)  # the refused files first, then what the ingest did
        failed = [r for r in results if r.status == "failed"]
        if failed:
            gr.Warning(f"{len(failed)} of {len(results)} files could not be indexed; see the list for why.")
        return render_ingest(results), status_html(), None, ""

    def check_mode(chosen: str) -> None:
        # Said when the mode is chosen, not only at the first question.
        s = assistant.settings
        if chosen == "local" and (missing := local_missing(s.local_model)):
            gr.Warning(esc(missing))
        elif chosen == "openai" and not s.openai_api_key and not s.openai_base_url:
            gr.Warning("The openai mode needs a key: set OPENAI_API_KEY (or QA_OPENAI_BASE_URL for a server of "
                       "your own) and restart qa serve; until then choose extractive or local.")

    def complain(problem: str) -> None:
        # Raised in an event of its own, so the toast does not put the chat and panels in an error state.
        if problem:
            raise gr.Error(esc(problem), print_exception=False)

    lo, hi = bounds("top_k")
    with gr.Blocks(title="qa — answers from your documents", analytics_enabled=False) as app:
        turns = gr.State([])
        problem = gr.State("")
        chat_id = gr.State(None)  # the open saved conversation
        banner = gr.HTML(banner_html, elem_id="qa-banner", js_on_load=None)
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=320):
                gr.Markdown("# qa\nAnswers from your documents, every sentence cited.", elem_id="qa-title")
                from .ui_chats import build_panel, wire

                chat = gr.Chatbot(
                    show_label=False, height="calc(100vh - 330px)", min_height=260, render_markdown=False,
                    sanitize_html=True, allow_tags=False, latex_delimiters=[], feedback_options=None,
                    buttons=[], elem_id="qa-chat", autoscroll=True,
                    placeholder=EMPTY_CHAT if index_is_empty(assistant) else ASK_CHAT,
                )
                with gr.Row(equal_height=True):
                    box = gr.Textbox(label="Question", show_label=False, placeholder="Ask a question…",
                                     lines=1, max_lines=4, scale=5, min_width=160, elem_id="qa-question",
                                     autofocus=True, submit_btn=False)
                    send = gr.Button("Ask", variant="primary", scale=1, min_width=70, elem_id="qa-ask")
                with gr.Accordion("Settings", open=False, elem_id="qa-settings"):
                    with gr.Row():
                        top_k = gr.Slider(lo, hi, value=assistant.settings.top_k, step=1,
                                          label="Passages to retrieve (top-k)", elem_id="qa-topk")
                        mode = gr.Radio(list(answer_modes()), value=assistant.settings.llm,
                                        label="Answer mode", elem_id="qa-mode")
                # Below the question box in the page itself (not moved there by CSS), so Tab reaches it next.
                panel = build_panel(chats)
            with gr.Column(scale=2, min_width=300):
                sources = gr.HTML(render_panel([]), elem_id="qa-sources", container=True, padding=True,
                                  js_on_load=None)
                with gr.Accordion("Documents", open=True, elem_id="qa-docs"):
                    status = gr.HTML(status_html, elem_id="qa-status", js_on_load=None)
                    files = gr.File(label="Add documents", file_count="multiple",
                                    type="filepath", elem_id="qa-upload", height=120)
                    results = gr.HTML("", elem_id="qa-ingest", js_on_load=None)
                from .ui_library import library_panel

                library = library_panel(assistant, writer, status, status_html)

        outs = [chat, sources, turns, box, problem, chat_id]
        after_ask = wire(chats, panel, app, chat, sources, turns, chat_id)
        # Named API endpoints: "/ask" and "/upload" (scripts, load tests), and "/status_html" (the status line).
        # Questions run side by side (ASK_CONCURRENCY at once, both buttons sharing the slots); an upload
        # waits for the writer in its own slots, so neither waits for the other.
        asking = []
        for trigger, api in ((send.click, "ask"), (box.submit, False)):
            asking.append(trigger(ask, [box, chat, turns, top_k, mode, chat_id, library.scope], outs,
                                  concurrency_id="ask", concurrency_limit=ASK_CONCURRENCY, show_progress="minimal",
                                  api_name=api, js=TO_THE_END))
            after_ask(asking[-1].then(complain, problem, None, api_name=False))
        # Opening another conversation, a new one, or deleting this one stops the page following an answer still
        # being written: it would otherwise take the page back to its own conversation when it ends, and the next
        # question, asked in the one now open, was dropped or stored in the other. (The server finishes the answer
        # and stores it in its own conversation: qa.conversations.)
        for switch in (panel["list"].input, panel["new"].click, panel["yes"].click):
            switch(None, None, None, cancels=asking, queue=False, api_name=False)
        files.upload(upload, [files], [results, status, files, problem], concurrency_id="upload",
                     concurrency_limit=UPLOAD_CONCURRENCY, api_name="upload",
                     show_progress_on=results).then(  # one bar, over the results it fills (not over each output)
            complain, problem, None, api_name=False).then(library.refresh, library.inputs, library.outputs,
                                                          api_name=False)
        app.load(status_html, None, status, api_name=False)
        app.load(banner_html, None, banner, api_name=False)
        app.load(library.load, library.load_inputs, library.outputs, api_name=False)
        app.load(warm, None, None, concurrency_id="warm", show_progress="hidden", api_name=False)
        mode.change(check_mode, mode, None, api_name=False, show_progress="hidden")
        # Settings live in the browser (localStorage), so a reload keeps them: they are each reader's own.
        kept = gr.BrowserState({}, storage_key="qa-settings")

        def keep(k: float, m: str) -> dict[str, Any]:
            return {"top_k": int(k), "mode": m}

        def restore(saved: dict[str, Any] | None) -> tuple[Any, Any]:
            saved = saved if isinstance(saved, dict) else {}
            k, m = saved.get("top_k"), saved.get("mode")
            return (gr.update(value=k) if isinstance(k, int) and lo <= k <= hi else gr.skip(),
                    gr.update(value=m) if m in answer_modes() else gr.skip())

        for setting in (top_k.change, mode.change):
            setting(keep, [top_k, mode], kept, queue=False, api_name=False, show_progress="hidden")
        app.load(restore, kept, [top_k, mode], api_name=False, show_progress="hidden")
    secret = browser_secret(Path(assistant.settings.index_dir))
    for block in app.blocks.values():
        if secret and isinstance(block, gr.BrowserState):
            block.secret = secret
    return app


def browser_secret(index_dir: Path) -> str | None:
    """The key the page's saved settings, scope and open conversation are encrypted with, kept beside the
    index: Gradio draws a new one at every start, so a server restart lost them all at the next reload.
    None (Gradio's own) if the index folder cannot keep it."""
    import os
    import secrets

    path = index_dir / "ui-secret"
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        pass
    except OSError:
        return None
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another server on this index wrote it first
        return browser_secret(index_dir)
    except OSError:
        return None
    key = secrets.token_urlsafe(24)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


def _theme() -> Any:
    import gradio as gr

    # System fonts: the default theme would fetch Google Fonts, which an offline machine cannot reach.
    theme = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                           font_mono=["ui-monospace", "monospace"])
    # Text at 4.5:1 or more (WCAG AA, checked by axe in tests/test_ui_a11y.py): Soft's indigo-500 accent is 4.3:1
    # on the page (the citation markers, white on the Ask button and on a selected option), its labels 3.6:1 on
    # their indigo-100 tab, its grey for hints and placeholders (#9ca3af) 2.5:1. One shade darker each (lighter
    # in dark mode; the accent has no dark variant: qa's CSS lightens the markers there).
    return theme.set(
        color_accent="*primary_600", button_primary_background_fill="*primary_600",
        button_primary_background_fill_hover="*primary_700", button_primary_border_color="*primary_600",
        button_secondary_background_fill_hover_dark="*primary_600",
        checkbox_label_background_fill_selected="*primary_600",
        block_label_text_color="*primary_700", block_title_text_color="*primary_700",
        body_text_color_subdued="*neutral_600", body_text_color_subdued_dark="*neutral_300",
        input_placeholder_color="*neutral_500",
        input_placeholder_color_dark="*neutral_300",
    )


def serve(assistant: Assistant, host: str = "127.0.0.1", port: int = 7860, auth: str | None = None) -> None:
    """Run the chat UI (and the HTTP API) until interrupted: `qa.serving.server.serve`."""
    from .server import serve as serve_app

    serve_app(assistant, host=host, port=port, auth=auth)
