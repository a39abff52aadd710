"""The public API, kept apart from the page's handlers: JSON-able results (lists of dicts), absolute paths.

These are what `gradio_client` calls as `/search`, `/search_text` and `/faces`, with the client's defaults: a result
names its photo under `file` (never `path`, which gradio_client takes for a file to download) as readable text: a
name whose bytes are not UTF-8 comes escaped (see `present.shown_path`) and the result says `"escaped": true`.
They raise `ImagesimError` with a one-line message; the app turns it into a `gr.Error`, which the client receives
as that message.
"""

from __future__ import annotations

import os
from typing import Any

from imagesim.errors import ImagesimError
from imagesim.images import load_image
from imagesim.search import Filters, Gallery

from .present import shown_path

FILTERS = ("after", "before", "folder", "camera", "near", "place", "person", "type")  # optional, "" = not given
MAX_K = 200  # a bound on the work one call can ask for; a larger k is refused, never cut silently
DEFAULT_K = 10


def _k(k: float | int | None) -> int:
    if k is None or k == "":
        return DEFAULT_K
    try:
        value = int(k)
    except (TypeError, ValueError):
        raise ImagesimError(f"k must be a whole number, not {k!r}") from None
    if value != k and not isinstance(k, str):
        raise ImagesimError(f"k must be a whole number, not {k!r}")
    if not 1 <= value <= MAX_K:
        raise ImagesimError(f"k must be between 1 and {MAX_K} (the API's limit per call), not {value}")
    return value


def _photo(file: Any) -> str:
    """The uploaded file's server path (gradio_client sends a dict or a path, depending on version)."""
    path = file.get("path") if isinstance(file, dict) else file
    if not path:
        raise ImagesimError("send a photo: client.predict(handle_file('photo.jpg'), api_name='/search')")
    return str(path)


def _plain(result: dict[str, Any]) -> dict[str, Any]:
    """A result dict as plain data: its `path` becomes `file` (readable text, escaped when not UTF-8)."""
    out: dict[str, Any] = {}
    for key, value in result.items():
        if key == "path":
            out["file"] = shown_path(value)
            if out["file"] != value:
                out["escaped"] = True
        elif key in ("matches", "people"):
            out[key] = [_plain(m) for m in value]
        else:
            out[key] = value
    return out


FILTER_ARGS = """        after, before: only photos taken in that period, e.g. "2019" or "2019-07-14" (ends inclusive).
        folder: only photos in that folder (a prefix or a glob).
        camera: only photos from a camera whose make or model holds this text.
        near: "lat,lon" or "lat,lon,km" (decimal degrees; 10 km if no radius).
        place: a city or country name from the photos' GPS, e.g. "Lisbon".
        person: only photos with everyone named here, comma-separated ("Ada, Ben").
        type: file types, comma-separated ("jpeg, heic").
"""
PAGE_ARGS = """        offset: skip this many results (paging: 0, k, 2k, ...).
        sort: "score" (best first, the default) or "date" (newest taken first, among the best 200).
"""


def _filters(after: str | None, before: str | None, folder: str | None, camera: str | None, near: str | None,
             place: str | None, person: str | None, type: str | None) -> Filters:  # noqa: A002 - the API's name
    return Filters.parse(after=after or "", before=before or "", folders=[folder or ""], camera=camera or "",
                         near=near or "", place=place or "", people=(person or "").split(","),
                         types=(type or "").split(","))


def _offset(offset: float | int | None) -> int:
    try:
        value = int(offset or 0)
    except (TypeError, ValueError):
        raise ImagesimError(f"offset must be a whole number, not {offset!r}") from None
    if value < 0:
        raise ImagesimError(f"offset must be 0 or more, not {value}")
    return value


def _sort(sort: str | None) -> str:
    return (sort or "score").strip() or "score"


def search(gallery: Gallery, image: Any, k: float | int | None = DEFAULT_K, after: str = "", before: str = "",
           folder: str = "", camera: str = "", near: str = "", place: str = "", person: str = "", type: str = "",  # noqa: A002
           offset: float | int | None = 0, sort: str = "score") -> list[dict[str, Any]]:
    """Gallery photos that show something like the photo, best first.

    Args:
        image: the photo to compare (gradio_client: handle_file("photo.jpg")).
        k: how many results, 1 to 200 (default 10); a k outside that range is refused with a message.
    Returns:
        [{"file": absolute path, "score": cosine similarity}, ...]
    """
    path = _photo(image)
    k = _k(k)
    filters = _filters(after, before, folder, camera, near, place, person, type)
    img = load_image(path, draft_size=gallery.encoder.input_size, name=os.path.basename(path))
    return [_plain(m.to_json()) for m in gallery.search(img, k, filters=filters, offset=_offset(offset),
                                                        sort=_sort(sort))]


def search_text(gallery: Gallery, text: str | None, k: float | int | None = DEFAULT_K, after: str = "",
                before: str = "", folder: str = "", camera: str = "", near: str = "", place: str = "",
                person: str = "", type: str = "", offset: float | int | None = 0,  # noqa: A002
                sort: str = "score") -> list[dict[str, Any]]:
    """Gallery photos that match a description, best first.

    Args:
        text: what the photo shows, e.g. "a dog on a beach".
        k: how many results, 1 to 200 (default 10); a k outside that range is refused with a message.
    Returns:
        [{"file": absolute path, "score": cosine similarity}, ...]
    """
    if not text or not text.strip():
        raise ImagesimError("the text query is empty")
    filters = _filters(after, before, folder, camera, near, place, person, type)
    return [_plain(m.to_json()) for m in gallery.search_text(text.strip(), _k(k), filters=filters,
                                                             offset=_offset(offset), sort=_sort(sort))]


def faces(gallery: Gallery, image: Any, k: float | int | None = DEFAULT_K, after: str = "", before: str = "",
          folder: str = "", camera: str = "", near: str = "", place: str = "", person: str = "",
          type: str = "") -> list[dict[str, Any]]:  # noqa: A002
    """Per face found in the photo, the gallery faces nearest to it.

    Args:
        image: a photo with one or more faces (gradio_client: handle_file("photo.jpg")).
        k: how many matches per face, 1 to 200 (default 10); a k outside that range is refused with a message.
    Returns:
        [{"face": n, "box": [left, top, right, bottom], "people": [{"person", "name", "label", "photos",
        "distance", "faces", "same_person", "confidence", "file", "box"}, ...], "matches": [{"file", "box", "distance",
        "same_person", "confidence"}, ...]}, ...]; "people" are the gallery's people nearest first, each judged
        on several of their faces
    """
    if not gallery.faces_enabled():
        raise ImagesimError("face search is not enabled for this database (index it with faces first)")
    path = _photo(image)
    k = _k(k)
    filters = _filters(after, before, folder, camera, near, place, person, type)
    img = load_image(path, name=os.path.basename(path))
    return [{"face": n, **_plain(face.to_json())} for n, face in enumerate(gallery.faces(img, k, filters=filters), 1)]


for _fn in (search, search_text):  # the filter and paging arguments, documented once
    _fn.__doc__ = (_fn.__doc__ or "").replace("    Returns:", FILTER_ARGS + PAGE_ARGS + "    Returns:")
faces.__doc__ = (faces.__doc__ or "").replace("    Returns:", FILTER_ARGS + "    Returns:")
