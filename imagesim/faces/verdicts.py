"""What a distance between two face descriptors means, in face_recognition's words (`face_distance`, `tolerance`).

Distances are dlib's euclidean distances between raw descriptors. Every verdict threshold lives here, and nowhere
else: the tolerance and bands below, and how much a poor face widens the "low" band (docs/faces.md, "Calibration").
"""

from __future__ import annotations

import numpy as np

TOLERANCE = 0.6  # same person below this: face_recognition's compare_faces default, confirmed by our calibration
SURE_SAME = 0.5  # below: "high" confidence that it is the same person (for good faces)
SURE_DIFFERENT = 0.7  # at or above: "high" confidence that it is someone else (for good faces)
LOW_BAND = 0.05  # within this of the tolerance (below or at-or-above): "low" confidence, have a look
# A pair's quality (its worse face's, 0..1, `quality.py`) widens the low band by up to this much for the poorest
# faces (quality 0): low = [0.6 - w, 0.6 + w) with w = LOW_BAND + QUALITY_WIDEN * (1 - quality); the medium bands
# move out with it. Set on calibration people only (`python -m bench faces-verify`); a good pair (1.0) is unchanged.
QUALITY_WIDEN = 0.10
POOR_QUALITY = 0.5  # a face below this is flagged "low quality face" beside its verdicts
DECIMALS = 4  # distances are shown and judged at this precision, so a shown 0.7000 always reads as 0.70 and above


def low_band(quality: float | None = None) -> float:
    """Half-width of the "low" band around the tolerance for a pair of this quality (None: unknown, as good)."""
    q = 1.0 if quality is None else float(np.clip(quality, 0.0, 1.0))
    return round(LOW_BAND + QUALITY_WIDEN * (1.0 - q), DECIMALS)


def verdict(distance: float, tolerance: float = TOLERANCE, quality: float | None = None) -> tuple[bool, str]:
    """(same_person, confidence) for a descriptor distance; "low" means near the threshold: look yourself.

    `quality`: the worse face's quality of the pair (None: unknown, judged as a good face). The bands are half-open,
    as the README's table reads; for good faces [0.50, 0.55) medium, [0.55, 0.65) low, [0.65, 0.70) medium.
    """
    d = round(float(distance), DECIMALS)
    same = d < tolerance
    widen = low_band(quality) - LOW_BAND
    if round(tolerance - low_band(quality), DECIMALS) <= d < round(tolerance + low_band(quality), DECIMALS):
        return same, "low"
    if d < round(SURE_SAME - widen, DECIMALS) or d >= round(SURE_DIFFERENT + widen, DECIMALS):
        return same, "high"
    return same, "medium"


def pair_quality(a: float | None, b: float | None) -> float | None:
    """A pair is as good as its worse face (None: neither face's quality is known)."""
    known = [q for q in (a, b) if q is not None]
    return min(known) if known else None


def face_distance(known: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Euclidean distances between each row of `known` and one descriptor (face_recognition's face_distance)."""
    known = np.atleast_2d(np.asarray(known, dtype=np.float32))
    if not len(known):
        return np.zeros(0, dtype=np.float32)
    return np.linalg.norm(known - np.asarray(candidate, dtype=np.float32)[None, :], axis=1)
