"""The near-duplicate candidate descriptor: several regions of a photo, each a tone-blind layout code. No weights.

Stage one of copy detection (stage two, the local-feature check, is `keypoints.py`). Before describing, uniform
bands at the edges (letterbox, pillarbox, frames of any colour, a screenshot's bars) are trimmed, so a bordered copy
describes the same pixels as its original. Then `REGIONS` boxes of the trimmed photo are described: the whole, the
centre, four corners and two strips; a copy cropped to half the area still covers about the same pixels as one of
them. Each region is a real-valued pHash: the low-frequency DCT of its rank-equalised grey image (blind to brightness,
contrast, gamma and colour filters; a B&W or sepia copy keeps its grey layout). Mirroring flips the sign of the odd
horizontal frequencies, so the mirrored query is computed from the vector (`mirrored`), without the pixels.

One row per photo holds the `REGIONS` unit codes side by side (`dim` = REGIONS * PART); the store keeps them as
separate graph vectors (`parts`), labelled `content_id * REGIONS + region`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from . import Encoder, register

GRID = 32  # a region is described at GRID x GRID (aspect ignored, so resizing changes nothing)
LOW = 6  # DCT coefficients kept per axis (DC dropped): finer detail moves under crops and rotations
PART = LOW * LOW - 1
# (left, top, right, bottom) as shares of the trimmed photo. Region 0 (the whole) is what other photos query with;
# the rest are windows a crop meets: 3x3 of 70 % a side, 2x2 of 85 %, and two strips (bench/duplicates.py: with
# these 16, the original of a crop to 50-90 % of the area is among the 5 nearest photos, where 8 regions missed 13 %).
_SIDE70, _SIDE85 = (0.0, 0.15, 0.3), (0.0, 0.15)
REGIONS = ((0.0, 0.0, 1.0, 1.0), *((x, y, x + 0.7, y + 0.7) for y in _SIDE70 for x in _SIDE70),
           *((x, y, x + 0.85, y + 0.85) for y in _SIDE85 for x in _SIDE85), (0.0, 0.2, 1.0, 0.8), (0.2, 0.0, 0.8, 1.0))
WORK_SIDE = 256  # photos are reduced to about this before trimming and describing
BAND_TOLERANCE = 14  # grey levels from a row's median that still count as "the same colour"
BAND_SHARE = 0.85  # share of a row (or column) within the tolerance for it to be a border row
BAND_MAX = 0.4  # never trim more than this share of a side
VERSION = 4
_FLAT = np.eye(1, PART, dtype=np.float32)[0]
_MIRROR = np.array([(-1.0) ** (i % LOW) for i in range(1, LOW * LOW)], np.float32)  # (-1)^v per kept coefficient


def trim_box(img: Image.Image) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of `img` without its uniform edge bands (borders, bars, frames of any colour)."""
    a = np.asarray(img.convert("L"), dtype=np.int16)
    h, w = a.shape
    if h < 8 or w < 8:
        return 0, 0, w, h

    def uniform(lines: np.ndarray) -> np.ndarray:  # per line (row): is it (nearly) one colour?
        med = np.median(lines, axis=1, keepdims=True)
        return (np.abs(lines - med) <= BAND_TOLERANCE).mean(axis=1) >= BAND_SHARE

    def depth(flags: np.ndarray) -> int:
        # border rows from the edge on; a short run of busy rows between border rows (a status bar's clock and
        # icons, a frame's inner line) belongs to the border too
        limit, gap = int(len(flags) * BAND_MAX), max(3, len(flags) // 25)
        n = 0
        while n < limit:
            busy = np.nonzero(~flags[n:limit])[0]
            if not len(busy):
                return limit
            start = n + int(busy[0])
            calm = np.nonzero(flags[start:min(limit, start + gap + 1)])[0]
            if start == 0 or not len(calm):
                n = start
                break
            n = start + int(calm[0])
        return n if n >= max(2, len(flags) // 100) else 0

    rows, cols = uniform(a), uniform(a.T)
    top, bottom = depth(rows), depth(rows[::-1])
    left, right = depth(cols), depth(cols[::-1])
    return left, top, w - right, h - bottom


def work_image(img: Image.Image) -> Image.Image:
    """A small RGB copy (about WORK_SIDE on the short side) that trimming and describing work on."""
    img = img if img.mode == "RGB" else img.convert("RGB")
    factor = min(img.size) // WORK_SIDE
    return img.reduce(factor) if factor > 1 else img


def _equalise(grey: np.ndarray) -> np.ndarray:
    """Ranks in [-0.5, 0.5): any monotone tone change (brightness, contrast, gamma) leaves them as they were."""
    flat = grey.ravel()
    order = np.argsort(flat, kind="stable")
    ranks = np.empty(flat.size, np.float32)
    ranks[order] = np.arange(flat.size, dtype=np.float32)
    _, inverse = np.unique(flat, return_inverse=True)  # equal values share their mean rank: flat areas stay flat
    sums = np.bincount(inverse, weights=ranks)
    counts = np.bincount(inverse)
    return ((sums / counts)[inverse].reshape(grey.shape) / flat.size - 0.5).astype(np.float32)


def region_codes(img: Image.Image) -> np.ndarray:
    """(REGIONS, PART) unit codes of `img` (borders trimmed first)."""
    from scipy.fft import dctn  # here: scipy costs ~0.2 s to import, paid only by work that encodes

    small = work_image(img)
    left, top, right, bottom = trim_box(small)
    grey = small.convert("L")
    w, h = right - left, bottom - top
    out = np.zeros((len(REGIONS), PART), np.float32)
    for r, (x0, y0, x1, y1) in enumerate(REGIONS):
        box = (left + x0 * w, top + y0 * h, left + x1 * w, top + y1 * h)
        cells = np.asarray(grey.resize((GRID, GRID), Image.Resampling.BOX, box=box), dtype=np.float32)
        coeffs = dctn(_equalise(cells), norm="ortho")[:LOW, :LOW].ravel()[1:]
        n = float(np.linalg.norm(coeffs))
        out[r] = coeffs / n if n > 1e-9 else _FLAT  # a flat region: one fixed code, never a zero vector
    return out


def mirrored(codes: np.ndarray) -> np.ndarray:
    """The codes of the left-right mirrored regions (rows of PART values): odd horizontal frequencies change sign."""
    return np.asarray(codes, np.float32) * _MIRROR


@register("dup")
class DupEncoder(Encoder):
    """Weight-free near-duplicate candidates: REGIONS unit codes per photo, stored as separate graph vectors."""

    space = "dup"
    input_size = None  # no say in JPEG draft decoding
    parts = len(REGIONS)
    dim = len(REGIONS) * PART

    def __init__(self, **_: Any) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"encoder": "dup", "version": VERSION, "grid": GRID, "low": LOW, "regions": len(REGIONS),
                "dim": self.dim}

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        for i, img in enumerate(images):
            out[i] = region_codes(img).ravel()
        return out


def split_parts(rows: np.ndarray) -> np.ndarray:
    """(n, REGIONS * PART) rows → (n * REGIONS, PART) graph vectors, photo by photo."""
    return np.asarray(rows, np.float32).reshape(-1, PART)
