"""The chat UI: a thin Gradio layer over `qa.Assistant` that renders its dataclasses as escaped HTML.

Everything that comes from a document is passed through `esc()`; the only markup in the answer and
the sources panel is built here, so a document cannot inject tags, handlers or templates.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, get_args

from .errors import ConfigError, IndexMissingError, QAError
from .settings import Settings
from .types import Answer, Citation, FileResult, Passage, Status

if TYPE_CHECKING:
    import gradio as gr

    from .assistant import Assistant

__all__ = ["build_app", "serve"]

Turn = tuple[str, str]  # (question, its sources-panel section)
PENDING = '<div class="qa-answer qa-pending">Searching the documents…</div>'
EMPTY_PANEL = '<p class="qa-empty">Ask a question: the passages its answer cites appear here.</p>'
_MARKER = re.compile(r"\[(\d+)\]")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


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
        return f'<div class="qa-answer qa-notfound">{esc(ans.answer)}{hint}</div>'
    cited = {c.id: c for c in ans.citations}

    def link(m: re.Match[str]) -> str:
        c = cited.get(int(m.group(1)))
        if c is None:
            return m.group(0)
        # A generative backend may keep a sentence no passage supports (QA_KEEP_UNVERIFIED).
        tip = c.text if c.verified else f"Not verified by the passage: {c.text}"
        return (f'<a class="qa-cite{"" if c.verified else " qa-unverified"}" href="#{source_id(turn, c.id)}" '
                f'title="{esc(tip)}" aria-label="Source {c.id}">[{c.id}]</a>')

    return f'<div class="qa-answer">{_MARKER.sub(link, esc(ans.answer))}</div>'


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


def _card(n: int | None, item: Citation | Passage, body: str, elem_id: str, extra: str = "") -> str:
    loc = f'<span class="qa-loc">{esc(item.location)}</span>' if item.location else ""
    if isinstance(item, Citation) and not item.verified:
        loc += '<span class="qa-flag">not verified</span>'
    num = f'<span class="qa-n">[{n}]</span>' if n is not None else ""
    return (f'<article class="qa-src{extra}" id="{elem_id}"><header>{num}'
            f'<span class="qa-file" title="{esc(item.source)}">{esc(Path(item.source).name)}</span>{loc}'
            f'<span class="qa-score">score {item.score:.2f}</span></header>'
            f'<p class="qa-passage">{body}</p></article>')


def render_sources(ans: Answer, turn: int) -> str:
    """One turn's section of the sources panel: only the cited passages, or related ones if not found."""
    total, ok = ans.total_sentences, ans.verified_sentences
    checked = f" · {ok} of {total} generated sentences verified against the passages" if total > ok else ""
    q = f'<p class="qa-q">for “{esc(ans.question)}” · {ans.seconds:.1f} s{checked}</p>'
    if ans.answered:
        cards = "".join(_card(c.id, c, highlight(c), source_id(turn, c.id)) for c in ans.citations)
        return f'<section class="qa-turn" id="qa-turn-{turn}"><h3>Sources</h3>{q}{cards}</section>'
    cards = "".join(_card(None, p, esc(p.text), f"qa-rel-{turn}-{i}", " qa-related")
                    for i, p in enumerate(ans.related, 1))
    none = "" if cards else '<p class="qa-empty">No passages were retrieved.</p>'
    return (f'<section class="qa-turn qa-turn-notfound" id="qa-turn-{turn}">'
            f"<h3>Related, not cited</h3>{q}{none}{cards}</section>")


def render_panel(sections: Sequence[str], busy: bool = False) -> str:
    """The sources panel: every turn's section; CSS shows the last one, a marker click shows its own."""
    state = "qa-busy" if busy else "qa-done"
    return f'<div class="qa-sources {state}">{"".join(sections) or EMPTY_PANEL}</div>'


def render_status(status: Status | None, error: str = "") -> str:
    """The index status line."""
    if status is None:
        return f'<div class="qa-status">{esc(error)}</div>'
    where = status.chroma_url or status.index_dir
    docs = "document" if status.documents == 1 else "documents"
    return (f'<div class="qa-status"><b>{status.documents}</b> {docs} · <b>{status.chunks}</b> chunks · '
            f"embeddings <b>{esc(status.embed_model)}</b> · answers <b>{esc(status.backend)}</b>"
            f'<span class="qa-path" title="{esc(where)}">index {esc(where)}</span></div>')


def render_ingest(results: Sequence[FileResult]) -> str:
    """One line per uploaded file: its status badge, name, chunks or the reason it failed."""
    rows = []
    for f in results:
        detail = (f'<span class="qa-reason"> — {esc(f.reason)}</span>' if f.reason
                  else f'<span class="qa-reason"> · {f.chunks} chunk{"s" * (f.chunks != 1)}</span>' if f.chunks
                  else "")
        rows.append(f'<li><span class="qa-badge {esc(f.status)}">{esc(f.status)}</span>'
                    f"{esc(Path(f.path).name)}{detail}</li>")
    return f'<ul class="qa-files">{"".join(rows)}</ul>'


