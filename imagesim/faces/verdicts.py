"""What a distance between two face descriptors means, in face_recognition's words (`face_distance`, `tolerance`).

Distances are dlib's euclidean distances between raw descriptors; the verdict thresholds below were calibrated on
faces-small (docs/faces.md).
"""

from __future__ import annotations

import numpy as np

TOLERANCE = 0.6  # same person below this: face_recognition's compare_faces default, confirmed by our calibration
SURE_SAME = 0.5  # below: "high" confidence that it is the same person
SURE_DIFFERENT = 0.7  # at or above: "high" confidence that it is someone else
LOW_BAND = 0.05  # within this of the tolerance (below or at-or-above): "low" confidence, have a look
DECIMALS = 4  # distances are shown and judged at this precision, so a shown 0.7000 always reads as 0.70 and above


def verdict(distance: float, tolerance: float = TOLERANCE) -> tuple[bool, str]:
    """(same_person, confidence) for a descriptor distance; "low" means near the threshold: look yourself.

    The bands are half-open, as the README's table reads: [0.50, 0.55) medium, [0.55, 0.65) low, [0.65, 0.70) medium.
    """
    d = round(float(distance), DECIMALS)
    same = d < tolerance
    if d < SURE_SAME or d >= SURE_DIFFERENT:
        return same, "high"
    if round(tolerance - LOW_BAND, DECIMALS) <= d < round(tolerance + LOW_BAND, DECIMALS):
        return same, "low"
    return same, "medium"


def face_distance(known: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Euclidean distances between each row of `known` and one descriptor (face_recognition's face_distance)."""
    known = np.atleast_2d(np.asarray(known, dtype=np.float32))
    if not len(known):
        return np.zeros(0, dtype=np.float32)
    return np.linalg.norm(known - np.asarray(candidate, dtype=np.float32)[None, :], axis=1)
