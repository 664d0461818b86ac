"""CSS and the one small script of the chat UI (kept apart so qa/serving/ui.py reads as layout and handlers)."""

CSS = """
/* Secondary text at 4.5:1 or more (WCAG AA): the theme's subdued grey (#9ca3af) was 2.4:1 on the cards. */
.gradio-container { max-width: 1280px !important; margin: 0 auto; --qa-subdued: #4b5563;
  --qa-accent: var(--color-accent); }
/* The theme's accent (indigo-600, qa.serving.ui._theme) is 2.8:1 on the dark page: a lighter indigo there. */
.dark .gradio-container { --qa-subdued: #d1d5db; --qa-accent: #a5b4fc; }
footer { display: none !important; }
#qa-title h1 { font-size: 1.35rem; margin: 0; }
#qa-title p { margin: 0; color: var(--qa-subdued); font-size: .9rem; }
.qa-status { font-size: .85rem; color: var(--qa-subdued); line-height: 1.5; }
.qa-status b { color: var(--body-text-color); font-weight: 600; }
.qa-status .qa-path { display: block; font-size: .78rem; color: var(--qa-subdued);
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.qa-answer, .qa-question { white-space: pre-wrap; line-height: 1.55; }
a.qa-cite { font-size: .75em; font-weight: 700; vertical-align: super; line-height: 0; padding: 0 .15em;
  text-decoration: none !important; color: var(--qa-accent) !important; cursor: pointer; border-radius: 3px; }
a.qa-cite:hover { background: var(--color-accent-soft); }
a.qa-cite:focus-visible { background: var(--color-accent-soft); outline: 2px solid var(--qa-accent); outline-offset: 1px; }
a.qa-cite.qa-unverified { color: var(--body-text-color-subdued) !important; text-decoration: underline dotted !important; }
.qa-flag { font-size: .72rem; font-weight: 600; color: #92400e; background: #fef3c7; border-radius: 9px; padding: 0 .45em; }
.qa-notfound { color: #92400e; }
.dark .qa-notfound { color: #fbbf24; }
.qa-notfound::before { content: "\\26A0\\FE0E  "; }
.qa-hint { display: block; font-size: .85em; color: var(--qa-subdued); margin-top: .25em; }
.qa-error { color: var(--error-text-color); }
.qa-pending { color: var(--body-text-color-subdued); font-style: italic; }
.qa-interrupted { color: #92400e; font-style: italic; border-left: 3px solid #d97706; padding-left: .5em; margin-top: .3em; }
.dark .qa-interrupted { color: #fbbf24; }
.qa-sources { max-height: 72vh; overflow-y: auto; padding-right: 2px; }
.qa-sources .qa-turn { display: none; }
.qa-sources .qa-turn:last-child { display: block; }
.qa-sources.qa-pinned .qa-turn { display: none; }
.qa-sources.qa-pinned .qa-turn.qa-active { display: block; }
.qa-turn h2 { font-size: .95rem; margin: 0 0 .15rem 0; }
.qa-turn .qa-q { font-size: .8rem; color: var(--qa-subdued); margin: 0 0 .6rem 0; }
.qa-empty { color: var(--qa-subdued); font-size: .9rem; padding: .5rem 0; }
.qa-src { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .55rem .7rem;
  margin-bottom: .6rem; background: var(--background-fill-primary); scroll-margin: 1rem;
  transition: box-shadow .3s, border-color .3s; }
.qa-src header { display: flex; gap: .5rem; align-items: baseline; font-size: .82rem; margin-bottom: .3rem;
  flex-wrap: wrap; }
.qa-src .qa-n { font-weight: 700; color: var(--qa-accent); }
.qa-src .qa-file { font-weight: 600; word-break: break-all; }
.qa-src .qa-loc, .qa-src .qa-score { color: var(--qa-subdued); }
.qa-src .qa-score { margin-left: auto; }
.qa-passage { white-space: pre-wrap; font-size: .85rem; line-height: 1.5; margin: 0;
  color: var(--qa-subdued); overflow-wrap: anywhere; }
.qa-passage mark { background: #fef08a; color: #111; padding: 0 .1em; border-radius: 2px;
  box-shadow: inset 0 -2px 0 #ca8a04; }  /* an underline too: the yellow alone is 1.1:1 against the card */
.qa-passage mark b { color: inherit; }  /* the theme's bold is light in dark mode: 1.05:1 on the yellow */
.qa-page { display: block; margin: .1rem 0 .45rem; cursor: zoom-in; }
.qa-page img { display: block; max-width: 100%; height: auto; background: #fff; border-radius: 4px;
  border: 1px solid var(--border-color-primary); margin-bottom: .25rem; }
.qa-related { border-style: dashed; opacity: .9; }
.qa-turn-notfound h2 { color: #92400e; }
.dark .qa-turn-notfound h2 { color: #fbbf24; }
.qa-src.qa-hover { border-color: var(--color-accent); }
.qa-src.qa-target { border-color: var(--color-accent); box-shadow: 0 0 0 3px var(--color-accent-soft); }
.qa-src:focus { outline: none; }
.qa-src:focus-visible { outline: 2px solid var(--qa-accent); outline-offset: 2px; }
.qa-files { list-style: none; padding: 0; margin: .25rem 0; font-size: .85rem; }
.qa-files li { padding: .15rem 0; overflow-wrap: anywhere; }
.qa-badge { display: inline-block; min-width: 5.5em; text-align: center; border-radius: 9px; font-size: .75rem;
  font-weight: 600; padding: 0 .5em; margin-right: .4em; background: #e5e7eb; color: #374151; }
.qa-badge.added, .qa-badge.updated { background: #dcfce7; color: #166534; }
.qa-badge.failed { background: #fee2e2; color: #991b1b; }
.qa-reason { color: var(--body-text-color-subdued); }
#qa-chat-list { max-height: 22vh; overflow-y: auto; }
/* The conversation list, however long, goes below the chat and its question box, which stay on the first screen. */
#qa-chat-list label { width: 100%; font-size: .85rem; }
.qa-chats-off { color: #92400e; background: #fef3c7; border-radius: 6px; padding: .35rem .6rem; font-size: .85rem; }
a.qa-cite.qa-stale { color: #92400e !important; text-decoration: line-through !important; }
.qa-src.qa-stale { border-color: #f59e0b; border-style: dashed; }
.qa-stale-note { display: block; font-weight: 600; color: #92400e; margin-bottom: .2rem; }
"""

