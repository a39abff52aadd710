"""Write imagesim/encoders/_style_stats.py: robust centre and scale of every raw style feature over ordinary photos.

`python -m bench.calibrate_style`. Uses the first 5 photos of each flowers17 class (the style and duplicate
benchmarks leave them out) and the faces-small portraits, untouched: whitening learns what ordinary photos look
like, never the benchmark's looks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bench.report import ROOT, datasets_dir

CALIBRATION_PER_CLASS = 5


def calibration_photos() -> list[Path]:
    base = datasets_dir()
    photos: list[Path] = []
    for cls in sorted(p for p in (base / "flowers17").iterdir() if p.is_dir()):
        photos += sorted(cls.glob("*.jpg"))[:CALIBRATION_PER_CLASS]
    photos += sorted(p for p in (base / "faces-small").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return photos


def main(argv: list[str] | None = None) -> int:
    from imagesim.encoders.style import BLOCKS, histogram_mask, raw_features
    from imagesim.images import load_image

    feats: dict[str, list[np.ndarray]] = {k: [] for k in BLOCKS}
    photos = calibration_photos()
    for path in photos:
        raw = raw_features(load_image(path, draft_size=256))
        for k in BLOCKS:
            feats[k].append(raw[k])
    lines = ['"""Robust centre (median) and scale (1.4826 MAD, floored) of each raw style feature.', "",
             f"Written by `python -m bench.calibrate_style` from {len(photos)} ordinary photos; do not edit by hand.",
             '"""', "", "# ruff: noqa: E501", "CENTER = {"]
    scales = {}
    centers = {}
    masks = histogram_mask()
    for k in BLOCKS:
        arr = np.stack(feats[k])
        med = np.median(arr, axis=0)
        mad = 1.4826 * np.median(np.abs(arr - med), axis=0)
        # a feature that barely varies among ordinary photos (e.g. clipped share) still gets a usable scale
        floor = np.maximum(0.1 * arr.std(axis=0), 1e-3 + 0.02 * np.abs(med))
        center, scale = med, np.maximum(mad, floor)
        hist = masks[k]
        if hist.any():  # histogram bins: centred on the mean, one shared scale (a rare bin must not blow up)
            center[hist] = arr[:, hist].mean(axis=0)
            scale[hist] = np.sqrt(np.mean(arr[:, hist].var(axis=0))) * np.sqrt(hist.sum()) / 2
        centers[k], scales[k] = center, scale
    for k in BLOCKS:
        lines.append(f"    {k!r}: [{', '.join(f'{v:.6g}' for v in centers[k])}],")
    lines += ["}", "SCALE = {"]
    for k in BLOCKS:
        lines.append(f"    {k!r}: [{', '.join(f'{v:.6g}' for v in scales[k])}],")
    lines.append("}")
    out = ROOT / "imagesim" / "encoders" / "_style_stats.py"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out} from {len(photos)} photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
