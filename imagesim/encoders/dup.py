"""The near-duplicate candidate descriptor: several regions of a photo, each a tone-blind layout code. No weights.

Stage one of copy detection (stage two, the local-feature check, is `keypoints.py`). Before describing, uniform
bands at the edges (letterbox, pillarbox, frames of any colour, a screenshot's bars) are trimmed, so a bordered copy
describes the same pixels as its original. Then `REGIONS` boxes of the trimmed photo are described: the whole, nine
and four windows, two strips, the centre and four halves; a copy cropped to half the area still covers about the
same pixels as one of them. Each region is a real-valued pHash: the low-frequency DCT of its rank-equalised grey
image (blind to brightness, contrast, gamma and colour filters; a B&W or sepia copy keeps its grey layout).
Mirroring flips the sign of the odd horizontal frequencies, so the mirrored query is computed from the vector
(`mirrored`), without the pixels.

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
# the rest are windows a crop meets: 3x3 of 70 % a side, 2x2 of 85 %, two strips (bench/duplicates.py: with these
# 16, the original of a crop to 50-90 % of the area is among the 5 nearest photos, where 8 regions missed 13 %), the
# centred 85 % a straightened copy keeps, and four halves that a sticker near the centre leaves partly clean (on
# fresh edit seeds, 2100 copies: candidate misses 38 -> 21, rotations 9 -> 3, overlays 4 -> 0).
_SIDE70, _SIDE85 = (0.0, 0.15, 0.3), (0.0, 0.15)
REGIONS = ((0.0, 0.0, 1.0, 1.0), *((x, y, x + 0.7, y + 0.7) for y in _SIDE70 for x in _SIDE70),
           *((x, y, x + 0.85, y + 0.85) for y in _SIDE85 for x in _SIDE85), (0.0, 0.2, 1.0, 0.8), (0.2, 0.0, 0.8, 1.0),
           (0.075, 0.075, 0.925, 0.925), (0.0, 0.0, 1.0, 0.5), (0.0, 0.5, 1.0, 1.0), (0.0, 0.0, 0.5, 1.0),
           (0.5, 0.0, 1.0, 1.0))
WORK_SIDE = 256  # photos are reduced to about this before trimming and describing
BAND_TOLERANCE = 14  # grey levels from a row's median that still count as "the same colour"
BAND_SHARE = 0.85  # share of a row (or column) within the tolerance for it to be a border row
BAND_MAX = 0.4  # never trim more than this share of a side
TRIM_SIDE = 200  # bands are looked for at this longer side
VERSION = 5
_FLAT = np.eye(1, PART, dtype=np.float32)[0]
_MIRROR = np.array([(-1.0) ** (i % LOW) for i in range(1, LOW * LOW)], np.float32)  # (-1)^v per kept coefficient


def trim_box(img: Image.Image) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of `img` without its uniform edge bands (borders, bars, frames of any colour)."""
    w0, h0 = img.size
    if h0 < 8 or w0 < 8:
        return 0, 0, w0, h0
    f = min(1.0, TRIM_SIDE / max(w0, h0))  # bands are found on a small copy (a few pixels of slack, 10x faster)
    grey = img.convert("L")
    if f < 1.0:
        grey = grey.resize((max(8, round(w0 * f)), max(8, round(h0 * f))), Image.Resampling.BOX)
    a = np.asarray(grey, dtype=np.int16)
    h, w = a.shape

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
    sx, sy = w0 / w, h0 / h
    return round(left * sx), round(top * sy), round((w - right) * sx), round((h - bottom) * sy)


def work_image(img: Image.Image) -> Image.Image:
    """A small RGB copy (about WORK_SIDE on the short side) that trimming and describing work on."""
    img = img if img.mode == "RGB" else img.convert("RGB")
    factor = min(img.size) // WORK_SIDE
    return img.reduce(factor) if factor > 1 else img


def _equalise(cells: np.ndarray) -> np.ndarray:
    """Per region (first axis), ranks in [-0.5, 0.5): any monotone tone change (brightness, contrast, gamma) leaves
    them as they were; equal values share their mean rank, so a flat area stays flat. (scipy's `rankdata(method=
    "average")` in numpy: importing scipy.stats alone costs a one-shot `duplicates IMAGE` 0.6 s.)"""
    n = cells.shape[1] * cells.shape[2]
    flat = cells.reshape(len(cells), n)
    order = np.argsort(flat, axis=1, kind="stable")
    ordered = np.take_along_axis(flat, order, axis=1)
    pos = np.broadcast_to(np.arange(n), flat.shape)
    starts = np.ones(flat.shape, dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = np.ones(flat.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)  # where each run of equal values begins
    last = np.minimum.accumulate(np.where(ends, pos, n)[:, ::-1], axis=1)[:, ::-1]  # and ends
    ranks = np.empty(flat.shape, dtype=np.float64)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=1)
    return (ranks.reshape(cells.shape) / n - 0.5).astype(np.float32)


def _dct_rows(size: int, keep: int) -> np.ndarray:
    """The first `keep` rows of the orthonormal DCT-II matrix of `size` (scipy.fft.dct(norm="ortho"))."""
    k, i = np.arange(keep)[:, None], np.arange(size)[None, :]
    rows = np.sqrt(2.0 / size) * np.cos(np.pi * (2 * i + 1) * k / (2 * size))
    rows[0] /= np.sqrt(2.0)
    return rows


_DCT = _dct_rows(GRID, LOW)


def region_codes(img: Image.Image) -> np.ndarray:
    """(REGIONS, PART) unit codes of `img` (borders trimmed first)."""
    small = work_image(img)
    left, top, right, bottom = trim_box(small)
    grey = small.convert("L")
    w, h = right - left, bottom - top
    cells = np.stack([np.asarray(grey.resize((GRID, GRID), Image.Resampling.BOX,
                                             box=(left + x0 * w, top + y0 * h, left + x1 * w, top + y1 * h)),
                                 dtype=np.float32) for x0, y0, x1, y1 in REGIONS])
    low = _DCT @ _equalise(cells).astype(np.float64) @ _DCT.T  # the LOW x LOW lowest frequencies of a 2-D DCT
    coeffs = low.reshape(len(REGIONS), -1)[:, 1:]
    norms = np.linalg.norm(coeffs, axis=1, keepdims=True)
    # a flat region gets one fixed code, never a zero vector
    return np.where(norms > 1e-9, coeffs / np.maximum(norms, 1e-9), _FLAT).astype(np.float32)


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
