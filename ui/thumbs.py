"""Small JPEG copies of gallery photos for the page: the browser never gets a raw gallery path.

Thumbnails and previews are written once into a private cache folder (keyed by path, size and mtime, so an edited
photo gets a new one) and served from there by Gradio. Only files below the gallery roots are ever read, and never
anything inside the database folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from imagesim.errors import ImagesimError
from imagesim.faces.detect import crop_box
from imagesim.images import load_image

from .present import shown_name

THUMB_SIZE = 320  # grid cells are ~160-200 css px; 2x for high-dpi screens
PREVIEW_SIZE = 1280  # the "see it larger" view
BOX_COLOURS = ["#f97316", "#22c55e", "#3b82f6", "#e11d48", "#a855f7", "#eab308", "#06b6d4", "#ec4899"]


class NotInGallery(ImagesimError):
    """A path outside the gallery roots (or inside the database folder) was asked for."""


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class Thumbnails:
    """Makes and caches small JPEG copies of photos below `roots`; refuses every other path."""

    def __init__(self, cache_dir: str | os.PathLike[str], roots: Iterable[str], blocked: Iterable[str] = ()) -> None:
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.roots = [os.path.realpath(r) for r in roots]
        self.blocked = [os.path.realpath(b) for b in blocked]
        self._lock = threading.Lock()
        self._sources: dict[str, str] = {}  # preview file name -> the gallery photo it shows

    def set_roots(self, roots: Iterable[str]) -> None:
        """The catalog's roots change when a new folder is indexed."""
        self.roots = [os.path.realpath(r) for r in roots]

    def check(self, path: str | os.PathLike[str]) -> str:
        """The real path of `path` if the page may show it, else `NotInGallery`."""
        real = os.path.realpath(path)
        if any(_inside(real, b) for b in self.blocked) or not any(_inside(real, r) for r in self.roots):
            raise NotInGallery(f"{path} is not in the gallery")
        return real

    def thumbnail(self, path: str | os.PathLike[str], box: Sequence[int] | None = None) -> str:
        """A cached JPEG at most THUMB_SIZE a side (with an outlined `box` when given)."""
        return self._cached(path, THUMB_SIZE, box)

    def face(self, path: str | os.PathLike[str], box: Sequence[int]) -> str:
        """A cached JPEG of the face in `box` with some of its surroundings (the Faces tab's tiles)."""
        return self._cached(path, THUMB_SIZE, box)

    def preview(self, path: str | os.PathLike[str]) -> str:
        """A cached JPEG at most PREVIEW_SIZE a side, for the detail view (and, set as the query, "More like this":
        `source` then names the gallery photo it shows)."""
        out = self._cached(path, PREVIEW_SIZE, None)
        self._sources[os.path.basename(out)] = self.check(path)
        return out

    def source(self, file: str | os.PathLike[str] | None) -> str | None:
        """The gallery photo a preview made here shows (Gradio hands it back under its own name in another folder)."""
        return self._sources.get(os.path.basename(file)) if file else None

    def original(self, path: str | os.PathLike[str]) -> str:
        """The photo itself, copied into the cache under its own name, for "Download"."""
        real = self.check(path)
        st = os.stat(real)
        folder = self.cache_dir / _key(f"{real}\0{st.st_size}\0{st.st_mtime_ns}\0original")
        out = folder / shown_name(real)  # a name the browser can carry (escaped when its bytes are not UTF-8)
        if not out.is_file():
            folder.mkdir(exist_ok=True, mode=0o700)
            # a copy, never a hard link: nothing done to the cache (clean-ups, rewrites) can reach the gallery file
            shutil.copyfile(real, out)
        return str(out)

    def full(self, original: str) -> str:
        """The original's copy (from `original`) under a neutral name, for the detail view: the page's <img> then
        carries no part of the file name in its URL, whatever the name holds (markup, host names)."""
        src = Path(original)
        out = src.with_name("photo" + src.suffix.lower())
        if src.parent.parent != self.cache_dir:
            raise NotInGallery(f"{original} is not a copy in the page's cache")
        if not out.is_file():
            try:
                os.link(src, out)  # both files are the cache's own copies; the gallery file is never linked
            except FileExistsError:
                pass
            except OSError:
                shutil.copyfile(src, out)
        return str(out)

    def _cached(self, path: str | os.PathLike[str], size: int, box: Sequence[int] | None) -> str:
        real = self.check(path)
        st = os.stat(real)
        key = _key(f"{real}\0{st.st_size}\0{st.st_mtime_ns}\0{size}\0{tuple(box or ())}")
        out = self.cache_dir / f"{key}.jpg"
        if out.is_file():
            return str(out)
        img = load_image(real, draft_size=size if box is None else None)
        if box is not None:  # the face with its surroundings, not a square centre crop of the photo
            img = img.crop(crop_box(tuple(box), img.size, margin=0.6))  # type: ignore[arg-type]
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
        return self._write(img, out)

    def image(self, img: Image.Image, name: str, size: int = THUMB_SIZE) -> str:
        """Cache an image made in memory (a face crop, an annotated upload) under a content-derived name."""
        img = img.convert("RGB")
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
        digest = hashlib.sha256(img.tobytes() + name.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        out = self.cache_dir / f"{digest}.jpg"
        if out.is_file():
            return str(out)
        return self._write(img, out)

    def _write(self, img: Image.Image, out: Path) -> str:
        tmp = out.with_suffix(f".{threading.get_ident()}.tmp")
        img.save(tmp, "JPEG", quality=85, optimize=True)
        os.replace(tmp, out)  # atomic: a concurrent reader never sees half a file
        return str(out)


def _key(text: str) -> str:
    """A file name for `text` (which may hold a path whose bytes are not UTF-8)."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def draw_boxes(img: Image.Image, boxes: Sequence[Sequence[int]], numbered: bool = True) -> Image.Image:
    """A copy of `img` with each (left, top, right, bottom) box outlined, and numbered 1, 2, ... when asked."""
    out = img.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 250))
    font = _font(max(14, round(max(out.size) / 30)))
    for i, (left, top, right, bottom) in enumerate(boxes):
        colour = BOX_COLOURS[i % len(BOX_COLOURS)]
        draw.rectangle((left, top, right, bottom), outline=colour, width=width)
        if numbered:
            label = str(i + 1)
            tl, tt, tr, tb = draw.textbbox((0, 0), label, font=font)
            pad = width * 2
            w, h = tr - tl + 2 * pad, tb - tt + 2 * pad
            y = top - h if top - h >= 0 else top
            draw.rectangle((left, y, left + w, y + h), fill=colour)
            draw.text((left + pad - tl, y + pad - tt), label, fill="white", font=font)
    return out
