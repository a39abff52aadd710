"""What the page does, as plain functions: no Gradio here, so every handler is testable without a browser.

Each handler returns data (thumbnail paths with captions, Markdown, result dicts) and a message; `ui/app.py` wires
them to components and turns a message into a toast. Style, faces, people and duplicates are always there; whether
a database holds their data (style or near-duplicate vectors, faces turned on) is asked of the gallery.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from imagesim.config import Settings
from imagesim.errors import ImagesimError
from imagesim.faces.people import People
from imagesim.images import load_image
from imagesim.indexer import IndexReport, run_index
from imagesim.search import Filters, Gallery, Match, Text

from .faces import FacesHandlers
from .outcome import Item, Outcome
from .people import PeopleHandlers
from .present import ago, friendly, human_size, photo_facts, shown_name, shown_path, text_html, upload_name, why
from .thumbs import NotInGallery, Thumbnails

THUMB_THREADS = 2  # the machine's two cores; cached thumbnails cost nothing
NOTHING_INDEXED = "no photos indexed yet: press “Index now” or run imagesim index PHOTO_DIR --db DB"
NEEDS_PHOTO = ("Same look compares photos, not words: drop a photo into “Your photo” (or pick a result and press "
               "“More like this”)")
NO_FILTER_MATCH = "no photo matches these filters"
BROWSER_FORMATS = {".jpg", ".jpeg", ".png", ".webp", ".gif"}  # what every browser shows as it is
FULL_SIZE_MAX_BYTES = 40 << 20  # a bigger original is shown as its preview (Download still gives the original)
WAITS_FOR_MODEL = "content search waits for the model"


class Handlers(FacesHandlers, PeopleHandlers):
    """The page's behaviour over one open `Gallery`."""

    def __init__(self, gallery: Gallery, thumbs: Thumbnails) -> None:
        self.gallery = gallery
        self.thumbs = thumbs

    def is_empty(self) -> bool:
        """True when the database holds no photo yet (checked before loading a model for nothing)."""
        try:
            return not self.gallery.status().get("photos")
        except Exception:  # noqa: BLE001 - the search itself will report what is wrong
            return False

    # ---- what this database holds ------------------------------------------------------------------------------

    def has_style(self) -> bool:
        """Style vectors (`imagesim index` adds them): the "Same look" tab."""
        return _answer(self.gallery.has_space, "style")

    def has_faces(self) -> bool:
        """Faces turned on (`imagesim index --faces`): the "Faces" and "People" tabs."""
        return _answer(self.gallery.faces_enabled)

    def has_duplicates(self) -> bool:
        """Near-duplicate vectors (`imagesim index` adds them): the "Duplicates" tab."""
        return _answer(self.gallery.has_space, "dup")

    # ---- similar photos ----------------------------------------------------------------------------------------

    def search_photo(self, upload: str | None, k: int = 24, *, plus: str = "", minus: str = "",
                     filters: Filters | None = None, offset: int = 0, sort: str = "score") -> Outcome:
        """Gallery photos like the uploaded one, best first; `plus` adds a text to the photo ("at sunset"),
        `minus` subtracts one ("people"): a composed query whose results say which term pulled them in."""
        if not upload:
            return Outcome()
        if self.is_empty():
            return Outcome(message=NOTHING_INDEXED)
        source = self.thumbs.source(upload)  # a result's preview, set as the query by "More like this"
        query: str | None = None
        try:
            if source is not None:
                query = self.thumbs.check(source)
                photo: Any = query  # its stored vector is reused, nothing is re-encoded
            else:
                photo = load_image(upload, draft_size=self.gallery.encoder.input_size, name=upload_name(upload))
            if (plus or "").strip() or (minus or "").strip():
                matches = self.gallery.compose(_terms((photo, 1.0), plus, minus), int(k), filters=filters,
                                               offset=offset, sort=sort)
            else:
                matches = self.gallery.search(photo, int(k), filters=filters, offset=offset, sort=sort)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one readable line
            return Outcome(message=friendly(exc))
        return self._outcome(matches, lambda m: why(m, "content"), empty="no matches", query=query,
                             filters=filters, offset=offset)

    def search_text(self, text: str | None, k: int = 24, *, plus: str = "", minus: str = "",
                    filters: Filters | None = None, offset: int = 0, sort: str = "score") -> Outcome:
        """Gallery photos that match a description (and `plus`, less whatever `minus` describes)."""
        if not text or not text.strip():
            return Outcome(message="type what the photo shows, e.g. “a dog on a beach”")
        if self.is_empty():
            return Outcome(message=NOTHING_INDEXED)
        words = text.strip()
        try:
            if (plus or "").strip() or (minus or "").strip():
                matches = self.gallery.compose(_terms((Text(words), 1.0), plus, minus), int(k), filters=filters,
                                               offset=offset, sort=sort)
            else:
                matches = self.gallery.search_text(words, int(k), filters=filters, offset=offset, sort=sort)
        except Exception as exc:  # noqa: BLE001
            return Outcome(message=friendly(exc))
        return self._outcome(matches, lambda m: m.why or f"matches the words “{words}” (score {m.score:.2f})",
                             empty="no matches", filters=filters, offset=offset)

    def more_like(self, item: Item | None, k: int = 24, *, filters: Filters | None = None) -> Outcome:
        """Search with a result: its stored vector is reused, nothing is re-encoded."""
        if not item:
            return Outcome(message="pick a photo in the results first")
        try:
            path = self.thumbs.check(item["path"])
            matches = self.gallery.search(path, int(k), filters=filters)
        except Exception as exc:  # noqa: BLE001
            return Outcome(message=friendly(exc))
        return self._outcome(matches, lambda m: why(m, "content"), empty="no matches", query=path, filters=filters)

    def query_photo(self, item: Item | None) -> str | None:
        """The photo "More like this" puts into "Your photo": its preview, which `search_photo` knows it by."""
        try:
            return self.thumbs.preview(item["path"]) if item else None
        except Exception:  # noqa: BLE001 - gone since: the search then says so
            return None

    # ---- same look (style) -------------------------------------------------------------------------------------

    def search_style(self, upload: str | None, style_weight: float = 1.0, k: int = 24, *,
                     filters: Filters | None = None, sort: str = "score") -> Outcome:
        """Photos with the same look; `style_weight` blends content (0) and style (1) scores."""
        if not upload:
            return Outcome(message=NEEDS_PHOTO)
        upload = self.thumbs.source(upload) or upload
        w = min(1.0, max(0.0, float(style_weight)))
        mode = "content" if w <= 0 else "style" if w >= 1 else "blend"
        try:
            image = load_image(upload, name=upload_name(upload))
            matches = self.gallery.search(image, int(k), mode=mode, style_weight=w, filters=filters, sort=sort)
        except Exception as exc:  # noqa: BLE001
            return Outcome(message=friendly(exc))
        return self._outcome(matches, lambda m: why(m, mode), empty="no matches", filters=filters)

    # ---- duplicates --------------------------------------------------------------------------------------------

    def duplicates(self, kind: str = "copies", filters: Filters | None = None) -> Outcome:
        """Groups of copies (or of similar shots) among the photos `filters` let through, the suggested keeper
        first; each item says its group, whether it is the one to keep, and how it differs from it."""
        try:
            groups = self.gallery.duplicate_groups(kind, filters=filters)
        except Exception as exc:  # noqa: BLE001
            return Outcome(message=friendly(exc))
        label = "copies" if kind == "copies" else "similar shots"
        items = []
        for g, group in enumerate(groups, 1):
            for m in group.members:
                try:
                    thumb = self.thumbs.thumbnail(m.path)
                except (ImagesimError, OSError):
                    continue
                name = shown_name(m.path)
                items.append({"path": m.path, "name": name, "score": round(m.score, 3), "thumb": thumb,
                              "group": g, "keep": m.keep,
                              "caption": f"group {g} · {'KEEP · ' if m.keep else ''}{name}",
                              "why": f"{label}, group {g} (score {group.score:.2f}): {m.explanation}"})
        empty = NO_FILTER_MATCH if self._nothing_passes(filters) else f"no {label} found"
        return Outcome(items=items, message="" if items else empty, extra=len(groups))

    def extra_copies(self, filters: Filters | None = None) -> list[str]:
        """The files `move_extras` would move: every member of a copies group but its suggested keeper."""
        return [p for g in self.gallery.duplicate_groups("copies", filters=filters) for p in g.extras]

    def move_extras(self, folder: str | None, filters: Filters | None = None) -> str:
        """Move the extra copies into `folder` (never deletes; an undo list is written there); the catalog follows."""
        from imagesim.indexer.moves import move_files

        folder = (folder or "").strip()
        if not folder:
            return "type the folder to move the extra copies to"
        try:
            report = move_files(self.gallery.store, self.extra_copies(filters), os.path.expanduser(folder))
        except Exception as exc:  # noqa: BLE001
            return friendly(exc)
        if not report.moved and not report.failed:
            return "no extra copies to move"
        text = f"moved {len(report.moved)} extra copies to {shown_path(folder)}"
        if report.undo_file:
            text += f"; undo: imagesim duplicates --undo {shown_path(report.undo_file)}"
        return text + (f"; {len(report.failed)} not moved" if report.failed else "")

    # ---- details, status, indexing -----------------------------------------------------------------------------

    def details(self, item: Item | None) -> tuple[str | None, str]:
        """(preview image path, HTML) for one result: name, path, size, date and why it matched, all escaped."""
        if not item:
            return None, ""
        try:
            path = self.thumbs.check(item["path"])
            preview = self.thumbs.preview(path)
            facts = photo_facts(path)
        except Exception as exc:  # noqa: BLE001
            return None, f"<p class='warn'>⚠️ {text_html(friendly(exc))}</p>"
        pixels = f"{facts['width']} × {facts['height']} px · " if "width" in facts else ""
        when = facts["date"].strftime("%-d %b %Y, %H:%M")
        when += " (taken)" if facts["date_source"] == "taken" else " (file date)"
        lines = [f"<h3>{text_html(os.path.basename(path))}</h3>", f"<p><code>{text_html(path)}</code></p>",
                 f"<p>{pixels}{human_size(facts['bytes'])} · {when}</p>"]
        if item.get("score") is not None:
            lines.append(f"<p><b>Score {item['score']:.3f}</b> · {text_html(item.get('why') or '')}</p>")
        elif item.get("why"):
            lines.append(f"<p><b>{text_html(item['why'])}</b></p>")
        if item.get("terms"):  # a composed query: every term's own similarity
            each = " · ".join(f"{name} {score:.2f}" for name, score in item["terms"].items())
            lines.append(f"<p>{text_html('similarity to each term: ' + each)}</p>")
        return preview, "\n".join(lines)

    def full_size(self, original: str | None, preview: str | None) -> str | None:
        """What the detail view shows, so its fullscreen button opens the photo at full size: the original (the
        cache's copy) when a browser can show it and it is not huge, else the 1280-px preview (HEIC, TIFF, ...)."""
        if original and os.path.splitext(original)[1].lower() in BROWSER_FORMATS:
            try:
                if os.path.getsize(original) <= FULL_SIZE_MAX_BYTES:
                    return self.thumbs.full(original)
            except (OSError, NotInGallery):
                pass
        return preview

    def original(self, item: Item | None) -> str | None:
        """The photo itself for "Download" (a link in the page's private cache), or None."""
        try:
            return self.thumbs.original(item["path"]) if item else None
        except Exception:  # noqa: BLE001 - gone since: nothing to download
            return None

    # ---- the library, before any query -------------------------------------------------------------------------

    def library(self, page: int = 0, per_page: int = 24, filters: Filters | None = None) -> Outcome:
        """Indexed photos that pass `filters`, newest first (file date), one page at a time; `extra` says whether
        more follow."""
        try:
            within = self.gallery.select(filters)
            store = self.gallery.store
            with store.lock:
                rows = store.catalog.files_under(store.catalog.roots())
            newest = sorted((r for r in rows.values() if r.content_id is not None
                             and (within is None or (r.content_id in within and within.allows(r.path)))),
                            key=lambda r: (-r.mtime_ns, r.path))
        except Exception as exc:  # noqa: BLE001
            return Outcome(message=friendly(exc))
        chosen = newest[: (page + 1) * per_page]
        items = []
        for row, thumb in zip(chosen, self._thumbnails([r.path for r in chosen]), strict=True):
            if thumb is not None:
                name = shown_name(row.path)
                items.append({"path": row.path, "name": name, "score": None, "thumb": thumb, "caption": name,
                              "why": "in your library (newest first)"})
        message = "" if items else NO_FILTER_MATCH if within is not None else NOTHING_INDEXED
        return Outcome(items=items, message=message, extra=len(newest) > len(chosen))

    def status(self) -> dict[str, Any]:
        """Photos, faces, model and when last indexed, for the status line."""
        try:
            info = self.gallery.status()
        except Exception as exc:  # noqa: BLE001
            return {"error": friendly(exc)}
        self.thumbs.set_roots(info.get("roots") or [])
        return info

    def status_line(self) -> str:
        """Photos, faces, model and when last indexed, as plain text (the page escapes it: a model file's name
        with `**` or backticks in it shows as it is)."""
        info = self.status()
        if "error" in info:
            return f"⚠️ {info['error']}"
        if not info.get("photos"):
            return "No photos indexed yet. Press “Index now” or run imagesim index PHOTO_DIR --db DB."
        parts = [f"{info['photos']:,} photos"]
        if info.get("faces") is not None:
            parts.append(f"{info['faces']:,} faces")
        if info.get("failed"):
            parts.append(f"{info['failed']} unreadable")
        model = info.get("model")
        parts.append(f"model {model}" if model else WAITS_FOR_MODEL)
        when = info.get("last_indexed")
        parts.append("last indexed " + (ago(when) if when else "never"))
        return " · ".join(parts)

    def index_now(self) -> str:
        """Run the indexer over the gallery roots (it takes the database's writer lock; queries keep working)."""
        roots = self.status().get("roots") or []
        if not roots:
            return "nothing to index: no gallery folder is recorded yet; run `imagesim index PHOTO_DIR` once"
        try:
            report = self._run_index(roots)
        except Exception as exc:  # noqa: BLE001
            return friendly(exc)
        done = f"indexed: {report.summary()}"
        return f"{done}; {report.waiting_for_model}" if report.waiting_for_model else done

    def _run_index(self, roots: list[str]) -> IndexReport:
        s = self.gallery.settings
        # One reader thread: the other core stays free for people searching while the index is brought up to date.
        # torch's own pool is the application's (set once by `serve`); the page's models index too, so no second
        # copy of them is loaded.
        settings = Settings.for_db(s.db, model=s.model, threads=1, batch_size=s.batch_size)
        # The page's model when it is loaded already; else the indexer loads it, or, offline without weights,
        # indexes the weight-free spaces and says that content vectors wait for the model.
        return run_index(settings, roots, progress=True, content_encoder=self.gallery.loaded_encoder,
                         face_analyzer=self.gallery.face_analyzer)

    # ---- helpers -----------------------------------------------------------------------------------------------

    def people_names(self) -> list[str]:
        """The gallery's named people (the filter bar's person choices), A to Z."""
        try:
            return sorted({p.name for p in People(self.gallery.store).list() if p.name}, key=str.casefold)
        except Exception:  # noqa: BLE001 - no faces, no names: the filter bar just offers none
            return []

    def _nothing_passes(self, filters: Filters | None) -> bool:
        try:
            within = self.gallery.select(filters)
        except Exception:  # noqa: BLE001 - the search itself said what is wrong
            return False
        return within is not None and len(within) == 0

    def _outcome(self, matches: Sequence[Match], explain: Callable[[Match], str], empty: str,
                 query: str | None = None, filters: Filters | None = None, offset: int = 0) -> Outcome:
        items = []
        for m, thumb in zip(matches, self._thumbnails([m.path for m in matches]), strict=True):
            if thumb is None:
                continue  # moved or deleted since indexing: nothing to show
            name = shown_name(m.path)
            items.append({"path": m.path, "name": name, "score": float(m.score), "thumb": thumb,
                          "caption": caption(m, name), "why": explain(m), "taken": m.taken,
                          "terms": dict(m.terms) if m.terms else None})
        if not items:
            if offset:
                return Outcome(message="no more results")
            if filters is not None and not filters.empty:
                return Outcome(message=NO_FILTER_MATCH)
            return Outcome(message=NOTHING_INDEXED if self.is_empty() else empty)
        chosen = next((i for i, it in enumerate(items) if query and os.path.realpath(str(it["path"])) == query), None)
        return Outcome(items=items, selected=chosen)


    def _thumbnails(self, paths: list[str]) -> list[str | None]:
        """Thumbnails for a page of results, made two at a time (decoding releases the GIL) the first time."""

        def one(path: str) -> str | None:
            try:
                return self.thumbs.thumbnail(path)
            except (ImagesimError, OSError):
                return None

        if len(paths) < 2:
            return [one(p) for p in paths]
        with ThreadPoolExecutor(THUMB_THREADS, thread_name_prefix="imagesim-thumbs") as pool:
            return list(pool.map(one, paths))


def _terms(first: tuple[Any, float], plus: str, minus: str) -> list[tuple[Any, float]]:
    """A composed query: the photo or text, "and" a text, "but not" a text (blank boxes left out)."""
    terms = [first]
    if plus and plus.strip():
        terms.append((Text(plus.strip()), 1.0))
    if minus and minus.strip():
        terms.append((Text(minus.strip()), -1.0))
    return terms


def caption(m: Match, name: str) -> str:
    """A result's caption: score (and, for a composed query, the term that pulled it in) and the file name."""
    pulled = m.why.split(";")[0].removeprefix("pulled in by ").split(" (")[0] if m.terms and m.why else ""
    return f"{m.score:.2f} · {pulled} · {name}" if pulled else f"{m.score:.2f} · {name}"


def _answer(question: Callable[..., bool], *args: str) -> bool:
    try:
        return bool(question(*args))
    except Exception:  # noqa: BLE001 - a catalog that cannot say is one without that data: the page still opens
        return False
