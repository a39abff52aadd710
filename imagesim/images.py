"""Find photo files and decode them safely: one function, `load_image`, used by the CLI, the indexer and the UI.

Decoding goes: format allowlist -> decompression-bomb guard -> (JPEG draft) -> EXIF orientation -> RGB.
Every failure a file can cause becomes an `ImageError` with a short reason.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ImageError, first_line

try:  # HEIC/HEIF photos from phones; AVIF is native in Pillow >= 11.3
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a declared dependency
    pillow_heif = None  # type: ignore[assignment]

# The decompression-bomb warning (between 1x and 2x Image.MAX_IMAGE_PIXELS) is an error, never a warning; the
# limit itself stays at Pillow's default. The filter is process-wide so it holds in decoder threads too.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
ImageFile.LOAD_TRUNCATED_IMAGES = False

# Pillow plugin names tried, and nothing else: EPS (Ghostscript), PSD, FITS, PDF... are never parsed.
# (MPO files from cameras open through the JPEG plugin.)
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "HEIF", "AVIF")
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".webp", ".tif", ".tiff", ".bmp", ".heic", ".heif",
     ".hif", ".avif"}
)
# RuntimeError: the AVIF and HEIF decoders raise it on corrupt data (found by the fuzzer).
_DECODE_ERRORS = (OSError, ValueError, RuntimeError, SyntaxError, EOFError, struct.error, zlib.error, IndexError,
                  KeyError, TypeError, ZeroDivisionError, MemoryError, Image.DecompressionBombError,
                  Image.DecompressionBombWarning)

Source = str | os.PathLike[str] | bytes | BinaryIO
_BOMB = f"too many pixels for a photo (over {Image.MAX_IMAGE_PIXELS:,}): refused as a possible decompression bomb"


def is_image_name(path: str | os.PathLike[str]) -> bool:
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def find_images(roots: Iterable[str | os.PathLike[str]],
                exclude: Iterable[str | os.PathLike[str]] = ()) -> Iterator[Path]:
    """Yield photo files below `roots` (absolute, sorted per folder).

    Hidden files and folders are skipped, and so are symlinks: a link could lead outside the gallery or into a
    loop. `exclude` names folders to leave out (the database folder when it sits inside a root).
    """
    skip = {os.path.realpath(p) for p in exclude}
    seen: set[str] = set()
    for root in roots:
        root = os.path.realpath(root)
        if os.path.isfile(root):
            if is_image_name(root) and root not in seen:
                seen.add(root)
                yield Path(root)
            continue
        stack = [root]
        while stack:
            folder = stack.pop()
            if folder in skip or folder in seen:
                continue
            seen.add(folder)
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue  # unreadable folder: nothing to index there
            subdirs = []
            for entry in entries:
                if entry.name.startswith(".") or entry.is_symlink():
                    continue
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.path)
                elif entry.is_file(follow_symlinks=False) and is_image_name(entry.name) and entry.path not in seen:
                    seen.add(entry.path)
                    yield Path(entry.path)
            stack.extend(reversed(subdirs))


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read a whole file, turning OS errors into an `ImageError`."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read file ({exc.strerror or exc})", os.fspath(path)) from exc


def load_image(source: Source, *, draft_size: int | None = None, name: str | None = None) -> Image.Image:
    """Decode `source` (a path, bytes or a binary file) into an upright RGB image.

    `draft_size` lets JPEGs decode at the smallest 1/2, 1/4 or 1/8 scale that still has both sides >= it, which is
    several times faster than a full decode of a camera photo; an image still over twice `draft_size` (a PNG or HEIC,
    a huge JPEG) is box-reduced by an integer factor to keep both sides >= 2 x draft_size. `img.info["original_size"]`
    keeps the upright size of the full image. Raises `ImageError` with a short reason.
    """
    label = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else None)
    if isinstance(source, (str, os.PathLike)):
        data: bytes | BinaryIO = read_bytes(source)
    else:
        data = source
    if isinstance(data, bytes):
        if not data:
            raise ImageError("empty file (0 bytes)", label)
        data = io.BytesIO(data)
    try:
        img = Image.open(data, formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise ImageError("not a supported image (JPEG, PNG, GIF, WebP, TIFF, BMP, HEIC, AVIF)", label) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(_BOMB, label) from None
    except _DECODE_ERRORS as exc:
        raise ImageError(f"cannot read image header ({first_line(exc, 200)})", label) from None
    try:
        decoded = _decode(img, draft_size)
    except ImageError as exc:
        raise ImageError(exc.reason, label) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(_BOMB, label) from None
    except _DECODE_ERRORS as exc:
        raise ImageError(f"corrupt or truncated image ({first_line(exc, 200)})", label) from None
    if decoded is not img:
        img.close()  # release the decoder's buffers now rather than at garbage collection
    return decoded


def _decode(img: Image.Image, draft_size: int | None) -> Image.Image:
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageError("image has no pixels")
    # formats whose plugin skips Pillow's own check (the limit is never lifted: None would be a caller's choice)
    if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
        raise ImageError(f"too many pixels ({width}x{height}): {_BOMB}")
    if draft_size and img.format in ("JPEG", "MPO"):
        img.draft("RGB", (draft_size, draft_size))
    img.load()  # first frame of an animation; raises on truncated or corrupt data
    try:
        exif_orientation = img.getexif().get(0x0112, 1)
    except _DECODE_ERRORS:
        exif_orientation = 1  # unreadable EXIF: keep the pixels as stored rather than refuse the photo
    if exif_orientation in (2, 3, 4, 5, 6, 7, 8):
        img = ImageOps.exif_transpose(img) or img
    upright = (height, width) if exif_orientation in (5, 6, 7, 8) else (width, height)
    rgb = to_rgb(img)
    if draft_size:
        # A 12 MP PNG/HEIC would otherwise reach the encoder at 36 MB (a batch read-ahead of them is gigabytes) and
        # be resized on the encoding thread; the reduce costs ~10 ms and changes vectors by < 1e-4 (docs/speed.md).
        factor = min(rgb.size) // (2 * draft_size)
        if factor >= 2:
            rgb = rgb.reduce(factor)
    rgb.info["original_size"] = upright
    return rgb


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB: alpha composited on white, CMYK/palette/16-bit/float mapped."""
    mode = img.mode
    if mode == "RGB":
        return img.copy() if img.readonly else img
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        img = _high_bit_depth_to_l(img)
        mode = "L"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _high_bit_depth_to_l(img: Image.Image) -> Image.Image:
    """Scale a 16/32-bit integer or float greyscale image into 8 bits instead of clipping it to white."""
    arr = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        top = 1.0 if arr.size and float(np.nanmax(arr)) <= 1.0 else 255.0
    else:
        top = 65535.0 if arr.size and float(arr.max()) > 255 else 255.0
    arr = np.nan_to_num(arr, nan=0.0) * (255.0 / top)
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "L")

