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
from imagesim.search import Gallery

from .present import shown_path

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
        elif key == "matches":
            out[key] = [_plain(m) for m in value]
        else:
            out[key] = value
    return out


def search(gallery: Gallery, image: Any, k: float | int | None = DEFAULT_K) -> list[dict[str, Any]]:
    """Gallery photos that show something like the photo, best first.

    Args:
        image: the photo to compare (gradio_client: handle_file("photo.jpg")).
        k: how many results, 1 to 200 (default 10); a k outside that range is refused with a message.
    Returns:
        [{"file": absolute path, "score": cosine similarity}, ...]
    """
    path = _photo(image)
    k = _k(k)
    img = load_image(path, draft_size=gallery.encoder.input_size, name=os.path.basename(path))
    return [_plain(m.to_json()) for m in gallery.search(img, k)]


def search_text(gallery: Gallery, text: str | None, k: float | int | None = DEFAULT_K) -> list[dict[str, Any]]:
    """Gallery photos that match a description, best first.

    Args:
        text: what the photo shows, e.g. "a dog on a beach".
        k: how many results, 1 to 200 (default 10); a k outside that range is refused with a message.
    Returns:
        [{"file": absolute path, "score": cosine similarity}, ...]
    """
    if not text or not text.strip():
        raise ImagesimError("the text query is empty")
    return [_plain(m.to_json()) for m in gallery.search_text(text.strip(), _k(k))]


def faces(gallery: Gallery, image: Any, k: float | int | None = DEFAULT_K) -> list[dict[str, Any]]:
    """Per face found in the photo, the gallery faces nearest to it.

    Args:
        image: a photo with one or more faces (gradio_client: handle_file("photo.jpg")).
        k: how many matches per face, 1 to 200 (default 10); a k outside that range is refused with a message.
    Returns:
        [{"face": n, "box": [left, top, right, bottom], "matches": [{"file", "box", "distance", "same_person",
        "confidence"}, ...]}, ...]
    """
    if not gallery.faces_enabled():
        raise ImagesimError("face search is not enabled for this database (index it with faces first)")
    path = _photo(image)
    k = _k(k)
    img = load_image(path, name=os.path.basename(path))
    return [{"face": n, **_plain(face.to_json())} for n, face in enumerate(gallery.faces(img, k), 1)]
