"""The near-duplicate descriptor: a photo's coarse layout, robust to resizing, recompression, small crops and
rotations, brightness changes and overlaid text. No weights.

Two blocks: `structure` (low-frequency DCT of the histogram-equalised grey image, a real-valued pHash: equalising
makes it blind to brightness, contrast and gamma) and `colour` (a 4x4 grid of mean Lab chroma). The index searches
the whole vector; a duplicate edge must also pass each block's own threshold (`duplicates.py`), a second test that
keeps unrelated photos with a similar layout apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image
from scipy.fft import dctn

from . import Encoder, register

GRID = 32  # the grey image is described at GRID x GRID (aspect ignored, so resizing changes nothing)
LOW = 8  # DCT coefficients kept per axis (DC dropped): detail finer than this moves under crops and rotations
COLOUR_GRID = 4
STRUCTURE_WEIGHT = 0.9  # share of the vector's length: layout decides, colour breaks ties
VERSION = 1


def _structure(img: Image.Image) -> np.ndarray:
    grey = np.asarray(img.convert("L").resize((GRID, GRID), Image.Resampling.BOX), dtype=np.float32)
    # rank transform (histogram equalisation): any monotone tone change leaves the ranks as they were
    ranks = np.empty(grey.size, np.float32)
    order = np.argsort(grey.ravel(), kind="stable")
    ranks[order] = np.arange(grey.size, dtype=np.float32)
    # equal values share their mean rank, so a flat area does not become an arbitrary ramp
    flat = grey.ravel()
    uniq, inverse = np.unique(flat, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks)
    counts = np.bincount(inverse)
    eq = (sums / counts)[inverse].reshape(GRID, GRID) / grey.size - 0.5
    coeffs = dctn(eq, norm="ortho")[:LOW, :LOW].ravel()[1:]
    return _unit(coeffs)


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


@register("dup")
class DupEncoder(Encoder):
    """A weight-free near-duplicate descriptor: [structure * w, colour * sqrt(1 - w^2)], unit length."""

    space = "dup"
    input_size = None  # no say in JPEG draft decoding
    structure_dim = LOW * LOW - 1
    colour_dim = 2 * COLOUR_GRID * COLOUR_GRID + 1

    def __init__(self, **_: Any) -> None:
        self.dim = self.structure_dim + self.colour_dim

    def describe(self) -> dict[str, Any]:
        return {"encoder": "dup", "version": VERSION, "grid": GRID, "low": LOW, "dim": self.dim}

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        wc = float(np.sqrt(1 - STRUCTURE_WEIGHT ** 2))
        for i, img in enumerate(images):
            img = img if img.mode == "RGB" else img.convert("RGB")
            if max(img.size) > 4 * GRID * 2:
                img = img.reduce(max(1, min(img.size) // (4 * GRID)))  # cheap pre-shrink; BOX does the rest
            out[i, :self.structure_dim] = STRUCTURE_WEIGHT * _structure(img)
            out[i, self.structure_dim:] = wc * _colour(img)
        return out

    def block_similarities(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(structure, colour) cosine similarities of rows of `b` against vector `a`."""
        b = np.atleast_2d(b)
        s = self.structure_dim
        return _cos(a[:s], b[:, :s]), _cos(a[s:], b[:, s:])


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    den = np.linalg.norm(a) * np.linalg.norm(b, axis=1)
    return (b @ a) / np.maximum(den, 1e-12)
