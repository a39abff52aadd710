"""Write imagesim/encoders/style_stats.npz: how the style encoder standardises and whitens its raw features.

`python -m bench.calibrate_style`. Learns from the style benchmark's TUNING split only (`bench/style.py`: half of
each flowers17 class, its own parameter draws of every look family); the held-out split is never read. Per feature:
centre = median, scale = 1.4826 MAD (floored; histogram bins share one scale per block). Then the within-look
covariance of the standardised features (around each look's mean: how features move when only the subject changes),
shrunk towards the identity (SHRINK); its inverse square root whitens, and the whitened looks' means give the
discriminant directions (LDA); each block is also whitened on its own for explanations. SHRINK, the number of
directions and the encoder's LOOK_SHARE were chosen by cross-validation inside the tuning split (learn on two
instances of every family, score the third).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from imagesim.encoders.style import StyleStats

CALIBRATION_PER_CLASS = 5  # the first photos of each flowers17 class, kept out of the benchmarks (earlier versions
# calibrated on them; bench/duplicates.py still leaves them out)
SHRINK = 0.1  # share of the identity in the shrunk within-look covariance (CV in the tuning split: 0.05-0.35 tried)


def fit(raws: list[dict[str, np.ndarray]], looks: np.ndarray, shrink: float = SHRINK) -> StyleStats:
    """StyleStats from raw features of styled photos and their look labels."""
    from imagesim.encoders.style import BLOCKS, BlockStats, StyleEncoder, StyleStats, histogram_mask

    masks = histogram_mask()
    blocks: dict[str, BlockStats] = {}
    for k in BLOCKS:
        arr = np.stack([r[k] for r in raws]).astype(np.float64)
        med = np.nanmedian(arr, axis=0)
        mad = 1.4826 * np.nanmedian(np.abs(arr - med), axis=0)
        # a feature that barely varies (e.g. clipped share) still gets a usable scale
        floor = np.maximum(0.1 * np.nanstd(arr, axis=0), 1e-3 + 0.02 * np.abs(med))
        center, scale = med, np.maximum(mad, floor)
        hist = masks[k]
        if hist.any():  # histogram bins: centred on the mean, one shared scale (a rare bin must not blow up)
            center[hist] = np.nanmean(arr[:, hist], axis=0)
            scale[hist] = np.sqrt(np.mean(np.nanvar(arr[:, hist], axis=0))) * np.sqrt(hist.sum()) / 2
        blocks[k] = BlockStats(center.astype(np.float32), scale.astype(np.float32))
    enc = StyleEncoder(StyleStats(blocks))
    z = np.stack([enc.standardise(r) for r in raws]).astype(np.float64)
    mean = z.mean(axis=0)
    z -= mean
    labels = np.unique(looks)
    within = z.copy()
    for look in labels:  # what is left after each look's mean: what the subject moves
        within[looks == look] -= within[looks == look].mean(axis=0)
    whiten = _inv_sqrt(np.cov(within.T), shrink)
    # LDA: in the within-whitened space, the principal directions of the looks' means (all of them: CV kept them all)
    means = np.stack([(z[looks == look] @ whiten).mean(axis=0) for look in labels])
    ev, vecs = np.linalg.eigh(np.cov(means.T))
    top = np.argsort(ev)[::-1][:len(labels) - 1]
    blockwise = {k: _inv_sqrt(np.cov(within[:, sl].T), shrink).astype(np.float32) for k, sl in enc.slices.items()}
    return StyleStats(blocks, mean.astype(np.float32), (whiten @ vecs[:, top]).astype(np.float32), blockwise)


def _inv_sqrt(cov: np.ndarray, shrink: float) -> np.ndarray:
    """Inverse square root of `cov` shrunk towards a multiple of the identity (few samples, many features)."""
    mean_var = np.trace(cov) / len(cov)
    ev, vecs = np.linalg.eigh((1 - shrink) * cov + shrink * mean_var * np.eye(len(cov)))
    return vecs @ np.diag((ev / mean_var) ** -0.5) @ vecs.T


def main(argv: list[str] | None = None) -> int:
    from bench.style import build_split
    from imagesim.encoders.style import STATS_FILE, raw_features, stats_arrays

    data = build_split("tuning")
    if not data.images:
        print("flowers17 not found: nothing written")
        return 1
    stats = fit([raw_features(img) for img in data.images], data.looks)
    np.savez_compressed(STATS_FILE, **stats_arrays(stats))
    print(f"wrote {STATS_FILE} from {len(data.images)} styled photos of the tuning split")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
