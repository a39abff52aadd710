"""The public API, kept apart from the page's handlers: JSON-able results (lists of dicts), absolute paths.

These are what `gradio_client` calls as `/search`, `/search_text` and `/faces`. They raise `ImagesimError` with a
one-line message; the app turns it into a `gr.Error`, which the client receives as that message.
"""

from __future__ import annotations

import os
from typing import Any

from imagesim.errors import ImagesimError
from imagesim.images import load_image
from imagesim.search import Gallery

MAX_K = 200  # a bound on the work one call can ask for


def _k(k: float | int | None, default: int = 10) -> int:
    if k is None or k == "":
        return default
    try:
        value = int(k)
    except (TypeError, ValueError):
        raise ImagesimError(f"k must be a whole number, not {k!r}") from None
    if value < 1:
        raise ImagesimError("k must be at least 1")
    return min(value, MAX_K)


def _photo(file: Any) -> str:
    """The uploaded file's server path (gradio_client sends a dict or a path, depending on version)."""
    path = file.get("path") if isinstance(file, dict) else file
    if not path:
        raise ImagesimError("send a photo: client.predict(handle_file('photo.jpg'), api_name='/search')")
    return str(path)


def search(gallery: Gallery, file: Any, k: float | int | None = 10) -> list[dict[str, Any]]:
    """Gallery photos that show something like the photo: [{"path", "score", ...}] best first."""
    path = _photo(file)
    image = load_image(path, draft_size=gallery.encoder.input_size, name=os.path.basename(path))
    return [m.to_json() for m in gallery.search(image, _k(k))]


def search_text(gallery: Gallery, text: str | None, k: float | int | None = 10) -> list[dict[str, Any]]:
    """Gallery photos that match a description: [{"path", "score"}] best first."""
    if not text or not text.strip():
        raise ImagesimError("the text query is empty")
    return [m.to_json() for m in gallery.search_text(text.strip(), _k(k))]


def faces(gallery: Gallery, file: Any, k: float | int | None = 10) -> list[dict[str, Any]]:
    """Per face in the photo: {"face": n, "box": [l, t, r, b], "matches": [{"path", "same_person", ...}]}."""
    if not gallery.faces_enabled():
        raise ImagesimError("face search is not enabled for this database (index it with faces first)")
    path = _photo(file)
    image = load_image(path, name=os.path.basename(path))
    return [{"face": n, **face.to_json()} for n, face in enumerate(gallery.faces(image, _k(k)), 1)]
