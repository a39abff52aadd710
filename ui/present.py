"""How results are put into words: scores as plain language, photo facts, dates, one-line errors."""

from __future__ import annotations

import html
import logging
import os
import re
import time
from datetime import datetime
from typing import Any

from PIL import Image

from imagesim.errors import ImagesimError
from imagesim.images import ALLOWED_FORMATS
from imagesim.search import Match

log = logging.getLogger("imagesim.ui")
EXIF_IFD, DATE_TAKEN, DATE_TIME = 0x8769, 36867, 306
_SURROGATE = re.compile("[\udc80-\udcff]")


def shown_path(path: str) -> str:
    """A path as text that JSON and the browser can carry, losslessly.

    Unchanged when it is valid UTF-8 (nearly always). A name whose bytes are not UTF-8 reaches Python with surrogate
    escapes, which no JSON encoder of the page accepts: each becomes `\\udcXX` (the escape `imagesim ... --json`
    writes for that byte) and backslashes are doubled, so the original bytes can be read back exactly.
    """
    if not _SURROGATE.search(path):
        return path
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", path.replace("\\", "\\\\"))


def upload_name(upload: str) -> str:
    """The name the user knows an upload by (Gradio keeps it as the temp file's name)."""
    return os.path.basename(str(upload)) or "the upload"


def shown_name(path: str) -> str:
    """The file name part of `shown_path`."""
    return shown_path(os.path.basename(path))


def text_html(text: str) -> str:
    """Any string from files or users as inert HTML text: never markup, whatever it holds."""
    return html.escape(shown_path(text), quote=True).replace("\n", "<br>")


def friendly(exc: BaseException) -> str:
    """One line for the page. Errors the user can cause say so; anything else is logged with its trace."""
    if isinstance(exc, ImagesimError):
        return shown_path(str(exc))
    log.exception("unexpected error in a UI handler")
    return shown_path(f"something went wrong ({type(exc).__name__}: {exc}); the details are in the server log")


def score_words(score: float) -> str:
    """A rough reading of a CLIP image-to-image cosine, so a number means something to a user."""
    if score >= 0.95:
        return "near-identical"
    if score >= 0.85:
        return "very similar"
    if score >= 0.7:
        return "similar"
    if score >= 0.5:
        return "somewhat alike"
    return "loosely related"


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{int(size)} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"


def photo_facts(path: str) -> dict[str, Any]:
    """Size on disk, pixel size and date (EXIF date taken, else the file's modification time)."""
    st = os.stat(path)
    facts: dict[str, Any] = {"bytes": st.st_size, "date": datetime.fromtimestamp(st.st_mtime), "date_source": "file"}
    try:
        with Image.open(path, formats=ALLOWED_FORMATS) as img:  # header only: nothing is decoded here
            facts["width"], facts["height"] = img.size
            exif = img.getexif()
            raw = exif.get_ifd(EXIF_IFD).get(DATE_TAKEN) or exif.get(DATE_TIME)
            if raw:
                facts["date"] = datetime.strptime(str(raw).strip("\0 "), "%Y:%m:%d %H:%M:%S")
                facts["date_source"] = "taken"
    except Exception:  # noqa: BLE001 - facts are best effort; a bad header must not break the detail view
        pass
    return facts


def why(m: Match, mode: str) -> str:
    """The match's own explanation (style and blend searches give one), else its score in words."""
    if m.why:
        return m.why
    parts = []
    if m.content_score is not None:
        parts.append(f"content {m.content_score:.2f}")
    if m.style_score is not None:
        parts.append(f"style {m.style_score:.2f}")
    detail = f" ({', '.join(parts)})" if parts else ""
    what = {"content": "shows something", "style": "has a look", "blend": "looks and shows something"}[mode]
    return f"{what} {score_words(float(m.score))} to your photo{detail}"


def ago(ts: float) -> str:
    s = max(0.0, time.time() - float(ts))
    if s < 90:
        return "just now"
    if s < 5400:
        return f"{round(s / 60)} min ago"
    if s < 2 * 86400:
        return f"{round(s / 3600)} h ago"
    return datetime.fromtimestamp(float(ts)).strftime("%-d %b %Y")