# --- small helpers ----------------------------------------------------------------------------------
def safe_name(name: str) -> str:
    """A bare file name: no folders (either slash), no control characters, never '.' or '..'."""
    base = re.sub(r"[\x00-\x1f\x7f]", "", PurePosixPath(name.replace("\\", "/")).name).strip()
    return base if base.strip(".") else "upload"


def save_uploads(files: Sequence[str | Path], folder: Path, max_mb: float) -> tuple[list[Path], list[FileResult]]:
    """Copy uploaded files into `folder` under their bare names; files over `max_mb` are refused."""
    folder.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    refused: list[FileResult] = []
    for f in files:
        src, dest = Path(f), folder / safe_name(Path(f).name)
        size = src.stat().st_size
        if size > max_mb * 1e6:
            refused.append(FileResult(dest.name, "failed", reason=(
                f"{size / 1e6:.1f} MB is over the {max_mb:g} MB limit (QA_MAX_FILE_MB)")))
            continue
        shutil.copyfile(src, dest)
        saved.append(dest)
    return saved, refused


def uploads_dir(assistant: Assistant) -> Path:
    """Where uploaded files are kept: a folder inside the index they were added to."""
    return Path(assistant.settings.index_dir).absolute() / "uploads"


def answer_modes() -> tuple[str, ...]:
    """The answer backends the settings allow."""
    return tuple(get_args(Settings.model_fields["llm"].annotation))