# Markers in answers are links to "#qa-src-<turn>-<n>"; the panel hides all turns but the last, so a
# click (or Enter) shows the marker's own turn, scrolls its passage into view, outlines it and gives it the focus;
# Escape there goes back to the marker. Hover and keyboard focus on a marker outline its passage too.
HEAD = """
<style>
/* Here, not in CSS: Gradio scopes media queries in custom CSS to its inner container. */
@media (max-width: 640px) {
  .gradio-container .main.app { padding-left: 8px !important; padding-right: 8px !important; }
  .qa-sources { max-height: none !important; }
}
</style>
<script>
(() => {
  // Dates are shown in the reader's time zone: the server reads it from this cookie (qa.serving.ui.reader_zone).
  try {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone) document.cookie = `qa_tz=${encodeURIComponent(zone)}; path=/; max-age=31536000; SameSite=Lax`;
  } catch (e) { /* no Intl: the server's time zone */ }
  // Gradio's sanitizer drops aria-* attributes from the chat's HTML, so a marker was announced as "[1]": its
  // name is given here, whenever the chat renders (a streamed answer is rendered anew at each sentence).
  // The chat's one icon button (qa shows no share or copy button) deletes the conversation after asking
  // (qa.serving.ui_chats.wire), but Gradio labels it "Clear".
  const TRASH = 'Delete conversation';
  const name = () => {
    document.querySelectorAll('#qa-chat a.qa-cite:not([aria-label])').forEach((a) => {
      a.setAttribute('aria-label', `Source ${a.textContent.replace(/[^0-9]/g, '')}`);
    });
    document.querySelectorAll(`#qa-chat .top-panel button:not([aria-label="${TRASH}"])`).forEach((b) => {
      b.setAttribute('aria-label', TRASH); b.setAttribute('title', TRASH);
    });
  };
  new MutationObserver(name).observe(document.documentElement,
                                     {childList: true, subtree: true, attributeFilter: ['aria-label']});
  const target = (a) => document.getElementById((a.getAttribute('href') || '').slice(1));
  const cite = (ev) => ev.target instanceof Element ? ev.target.closest('a.qa-cite') : null;
  document.addEventListener('click', (ev) => {
    const a = cite(ev); if (!a) return;
    ev.preventDefault(); ev.stopPropagation();
    const el = target(a); if (!el) return;
    const panel = el.closest('.qa-sources'), turn = el.closest('.qa-turn');
    if (panel && turn) {
      panel.classList.add('qa-pinned');
      panel.querySelectorAll('.qa-turn').forEach((t) => t.classList.toggle('qa-active', t === turn));
    }
    document.querySelectorAll('.qa-src.qa-target').forEach((e) => e.classList.remove('qa-target'));
    el.classList.add('qa-target');
    el.scrollIntoView({behavior: 'smooth', block: 'nearest'});
    // The focus goes to the passage, as following the link would have taken it (prevented above): Enter on a
    // marker left the keyboard and a screen reader on the marker. Escape takes it back (below).
    el.focus({preventScroll: true});
  }, true);
  document.addEventListener('keydown', (ev) => {
    const card = ev.key === 'Escape' && ev.target instanceof Element ? ev.target.closest('.qa-src[id]') : null;
    const back = card && document.querySelector(`#qa-chat a.qa-cite[href="#${card.id}"]`);
    if (back) { ev.preventDefault(); back.focus(); }
  });
  // Enter opens the conversation whose entry in the list has the focus, as it follows a link (a radio button
  // takes only Space or a click).
  document.addEventListener('keydown', (ev) => {
    const e = ev.target;
    if (ev.key === 'Enter' && e instanceof HTMLInputElement && e.type === 'radio' && e.closest('#qa-chat-list')) {
      ev.preventDefault(); e.click();
    }
  });
  // The questions asked in the page before deleting (qa-chat-confirm, qa-doc-confirm): Escape is Cancel, and the
  // focus goes back to the button that asked, or to the question box once the conversation is deleted (the
  // buttons of the question hide, and a hidden button's focus is lost).
  let asker = null;  // the chat's trash button, its Delete or the library's Remove…
  document.addEventListener('click', (ev) => {
    const b = ev.target instanceof Element ? ev.target.closest('button') : null;
    if (!b) return;
    if (b.closest('#qa-chat .top-panel') || b.id === 'qa-chat-delete' || b.id === 'qa-doc-remove') asker = b;
    let back = null;
    if (b.id === 'qa-chat-yes') back = document.querySelector('#qa-question textarea');
    else if (b.id === 'qa-chat-no') {  // the trash button was drawn anew: the one there now
      back = asker?.isConnected && asker.id !== 'qa-doc-remove' ? asker
        : document.querySelector('#qa-chat .top-panel button');
    } else if (b.id === 'qa-doc-no' || b.id === 'qa-doc-yes') back = document.getElementById('qa-doc-remove');
    back?.focus();
  });
  document.addEventListener('keydown', (ev) => {
    const q = ev.key === 'Escape' && ev.target instanceof Element
      ? ev.target.closest('#qa-chat-confirm, #qa-doc-confirm') : null;
    if (!q) return;
    ev.preventDefault();
    document.getElementById(q.id === 'qa-chat-confirm' ? 'qa-chat-no' : 'qa-doc-no').click();
  });
  // A marker outlines its passage while the pointer is on it or it has the keyboard's focus.
  for (const [on, off] of [['mouseover', 'mouseout'], ['focusin', 'focusout']]) {
    document.addEventListener(on, (ev) => {
      const a = cite(ev); const el = a && target(a); if (el) el.classList.add('qa-hover');
    });
    document.addEventListener(off, (ev) => {
      const a = cite(ev); const el = a && target(a); if (el) el.classList.remove('qa-hover');
    });
  }
})();
</script>
"""
