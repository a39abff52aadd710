"""Today's (v3) near-duplicate descriptor and its pair test, kept for the benchmark's side-by-side column only
(the project now uses `imagesim/encoders/dup.py` v4 + `keypoints.py`).

The near-duplicate descriptor: a photo's coarse layout, robust to resizing, recompression, small crops and
rotations, brightness changes and overlaid text. No weights.

Three blocks: `structure` (low-frequency DCT of the histogram-equalised grey image, a real-valued pHash: equalising
makes it blind to brightness, contrast and gamma), `centre` (an 8x8 grid of the equalised central half of the photo:
small rotations and crops barely move the centre, it tells apart look-alike photos with the same overall layout,
e.g. one flower in the middle, and it is compared cell by cell without the cells a caption covers) and `colour`
(a 4x4 grid of brightness-normalised chroma, also compared without its worst cells). The index searches the whole
vector; a duplicate edge must also pass each block's own threshold (`duplicates.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from imagesim.encoders import Encoder

GRID = 32  # the grey image is described at GRID x GRID (aspect ignored, so resizing changes nothing)
LOW = 8  # DCT coefficients kept per axis (DC dropped): detail finer than this moves under crops and rotations
COLOUR_GRID = 4
COLOUR_TRIM = 3  # cells left out of the colour test (the worst-matching ones)
CENTRE = 0.5  # the centre block describes this share of each side
CENTRE_CELLS = 8  # ... as CENTRE_CELLS x CENTRE_CELLS cells
CENTRE_TRIM = 12  # cells left out of the centre test (the worst-matching ones)
# Shares of the vector's length (squares sum to 1): layout decides, the centre refines, colour breaks ties.
WEIGHTS = {"structure": 0.7, "centre": 0.6, "colour": float(np.sqrt(1 - 0.7 ** 2 - 0.6 ** 2))}
VERSION = 3


def _structure(img: Image.Image) -> np.ndarray:
    from scipy.fft import dctn  # here: scipy costs ~0.2 s to import, paid only by work that encodes

    grey = np.asarray(img.convert("L").resize((GRID, GRID), Image.Resampling.BOX), dtype=np.float32)
    coeffs = dctn(_equalise(grey), norm="ortho")[:LOW, :LOW].ravel()[1:]
    return _unit(coeffs)


def _equalise(grey: np.ndarray) -> np.ndarray:
    """Ranks in [-0.5, 0.5): any monotone tone change (brightness, contrast, gamma) leaves them as they were."""
    # rank transform (histogram equalisation): any monotone tone change leaves the ranks as they were
    ranks = np.empty(grey.size, np.float32)
    order = np.argsort(grey.ravel(), kind="stable")
    ranks[order] = np.arange(grey.size, dtype=np.float32)
    # equal values share their mean rank, so a flat area does not become an arbitrary ramp
    flat = grey.ravel()
    uniq, inverse = np.unique(flat, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks)
    counts = np.bincount(inverse)
    return (sums / counts)[inverse].reshape(grey.shape) / grey.size - 0.5


def _centre(img: Image.Image) -> np.ndarray:
    """The central part as an 8x8 grid of equalised grey, zero-mean: compared cell by cell, leaving out the cells
    that disagree most (a caption or logo across the middle), which a frequency description cannot do."""
    w, h = img.size
    mx, my = w * (1 - CENTRE) / 2, h * (1 - CENTRE) / 2
    grey = np.asarray(img.convert("L").resize((GRID, GRID), Image.Resampling.BOX, box=(mx, my, w - mx, h - my)),
                      dtype=np.float32)
    cells = _equalise(grey).reshape(CENTRE_CELLS, GRID // CENTRE_CELLS, CENTRE_CELLS, GRID // CENTRE_CELLS)
    v = cells.mean(axis=(1, 3)).ravel()
    return _unit(v - v.mean())


def _colour(img: Image.Image) -> np.ndarray:
    small = np.asarray(img.resize((COLOUR_GRID, COLOUR_GRID), Image.Resampling.BOX), dtype=np.float32) / 255.0
    r, g, b = small[..., 0], small[..., 1], small[..., 2]
    # opponent chroma, normalised by brightness: a brighter or darker copy keeps its hues
    s = r + g + b + 0.05
    vec = np.concatenate([((r - g) / s).ravel(), ((r + g - 2 * b) / s).ravel(), [0.15]])
    return _unit(vec)


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else v


class DupEncoder(Encoder):
    """A weight-free near-duplicate descriptor: weighted unit blocks (structure, centre, colour), unit length."""

    space = "dup"
    input_size = None  # no say in JPEG draft decoding
    dims = {"structure": LOW * LOW - 1, "centre": CENTRE_CELLS ** 2, "colour": 2 * COLOUR_GRID * COLOUR_GRID + 1}
    dim = sum(dims.values())

    def __init__(self, **_: Any) -> None:
        start = 0
        self.slices: dict[str, slice] = {}
        for name, n in self.dims.items():
            self.slices[name] = slice(start, start + n)
            start += n

    def describe(self) -> dict[str, Any]:
        return {"encoder": "dup", "version": VERSION, "grid": GRID, "low": LOW, "dim": self.dim}

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        for i, img in enumerate(images):
            img = img if img.mode == "RGB" else img.convert("RGB")
            if min(img.size) > 8 * GRID:
                img = img.reduce(max(1, min(img.size) // (4 * GRID)))  # cheap pre-shrink; BOX does the rest
            out[i, self.slices["structure"]] = WEIGHTS["structure"] * _structure(img)
            out[i, self.slices["centre"]] = WEIGHTS["centre"] * _centre(img)
            out[i, self.slices["colour"]] = WEIGHTS["colour"] * _colour(img)
        return out

    def block_similarities(self, a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
        """Similarity per block ("structure", "centre", "colour") of rows of `b` against vector `a`."""
        b = np.atleast_2d(b)
        return self.pair_similarities(np.broadcast_to(a, b.shape), b)

    def pair_similarities(self, a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
        """Similarity per block of row i of `a` with row i of `b` (cosine; centre and colour over their
        best-matching cells)."""
        sl = self.slices["centre"]
        return {"structure": _rowcos(a[:, self.slices["structure"]], b[:, self.slices["structure"]]),
                "centre": _trimmed_cos(a[:, sl], b[:, sl], CENTRE_TRIM, centred=True),
                "colour": self._trimmed_colour(a, b)}

    def _trimmed_colour(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Colour similarity over the cells that agree best: a caption or logo may cover a few of the 16 cells."""
        sl = self.slices["colour"]
        n, cells = len(b), COLOUR_GRID * COLOUR_GRID
        ca, cb = a[:, sl][:, :-1].reshape(n, 2, cells), b[:, sl][:, :-1].reshape(n, 2, cells)
        diff = ((cb - ca) ** 2).sum(axis=1)  # (n, cells)
        keep = np.argsort(diff, axis=1)[:, :cells - COLOUR_TRIM]
        va = np.take_along_axis(ca, keep[:, None, :], axis=2).reshape(n, -1)
        vb = np.take_along_axis(cb, keep[:, None, :], axis=2).reshape(n, -1)
        tail_a, tail_b = a[:, sl][:, -1], b[:, sl][:, -1]
        num = (va * vb).sum(axis=1) + tail_a * tail_b
        den = np.sqrt(((va ** 2).sum(axis=1) + tail_a ** 2) * ((vb ** 2).sum(axis=1) + tail_b ** 2))
        return num / np.maximum(den, 1e-12)


