"""Write imagesim/encoders/style_stats.npz: how the style encoder standardises and whitens its raw features.

`python -m bench.calibrate_style`. Uses the first 5 photos of each flowers17 class (the style and duplicate
benchmarks leave them out) and the faces-small portraits, untouched: whitening learns what ordinary photos look
like, never the benchmark's looks. Per feature: centre = median, scale = 1.4826 MAD (floored; histogram bins share
one scale per block). Per block: the inverse square root of the covariance of the standardised features, shrunk
towards the identity (SHRINK), which discounts directions along which ordinary photos already vary.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bench.report import datasets_dir

CALIBRATION_PER_CLASS = 5
SHRINK = 0.2  # share of the identity in the shrunk covariance (117 photos for up to 138 features per block)


def calibration_photos() -> list[Path]:
    base = datasets_dir()
    photos: list[Path] = []
    for cls in sorted(p for p in (base / "flowers17").iterdir() if p.is_dir()):
        photos += sorted(cls.glob("*.jpg"))[:CALIBRATION_PER_CLASS]
    photos += sorted(p for p in (base / "faces-small").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return photos


def main(argv: list[str] | None = None) -> int:
    from imagesim.encoders.style import BLOCKS, STATS_FILE, BlockStats, StyleEncoder, histogram_mask, raw_features
    from imagesim.images import load_image

    photos = calibration_photos()
    raws = [raw_features(load_image(path, draft_size=256)) for path in photos]
    masks = histogram_mask()
    stats: dict[str, BlockStats] = {}
    for k in BLOCKS:
        arr = np.stack([r[k] for r in raws]).astype(np.float64)
        med = np.median(arr, axis=0)
        mad = 1.4826 * np.median(np.abs(arr - med), axis=0)
        # a feature that barely varies among ordinary photos (e.g. clipped share) still gets a usable scale
        floor = np.maximum(0.1 * arr.std(axis=0), 1e-3 + 0.02 * np.abs(med))
        center, scale = med, np.maximum(mad, floor)
        hist = masks[k]
        if hist.any():  # histogram bins: centred on the mean, one shared scale (a rare bin must not blow up)
            center[hist] = arr[:, hist].mean(axis=0)
            scale[hist] = np.sqrt(np.mean(arr[:, hist].var(axis=0))) * np.sqrt(hist.sum()) / 2
        stats[k] = BlockStats(center.astype(np.float32), scale.astype(np.float32), None)
    enc = StyleEncoder(stats)
    z = np.stack([enc.whiten(r) for r in raws]).astype(np.float64)
    out: dict[str, np.ndarray] = {}
    for k, sl in enc.slices.items():
        cov = np.cov(z[:, sl].T)
        mean_var = np.trace(cov) / len(cov)
        shrunk = (1 - SHRINK) * cov + SHRINK * mean_var * np.eye(len(cov))
        ev, vecs = np.linalg.eigh(shrunk)
        out[f"center_{k}"] = stats[k].center
        out[f"scale_{k}"] = stats[k].scale
        out[f"matrix_{k}"] = (vecs @ np.diag((ev / mean_var) ** -0.5) @ vecs.T).astype(np.float32)
    np.savez_compressed(STATS_FILE, **out)
    print(f"wrote {STATS_FILE} from {len(photos)} photos")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