def _bounds(field: str) -> tuple[int, int]:
    meta = Settings.model_fields[field].metadata
    lo = next((int(m.ge) for m in meta if hasattr(m, "ge")), 1)
    hi = next((int(m.le) for m in meta if hasattr(m, "le")), 50)
    return lo, hi


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """`user:password` as Gradio's auth tuple."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ConfigError("The login must be given as user:password (--auth or QA_AUTH).")
    return user, password


def exposure_warning(host: str, credentials: tuple[str, str] | None) -> str:
    """The loud warning for a server that other machines can reach without a login, else ""."""
    if credentials is not None or host in _LOOPBACK:
        return ""
    return (f"\n*** WARNING: serving on {host} with no login: anyone who can reach this machine can read "
            "your documents and add files. Use --auth user:password (or QA_AUTH). ***\n")


def _message(e: QAError) -> str:
    if isinstance(e, IndexMissingError):
        return f"{e} (or add files under Documents)"
    return str(e)


# --- the app ----------------------------------------------------------------------------------------
def build_app(assistant: Assistant) -> gr.Blocks:
    """The chat UI over an assistant; `serve` launches it with its CSS and script."""
    import gradio as gr

    engines: dict[str, Any] = {assistant.settings.llm: assistant}

    def engine(mode: str) -> Assistant:
        if mode not in engines:
            engines[mode] = type(assistant)(assistant.settings, llm=mode)
        return engines[mode]

    def status_html() -> str:
        try:
            return render_status(assistant.status())
        except IndexMissingError:
            return render_status(None, "No index yet: add documents below to create one.")
        except QAError as e:
            return render_status(None, str(e))

    def warm() -> None:
        # Load the models while the visitor reads the page; a question waits for this in the queue.
        try:
            assistant.retriever()
            assistant.composer()
        except QAError:
            pass  # no index yet: the status line says so

    def ask(question: str, chat: list[dict[str, Any]], turns: list[Turn], top_k: float,
            mode: str) -> Iterator[tuple[Any, ...]]:
        q = question.strip()
        if not q:
            gr.Warning("Type a question first.")
            yield chat, render_panel([s for _, s in turns]), turns, question, ""
            return
        n = len(turns) + 1
        chat = [*chat, {"role": "user", "content": f'<div class="qa-question">{esc(q)}</div>'},
                {"role": "assistant", "content": PENDING}]
        earlier = [s for _, s in turns]
        yield chat, render_panel(earlier, busy=True), turns, "", ""
        section = ""
        try:
            for ans in engine(mode).stream(q, top_k=int(top_k), history=[t for t, _ in turns]):
                chat[-1] = {"role": "assistant", "content": render_answer(ans, n)}
                section = render_sources(ans, n)
                yield chat, render_panel([*earlier, section], busy=True), turns, "", ""
        except QAError as e:
            chat[-1] = {"role": "assistant", "content": f'<div class="qa-answer qa-error">{esc(_message(e))}</div>'}
            yield chat, render_panel(earlier), turns, "", _message(e)
            return
        turns = [*turns, (q, section)]
        yield chat, render_panel([s for _, s in turns]), turns, "", ""

    tracker = gr.Progress()  # Gradio finds the progress bar by this default value

    def upload(files: list[str] | None, progress: gr.Progress = tracker) -> tuple[Any, ...]:
        if not files:
            return gr.skip(), gr.skip(), gr.skip(), ""
        saved, results = save_uploads(files, uploads_dir(assistant), assistant.settings.max_file_mb)
        if saved:
            progress(0, desc="Indexing")

            def step(done: float, total: int, item: str) -> None:
                progress(done / max(total, 1), desc=f"Indexing {Path(item).name} ({int(done)}/{total})")

            try:
                report = assistant.ingest(*saved, progress=step)
            except QAError as e:
                return render_ingest(results), status_html(), None, str(e)
            results += report.files
            for r in report.files:  # keep only what the index holds
                if r.status == "failed" and Path(r.path) in saved:
                    Path(r.path).unlink(missing_ok=True)
        failed = [r for r in results if r.status == "failed"]
        if failed:
            gr.Warning(f"{len(failed)} of {len(results)} files could not be indexed; see the list for why.")
        return render_ingest(results), status_html(), None, ""

    def complain(problem: str) -> None:
        # Raised in an event of its own, so the toast does not put the chat and panels in an error state.
        if problem:
            raise gr.Error(esc(problem), print_exception=False)

    lo, hi = _bounds("top_k")
    with gr.Blocks(title="qa — answers from your documents", analytics_enabled=False) as app:
        turns = gr.State([])
        problem = gr.State("")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=320):
                gr.Markdown("# qa\nAnswers from your documents, every sentence cited.", elem_id="qa-title")
                chat = gr.Chatbot(
                    show_label=False, height="58vh", min_height=300, render_markdown=False,
                    sanitize_html=True, allow_tags=False, latex_delimiters=[], feedback_options=None,
                    buttons=[], elem_id="qa-chat", autoscroll=True,
                    placeholder="Ask about the indexed documents. Answers cite the exact passages they quote.",
                )
                with gr.Row(equal_height=True):
                    box = gr.Textbox(show_label=False, placeholder="Ask a question…",
                                     lines=1, max_lines=4, scale=5, min_width=160, elem_id="qa-question",
                                     autofocus=True, submit_btn=False)
                    send = gr.Button("Ask", variant="primary", scale=1, min_width=70, elem_id="qa-ask")
                with gr.Accordion("Settings", open=False, elem_id="qa-settings"):
                    with gr.Row():
                        top_k = gr.Slider(lo, hi, value=assistant.settings.top_k, step=1,
                                          label="Passages to retrieve (top-k)", elem_id="qa-topk")
                        mode = gr.Radio(list(answer_modes()), value=assistant.settings.llm,
                                        label="Answer mode", elem_id="qa-mode")
            with gr.Column(scale=2, min_width=300):
                sources = gr.HTML(render_panel([]), elem_id="qa-sources", container=True, padding=True,
                                  js_on_load=None)
                with gr.Accordion("Documents", open=True, elem_id="qa-docs"):
                    status = gr.HTML(status_html, elem_id="qa-status", js_on_load=None)
                    files = gr.File(label="Add documents", file_count="multiple",
                                    type="filepath", elem_id="qa-upload", height=120)
                    results = gr.HTML("", elem_id="qa-ingest", js_on_load=None)

        outs = [chat, sources, turns, box, problem]
        # Named API endpoints: "/ask" and "/upload" (scripts, load tests), and "/status_html" (the status line).
        for trigger, api in ((send.click, "ask"), (box.submit, False)):
            trigger(ask, [box, chat, turns, top_k, mode], outs, concurrency_id="engine",
                    show_progress="minimal", api_name=api).then(complain, problem, None, api_name=False)
        files.upload(upload, [files], [results, status, files, problem], concurrency_id="engine",
                     api_name="upload").then(
            complain, problem, None, api_name=False)
        chat.clear(lambda: ([], render_panel([]), [], "", ""), None, outs, queue=False, api_name=False)
        app.load(status_html, None, status, api_name=False)
        app.load(warm, None, None, concurrency_id="engine", show_progress="hidden", api_name=False)
    return app


def _theme() -> Any:
    import gradio as gr

    # System fonts: the default theme would fetch Google Fonts, which an offline machine cannot reach.
    return gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "monospace"])


def serve(assistant: Assistant, host: str = "127.0.0.1", port: int = 7860, auth: str | None = None) -> None:
    """Run the chat UI until interrupted; `auth` (or QA_AUTH) is `user:password`."""
    from .ui_assets import CSS, HEAD

    credentials = parse_auth(auth or os.environ.get("QA_AUTH"))
    warning = exposure_warning(host, credentials)
    if warning:
        print(warning, file=sys.stderr)
    app = build_app(assistant)
    app.queue(default_concurrency_limit=1)
    app.launch(server_name=host, server_port=port, auth=credentials, css=CSS, head=HEAD, theme=_theme(),
               max_file_size=f"{int(assistant.settings.max_file_mb * 1e6)}b", footer_links=[],
               show_error=False, ssr_mode=False, enable_monitoring=False, mcp_server=False,
               run_history=False, auth_message="qa: sign in to ask about the documents.")
