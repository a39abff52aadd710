"""The style encoder: how a photo looks (palette, tone, texture, rendering), not what it shows. No weights.

Hand-made statistics in four blocks (`style_features.py`). Each feature is standardised with robust statistics and
squashed so no single extreme feature dominates. Then what was learned from the style benchmark's tuning split (photos
of different subjects given the same look, `python -m bench.calibrate_style`, stored in `style_stats.npz`): the
features are whitened by their covariance *within one look*, so what varies with the subject counts less, and
projected onto the directions along which looks differ (linear discriminant analysis). Behind those coordinates the
vector carries the four blocks, each whitened on its own, at known offsets: `block_similarities` tells which parts of
the look two photos share, and search uses it to explain a match. The vector is L2-normalised.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from . import Encoder, normalize, register
from .style_features import BLOCKS, SIDE, histogram_mask, prepare, raw_features

__all__ = ["BLOCKS", "SIDE", "BlockStats", "StyleEncoder", "StyleStats", "histogram_mask", "load_stats", "prepare",
           "raw_features", "stats_arrays"]

VERSION = 5  # 5: look families, within-look whitening, spectrum/grain/vignette/blockiness statistics
BLOCK_WEIGHTS = {"colour": 1.0, "tone": 1.0, "texture": 1.0, "rendering": 1.0}
LOOK_SHARE = 0.8  # share of the squared length for the discriminant part (CV in the tuning split: 0.7-1.0 tried)
SQUASH = 8.0  # z-scores are squashed with SQUASH * tanh(z / SQUASH): strong looks stay strong, none explode


STATS_FILE = Path(__file__).with_name("style_stats.npz")


@dataclass(frozen=True)
class BlockStats:
    """How one block's features are standardised: robust centre and scale per feature."""

    center: np.ndarray
    scale: np.ndarray


@dataclass(frozen=True)
class StyleStats:
    """Everything learned: per-feature standardisation, the mean of the standardised features, and two maps of them.

    `discriminant` (features x d): whitening by the shrunk within-look covariance (how features move when only the
    subject changes), then projection onto the directions along which the tuning split's looks differ (LDA).
    `block_whitening`: per block, the shrunk inverse square root (ZCA) of that block's within-look covariance; these
    parts sit at known offsets, so `block_similarities` can say which parts of the look two photos share. Both maps
    are None while calibrating (then the vector is the standardised features)."""

    blocks: dict[str, BlockStats]
    mean: np.ndarray | None = None
    discriminant: np.ndarray | None = None
    block_whitening: dict[str, np.ndarray] | None = None


@functools.lru_cache(maxsize=4)
def load_stats(path: Path = STATS_FILE) -> StyleStats:
    with np.load(path) as data:
        blocks = {k: BlockStats(data[f"center_{k}"].astype(np.float32), data[f"scale_{k}"].astype(np.float32))
                  for k in BLOCKS}
        return StyleStats(blocks, data["mean"].astype(np.float32), data["discriminant"].astype(np.float32),
                          {k: data[f"whitening_{k}"].astype(np.float32) for k in BLOCKS})


def stats_arrays(stats: StyleStats) -> dict[str, np.ndarray]:
    """The arrays of `stats` by their names in style_stats.npz (calibration writes them, the fingerprint hashes
    them)."""
    out = {f"{f}_{k}": getattr(b, f) for k, b in stats.blocks.items() for f in ("center", "scale")}
    if stats.mean is not None and stats.discriminant is not None and stats.block_whitening is not None:
        out |= {"mean": stats.mean, "discriminant": stats.discriminant}
        out |= {f"whitening_{k}": m for k, m in stats.block_whitening.items()}
    return out


def block_slices(dims: dict[str, int], start: int = 0) -> dict[str, slice]:
    out = {}
    for name in BLOCKS:
        out[name] = slice(start, start + dims[name])
        start += dims[name]
    return out


@register("style")
class StyleEncoder(Encoder):
    """A weight-free style vector, unit length: the look's discriminant coordinates (LOOK_SHARE of the squared
    length) followed by the four whitened blocks (colour, tone, texture, rendering) that explanations read."""

    space = "style"
    input_size = None  # no say in JPEG draft decoding: the content model's choice is kept as it is

    def __init__(self, stats: StyleStats | None = None, **_: Any) -> None:
        self.stats = stats or load_stats()
        self.dims = {k: len(b.center) for k, b in self.stats.blocks.items()}
        self.lead = 0 if self.stats.discriminant is None else self.stats.discriminant.shape[1]
        self.slices = block_slices(self.dims, self.lead)
        self.dim = self.lead + sum(self.dims.values())

    def describe(self) -> dict[str, Any]:
        # the learned statistics are part of what makes the vectors: recalibrating re-embeds
        arrays = stats_arrays(self.stats)
        digest = hashlib.sha256(b"".join(np.ascontiguousarray(arrays[k]).tobytes() for k in sorted(arrays)))
        return {"encoder": "style", "version": VERSION, "side": SIDE, "dim": self.dim, "stats": digest.hexdigest()[:16]}

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.embed_features(np.stack([self.standardise(raw_features(img)) for img in images]))

    def standardise(self, raw: dict[str, np.ndarray]) -> np.ndarray:
        """Raw features -> robust z-scores, squashed, each block scaled to the same expected share of the length."""
        parts = []
        for name in BLOCKS:
            st = self.stats.blocks[name]
            # NaN (a statistic the photo lacks, e.g. an empty tone band) becomes the usual value: z = 0
            z = SQUASH * np.tanh(np.nan_to_num((raw[name] - st.center) / st.scale) / SQUASH)
            parts.append(z * (BLOCK_WEIGHTS[name] / np.sqrt(len(z))))
        return np.concatenate(parts).astype(np.float32)

    def embed_features(self, z: np.ndarray) -> np.ndarray:
        """Standardised features (n, features) -> style vectors (n, dim)."""
        st = self.stats
        if st.mean is None or st.discriminant is None or st.block_whitening is None:
            return normalize(z)
        z = z - st.mean
        look = normalize(z @ st.discriminant)
        start = 0
        parts = []
        for name in BLOCKS:
            parts.append(z[:, start:start + self.dims[name]] @ st.block_whitening[name])
            start += self.dims[name]
        blocks = normalize(np.concatenate(parts, axis=1))
        return np.concatenate([np.sqrt(LOOK_SHARE) * look, np.sqrt(1 - LOOK_SHARE) * blocks], axis=1).astype(np.float32)

    def block_similarities(self, a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
        """Cosine similarity of each block between style vector `a` and `b`: a float per block for one vector `b`,
        an array per block for a matrix `b` (one value per row)."""
        b2 = np.atleast_2d(b)
        out = {}
        for name, sl in self.slices.items():
            va, vb = a[sl], b2[:, sl]
            den = np.linalg.norm(va) * np.linalg.norm(vb, axis=1)
            out[name] = (vb @ va) / np.maximum(den, 1e-12)
        return {k: v if b.ndim == 2 else float(v[0]) for k, v in out.items()}
