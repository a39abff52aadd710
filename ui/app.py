"""The imagesim web page: `build_demo(gallery)` lays out the Gradio Blocks and wires the handlers (`serve.py` runs it).

The page talks to `imagesim_ui.handlers` (plain functions) and the public API to `imagesim_ui.api`; this module only
connects them to components. Every UI event is private (not in the API docs, not callable by gradio_client); the
three named API endpoints are the only public ones. All searching shares one concurrency group sized for a 2-core
machine, and indexing has its own group of one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from imagesim.errors import ImagesimError
from imagesim.search import Gallery

from . import api
from .faces import FACES_NEED_PHOTO
from .filterbar import FilterBar, read
from .handlers import NEEDS_PHOTO, Handlers
from .outcome import Outcome
from .present import shown_path, text_html
from .tabs import PRIVATE, RUN, WORK, WORK_LIMIT, FacesTab, Panel, PeopleTab, Queued, note_html, toast
from .thumbs import Thumbnails

DEFAULT_K = 24
LIBRARY_PAGE = 24  # photos per "Show more" before any query

CSS = (Path(__file__).with_name("style.css")).read_text()
KEYS_JS = (Path(__file__).with_name("keys.js")).read_text()


def theme() -> gr.themes.Base:
    # System fonts only: a self-hosted page makes no request to a font CDN.
    sans = ["Inter", "ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
    return gr.themes.Soft(primary_hue="indigo", neutral_hue="slate", radius_size="lg", font=sans,
                          font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"])


def _header(status: str) -> str:
    """The top bar: name, tagline and the index status, as escaped plain text (never markup: a model file's name
    may hold `**` or backticks)."""
    text = text_html(status)
    return ("<div class='topline'><div class='brand'><span class='logo'>◎</span> imagesim"
            "<span class='tagline'>find photos like this one</span></div>"
            f"<div class='status' id='status'>{text}</div></div>")


def photo_input(**kwargs: Any) -> gr.Image:
    """A gr.Image that hands over any uploaded file, so imagesim's own decoder explains what is wrong with it.

    Plain gr.Image opens the upload with Pillow before the handler runs and answers a non-image with a bare "Error".
    (Wrapped on the instance: subclassing a Gradio component makes Gradio write a .pyi stub beside this module.)
    """
    comp = gr.Image(**kwargs)
    original = comp.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return original(payload)
        except Exception:  # noqa: BLE001 - the handler's load_image gives the one-line reason
            return getattr(payload, "path", None)

    comp.preprocess = preprocess  # type: ignore[method-assign]
    return comp


def build_demo(gallery: Gallery, *, thumbs: Thumbnails | None = None, handlers: Handlers | None = None,
               k: int = DEFAULT_K) -> gr.Blocks:
    """The page over an open gallery. The Same look, Faces, People and Duplicates tabs appear when the database
    holds their data (style vectors, faces turned on, near-duplicate vectors)."""
    if handlers is None:
        if thumbs is None:
            from gradio.utils import get_upload_folder

            # Inside Gradio's own temp folder: served from there as they are, never copied again.
            thumbs = Thumbnails(Path(get_upload_folder()) / "imagesim-thumbs", [], [str(gallery.store.folder)])
        handlers = Handlers(gallery, thumbs)
    h = handlers
    h.status()  # learn the gallery roots before the first thumbnail is asked for

    with gr.Blocks(title="imagesim · photo search", analytics_enabled=False, fill_width=True,
                   delete_cache=(3600, 86400)) as demo:  # uploads leave the server after a day
        with gr.Row(elem_id="topbar", equal_height=True):
            status = gr.HTML(_header(""), elem_id="header", scale=1)
            index_btn = gr.Button("↻ Index now", size="sm", variant="secondary", elem_id="index-now", scale=0,
                                  min_width=120)
        last = gr.State(None)  # the current query: ("photo", file) or ("text", words); None = the library
        library_page = gr.State(0)
        bar = FilterBar(h.people_names())  # remembered while the page is open; every tab reads it
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300, elem_id="query"):
                upload = photo_input(label="Your photo", type="filepath", sources=["upload", "clipboard"], height=300,
                                     elem_id="upload", buttons=[],
                                     placeholder="Drop a photo here, paste one (Ctrl+V) or click to choose a file")
                text = gr.Textbox(placeholder="…or describe it in words", show_label=False, lines=1,
                                  max_lines=1, elem_id="text-query", submit_btn="Search")
                with gr.Row(elem_id="compose"):
                    plus = gr.Textbox(label="and", placeholder="at sunset", max_lines=1, min_width=120,
                                      elem_id="plus-text")
                    minus = gr.Textbox(label="but not", placeholder="people", max_lines=1, min_width=120,
                                       elem_id="minus-text")
                count = gr.Slider(4, 60, value=k, step=4, label="Results", elem_id="count")
                message = gr.HTML(elem_id="message")
            with gr.Column(scale=3, min_width=320, elem_id="results-col"):
                with gr.Tabs(elem_id="tabs"):
                    with gr.Tab("Similar", id="similar"):
                        heading = gr.HTML("<p class='note'>Your library, newest first</p>", elem_id="heading")
                        similar = Panel(h, "Similar photos")
                        show_more = gr.Button("Show more", size="sm", visible=False, elem_id="show-more")
                    style = faces = people = dups = None
                    if h.has_style():
                        with gr.Tab("Same look", id="style"):
                            blend = gr.Slider(0, 1, value=1.0, step=0.05, label="Content ⟷ style", elem_id="blend",
                                              info="0 = what the photo shows, 1 = how it looks")
                            style_note = gr.HTML(note_html(NEEDS_PHOTO), elem_classes=["tab-note"])
                            style = Panel(h, "Same look")
                    if h.has_faces():
                        with gr.Tab("Faces", id="faces"):
                            faces = FacesTab(h, FACES_NEED_PHOTO)
                        with gr.Tab("People", id="people") as people_tab:
                            people = PeopleTab(h)
                    if h.has_duplicates():
                        with gr.Tab("Duplicates", id="duplicates") as dups_tab:
                            with gr.Row():
                                dups_kind = gr.Radio([("Copies", "copies"), ("Similar shots", "similar")],
                                                     value="copies", show_label=False, scale=3)
                                dups_btn = gr.Button("Find duplicates", size="sm", scale=1)
                            dups = Panel(h, "Duplicates")
                            with gr.Row():
                                dups_dir = gr.Textbox(placeholder="folder for the extra copies", show_label=False,
                                                      scale=3)
                                dups_move = gr.Button("Move extra copies…", size="sm", scale=1)
                            with gr.Row(visible=False) as dups_confirm:
                                dups_question = gr.HTML()
                                dups_yes = gr.Button("Yes, move them", variant="stop", size="sm")
                                dups_no = gr.Button("Cancel", size="sm")

        def show(out: Outcome) -> tuple[Any, ...]:
            return (*Panel.values(out), toast(out))

        searched = [*similar.outputs(), message, heading, show_more]
        filtered = bar.inputs()

        def similar_values(out: Outcome, n: int) -> tuple[Any, ...]:
            # "Load more" while the last page came back full: there may be more
            # no results: the reason also stands where the results would be (a filter nobody passes, ...)
            empty = not out.items and bool(out.message)
            return (*show(out), gr.update(value=note_html(out.message) if empty else "", visible=empty),
                    gr.update(value="Load more", visible=len(out.items) >= int(n)))

        # ---- the library, before any query ------------------------------------------------------------------
        def library(page: int, *values: Any) -> tuple[Any, ...]:
            asked = read(*values)
            out = Outcome(message=asked.error) if asked.error else h.library(page, LIBRARY_PAGE, asked.filters)
            title = note_html(out.message) if out.message else "<p class='note'>Your library, newest first</p>"
            return (*show(out), gr.update(value=title, visible=True),
                    gr.update(value="Show more", visible=bool(out.extra)), page)

        def query(q: tuple[str, str], n: int, more: str, less: str, values: tuple[Any, ...],
                  offset: int = 0) -> Outcome:
            asked = read(*values)
            if asked.error:
                return Outcome(message=asked.error)
            search = h.search_photo if q[0] == "photo" else h.search_text
            return search(q[1], n, plus=more, minus=less, filters=asked.filters, offset=offset, sort=asked.sort)

        demo.load(lambda *v: library(0, *v), filtered, [*searched, library_page], **RUN)

        def load_more(q: tuple[str, str] | None, n: int, shown: list[Any], page: int, more: str, less: str,
                      *values: Any) -> tuple[Any, ...]:
            """The next page: of the library before any query, else of the query's results (offset paging)."""
            if q is None:
                return library(page + 1, *values)
            out = query(q, n, more, less, values, offset=len(shown))
            if out.items:
                out = Outcome(items=[*shown, *out.items])
            return (*similar_values(out, n)[:-1], gr.update(visible=len(out.items) >= len(shown) + int(n)), page)

        show_more.click(load_more, [last, count, similar.items, library_page, plus, minus, *filtered],
                        [*searched, library_page], **RUN)

        # ---- similar -------------------------------------------------------------------------------------------
        def by_photo(f: str | None, n: int, more: str, less: str, *values: Any) -> tuple[Any, ...]:
            if not f:
                return (*library(0, *values)[:-1], None, gr.update())
            # the words of an earlier text query go: the results are for this photo now
            return (*similar_values(query(("photo", f), n, more, less, values), n), ("photo", f), "")

        def by_text(t: str, n: int, more: str, less: str, *values: Any) -> tuple[Any, ...]:
            return (*similar_values(query(("text", t), n, more, less, values), n), ("text", t))

        def again(q: tuple[str, str] | None, n: int, more: str, less: str, *values: Any) -> tuple[Any, ...]:
            """The current query with a new number of results, other words or other filters."""
            if q is None:
                return library(0, *values)[:-1]
            return similar_values(query(q, n, more, less, values), n)

        ev = upload.change(by_photo, [upload, count, plus, minus, *filtered], [*searched, last, text], **RUN)
        text_ev = text.submit(by_text, [text, count, plus, minus, *filtered], [*searched, last], **RUN)
        redo = [last, count, plus, minus, *filtered]
        count_ev = count.change(again, redo, searched, trigger_mode="always_last", **RUN)
        changed = gr.on([plus.submit, minus.submit, *bar.triggers()], again, redo, searched,
                        trigger_mode="always_last", **RUN)
        # "More like this": the chosen photo becomes "Your photo" (its preview, which the search knows it by), so
        # every tab follows the new query and the photo is highlighted among its own results.
        similar.more.click(h.query_photo, [similar.selected], upload, **RUN)

        # ---- style ---------------------------------------------------------------------------------------------
        if style is not None:
            def run_style(q: tuple[str, str] | None, w: float, n: int, *values: Any) -> tuple[Any, ...]:
                asked = read(*values)
                out = Outcome(message=asked.error) if asked.error else h.search_style(
                    q[1] if q and q[0] == "photo" else None, w, n, filters=asked.filters, sort=asked.sort)
                return (*Panel.values(out), note_html(out.message))

            style_in = [last, blend, count, *filtered]
            # one after the other, as before: Similar, then Same look, then Faces (2 cores)
            ev = ev.then(run_style, style_in, [*style.outputs(), style_note], **RUN)
            changed = changed.then(run_style, style_in, [*style.outputs(), style_note], **RUN)
            for event in (text_ev, count_ev):
                event.then(run_style, style_in, [*style.outputs(), style_note], **RUN)
            blend.change(run_style, style_in, [*style.outputs(), style_note], trigger_mode="always_last", **RUN)
            style.more.click(h.query_photo, [style.selected], upload, **RUN)

        # ---- faces ---------------------------------------------------------------------------------------------
        if faces is not None:
            def run_faces(f: str | None, *values: Any) -> tuple[Any, ...]:
                asked = read(*values)
                return faces.run(f, asked.filters, asked.error)

            ev = ev.then(run_faces, [upload, *filtered], faces.outputs(), **RUN)
            changed = changed.then(run_faces, [upload, *filtered], faces.outputs(), **RUN)
        if people is not None:
            people_tab.select(people.load, None, people.outputs(), **RUN)
            # names given on the People tab become choices of the bar's person filter
            people_tab.select(lambda: gr.update(choices=h.people_names()), None, bar.people, **RUN)
        if dups is not None:
            def find_dups(kind: str, *values: Any) -> tuple[Any, ...]:
                asked = read(*values)
                return show(Outcome(message=asked.error) if asked.error else h.duplicates(kind, asked.filters))

            def ask_move(folder: str, *values: Any) -> tuple[Any, ...]:
                asked = read(*values)
                n = 0 if asked.error else len(h.extra_copies(asked.filters))
                text = (f"Move {n} extra copies (every copy but the suggested keeper) to {folder.strip()}? "
                        "Nothing is deleted; an undo list is written there.") if folder.strip() and n else (
                        "Type a folder first." if n else "No extra copies to move.")
                return note_html(text), gr.update(visible=True), gr.update(visible=bool(folder.strip() and n))

            def do_move(folder: str, kind: str, *values: Any) -> tuple[Any, ...]:
                asked = read(*values)
                done = h.move_extras(folder, asked.filters) if not asked.error else asked.error
                out = h.duplicates(kind, asked.filters)
                out.message = done
                return (*show(out), gr.update(visible=False))

            dup_views = [*dups.outputs(), message]
            dups_btn.click(find_dups, [dups_kind, *filtered], dup_views, **RUN)
            dups_kind.change(find_dups, [dups_kind, *filtered], dup_views, **RUN)
            dups_tab.select(find_dups, [dups_kind, *filtered], dup_views, **RUN)
            changed.then(find_dups, [dups_kind, *filtered], dup_views, **RUN)
            dups_move.click(ask_move, [dups_dir, *filtered], [dups_question, dups_confirm, dups_yes], **RUN)
            dups_yes.click(do_move, [dups_dir, dups_kind, *filtered], [*dup_views, dups_confirm], **RUN)
            dups_no.click(lambda: gr.update(visible=False), None, [dups_confirm], api_visibility=PRIVATE, queue=False)

        # ---- status and indexing (private: never a public API endpoint) ---------------------------------------
        def index_now(progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple[str, str]:  # noqa: B008
            progress(0, desc="Looking for new, changed and deleted photos…")
            msg = h.index_now()
            return _header(h.status_line()), note_html(msg)

        index_btn.click(index_now, None, [status, message], api_visibility=PRIVATE, concurrency_id="imagesim-index",
                        concurrency_limit=1, show_progress="full")
        demo.load(lambda: _header(h.status_line()), None, status, api_visibility=PRIVATE, queue=False)

        # ---- the public API: separate functions, hidden components --------------------------------------------
        _api_endpoints(gallery)
    # Events wait in one queue; searches share WORK_LIMIT slots (2 cores), indexing has one slot of its own.
    demo.queue(default_concurrency_limit=WORK_LIMIT, max_size=64)
    return demo


def _api_endpoints(gallery: Gallery) -> None:
    with gr.Group(visible=False):
        image = gr.File(label="image", type="filepath")
        text = gr.Textbox(label="text")
        k = gr.Number(label="k", value=api.DEFAULT_K, precision=0,
                      info=f"how many results, 1 to {api.MAX_K}; more is refused with a message")
        # the filters and paging: named, optional, empty by default (as the CLI's flags)
        filters = [gr.Textbox(label=name, value="") for name in api.FILTERS]
        offset = gr.Number(label="offset", value=0, precision=0)
        sort = gr.Textbox(label="sort", value="score")
        result = gr.JSON(label="results")
        buttons = [gr.Button(visible=False) for _ in range(3)]

    def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn` without its gallery argument, under its own name and parameter names (what the API docs and
        gradio_client show), with a user's error as a one-line message."""
        def call(*args: Any) -> Any:
            try:
                return fn(gallery, *args)
            except ImagesimError as exc:
                raise gr.Error(shown_path(str(exc)), print_exception=False) from None

        signature = inspect.signature(fn)
        shown = signature.replace(parameters=list(signature.parameters.values())[1:])
        call.__signature__ = shown  # type: ignore[attr-defined]
        call.__name__ = fn.__name__
        call.__doc__ = fn.__doc__
        return call

    # Always all three: /faces on a database without faces answers with that one line, like the CLI does.
    common = Queued(concurrency_id=WORK, concurrency_limit=WORK_LIMIT)
    paged = [*filters, offset, sort]
    buttons[0].click(guarded(api.search), [image, k, *paged], result, api_name="search", **common)
    buttons[1].click(guarded(api.search_text), [text, k, *paged], result, api_name="search_text", **common)
    buttons[2].click(guarded(api.faces), [image, k, *filters], result, api_name="faces", **common)
