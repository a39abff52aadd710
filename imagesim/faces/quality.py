"""How much a face can be trusted: size in pixels, sharpness, pose from the 5 landmarks, detector score.

A small, blurred, turned or weakly detected face gives a descriptor that wanders further from the person's other
faces, so its verdicts near the 0.6 line are less sure. The score is 1.0 for a face good on every count and falls
toward 0 with its worst count (the minimum, not a mean: one bad count is enough to spoil a descriptor);
`verdicts.verdict` widens the "low: have a look" band by how far below 1.0 the worse face of a pair is.

Each count's range was set before looking at any verification result (docs/faces.md, "Face quality"): dlib's
descriptor works on a 150 px chip where the face spans ~100 px, so faces from ~80 px up lose nothing; HOG scores
below 0.2 are the ones that are sometimes not faces; a nose a third of the eye distance off the eyes' midpoint is a
face turned ~35 degrees.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .detect import model_file

SIZE_RANGE = (24.0, 80.0)  # face box side in the decoded photo's pixels: 0 at or below the first, 1 from the second
SHARP_RANGE = (20.0, 120.0)  # variance of the Laplacian of the face at SHARP_SIDE px (grey): 0 ... 1
SHARP_SIDE = 96
TURN_RANGE = (0.12, 0.40)  # nose off the eyes' midpoint, in eye distances: 1 up to the first, 0 from the second
SCORE_RANGE = (0.0, 0.5)  # detector score: 0 at or below the first, 1 from the second
POOR = 0.5  # a count below this is named in the note ("small", "blurry", ...)
NAMES = {"size": "small", "sharpness": "blurry", "pose": "turned", "detector": "weak detection"}


def _ramp(value: float, lo: float, hi: float) -> float:
    return float(np.clip((value - lo) / (hi - lo), 0.0, 1.0))


@dataclass(frozen=True)
class Quality:
    """A face's quality (0..1, the worst of its counts) and each count, for the note shown beside a verdict."""

    value: float
    size: float
    sharpness: float
    pose: float
    detector: float

    def poor(self) -> list[str]:
        """What is wrong with the face, in words ("small", "blurry", "turned", "weak detection")."""
        return [NAMES[k] for k in NAMES if getattr(self, k) < POOR]


def sharpness(arr: np.ndarray, box: Sequence[float]) -> float:
    """Variance of the Laplacian of the face box, resized to SHARP_SIDE px grey: blur and too few pixels both lower
    it (a 30 px face enlarged to 96 px is as soft as a blurred one)."""
    import cv2

    h, w = arr.shape[:2]
    left, top = max(0, int(round(box[0]))), max(0, int(round(box[1])))
    right, bottom = min(w, int(round(box[2]))), min(h, int(round(box[3])))
    if right - left < 2 or bottom - top < 2:
        return 0.0
    face = np.ascontiguousarray(arr[top:bottom, left:right])
    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY) if face.ndim == 3 else face
    small = (right - left) > SHARP_SIDE
    grey = cv2.resize(grey, (SHARP_SIDE, SHARP_SIDE), interpolation=cv2.INTER_AREA if small else cv2.INTER_LINEAR)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def turn(points: np.ndarray) -> float:
    """How far the face is turned: the nose's offset from the eyes' midpoint along the eye line, in eye distances
    (dlib's 5 landmarks: two corners of each eye, then the base of the nose)."""
    eye_a, eye_b, nose = points[0:2].mean(axis=0), points[2:4].mean(axis=0), points[4]
    axis = eye_b - eye_a
    span = float(np.linalg.norm(axis))
    if span < 1e-6:
        return 1.0
    return abs(float(np.dot(nose - (eye_a + eye_b) / 2, axis / span))) / span


def score_quality(side: float, sharp: float, turned: float | None, detector_score: float) -> Quality:
    """The quality from the measured counts (pose unknown when `turned` is None: not counted)."""
    counts = {"size": _ramp(side, *SIZE_RANGE), "sharpness": _ramp(sharp, *SHARP_RANGE),
              "pose": 1.0 if turned is None else 1.0 - _ramp(turned, *TURN_RANGE),
              "detector": _ramp(detector_score, *SCORE_RANGE)}
    return Quality(round(min(counts.values()), 3), **{k: round(v, 3) for k, v in counts.items()})


class FaceQuality:
    """Measures a face's quality in the decoded photo it was found in. The 5-landmark predictor (dlib's, the one
    the descriptor aligns with) loads on first use; `predictor` injects another (tests)."""

    def __init__(self, predictor: Any = None) -> None:
        self._predictor = predictor
        self._given = predictor is not None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:  # picklable for `index --ray` workers: dlib's predictor loads again
        state = {k: v for k, v in self.__dict__.items() if k != "_lock"}
        if not self._given:
            state["_predictor"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def landmarks(self, arr: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """(5, 2) landmark points of the face in `box`."""
        import dlib

        with self._lock:
            if self._predictor is None:
                self._predictor = dlib.shape_predictor(model_file("shape_predictor_5_face_landmarks.dat"))
            predictor = self._predictor
        rect = dlib.rectangle(int(round(box[0])), int(round(box[1])), int(round(box[2])) - 1, int(round(box[3])) - 1)
        shape = predictor(arr, rect)
        return np.asarray([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)], dtype=np.float64)

    def assess(self, arr: np.ndarray, box: Sequence[float], detector_score: float) -> Quality:
        """The quality of the face in `box` (pixels of `arr`, the decoded RGB photo the detector saw)."""
        side = float(min(box[2] - box[0], box[3] - box[1]))
        points = self.landmarks(arr, box)
        return score_quality(side, sharpness(arr, box), turn(points) if len(points) >= 5 else None, detector_score)