def _trimmed_cos(a: np.ndarray, b: np.ndarray, drop: int, centred: bool) -> np.ndarray:
    """Row-wise cosine over all but the `drop` positions where the rows differ most."""
    keep = np.argsort((a - b) ** 2, axis=1)[:, :a.shape[1] - drop]
    va, vb = np.take_along_axis(a, keep, axis=1), np.take_along_axis(b, keep, axis=1)
    if centred:
        va, vb = va - va.mean(axis=1, keepdims=True), vb - vb.mean(axis=1, keepdims=True)
    return _rowcos(va, vb)


def _rowcos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(den, 1e-12)


# the v3 pair test (imagesim/search/duplicates.py before v4): whole vector and each block above its floor
THRESHOLD, STRUCTURE_MIN, CENTRE_MIN, COLOUR_MIN, STRUCTURE_ALONE = 0.80, 0.84, 0.94, 0.85, 0.95


def is_duplicate(enc: DupEncoder, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Boolean per row pair (a[i], b[i]): does v3 call them near-duplicates?"""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    whole = (a * b).sum(axis=1)
    blocks = enc.pair_similarities(a, b)
    centre_ok = (blocks["centre"] >= CENTRE_MIN) | (blocks["structure"] >= STRUCTURE_ALONE)
    return (whole >= THRESHOLD) & (blocks["structure"] >= STRUCTURE_MIN) & centre_ok & (blocks["colour"] >= COLOUR_MIN)
