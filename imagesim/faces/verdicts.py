"""What a distance between two face descriptors means, in face_recognition's words (`face_distance`, `tolerance`).

Distances are dlib's euclidean distances between raw descriptors; the verdict thresholds below were calibrated on
faces-small (docs/faces.md).
"""

from __future__ import annotations

import numpy as np

TOLERANCE = 0.6  # same person below this: face_recognition's compare_faces default, confirmed by our calibration
SURE_SAME = 0.5  # below: "high" confidence that it is the same person
SURE_DIFFERENT = 0.7  # at or above: "high" confidence that it is someone else


def verdict(distance: float, tolerance: float = TOLERANCE) -> tuple[bool, str]:
    """(same_person, confidence) for a descriptor distance; "low" means near the threshold: look yourself."""
    same = distance < tolerance
    if distance < SURE_SAME or distance >= SURE_DIFFERENT:
        return same, "high"
    if abs(distance - tolerance) < 0.05:
        return same, "low"
    return same, "medium"


def face_distance(known: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Euclidean distances between each row of `known` and one descriptor (face_recognition's face_distance)."""
    known = np.atleast_2d(np.asarray(known, dtype=np.float32))
    if not len(known):
        return np.zeros(0, dtype=np.float32)
    return np.linalg.norm(known - np.asarray(candidate, dtype=np.float32)[None, :], axis=1)
