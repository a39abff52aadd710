"""Faces: a detector (where are the faces?) and an embedder (whose face is it?), kept apart as in immich.

Both use dlib models from the `face_recognition_models` package: the HOG frontal detector (default) or the CNN mmod
detector, the 5-point landmark predictor for alignment, and the 128-d ResNet descriptor. The words are
face_recognition's: `face_locations`, `face_encodings`, `face_distance`, `tolerance`. Distances are dlib's euclidean
distances between raw descriptors; the verdict thresholds below were calibrated on faces-small (docs/faces.md).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ImagesimError, ModelError, NoFaceFound  # noqa: F401  (NoFaceFound: part of this API)

DIM = 128
# Verdicts on the euclidean distance between two descriptors (calibrated in docs/faces.md on faces-small).
TOLERANCE = 0.6  # same person below this: face_recognition's compare_faces default, confirmed by our calibration
SURE_SAME = 0.5  # below: "high" confidence that it is the same person
SURE_DIFFERENT = 0.7  # at or above: "high" confidence that it is someone else
# Long side (px) the HOG detector works at. HOG finds faces from ~80 px up, so at 1280 px a face must span ~6 % of
# the photo's long side. A first look at half that size settles portraits (one big face) at a quarter of the cost;
# photos with two or more faces (groups) get a last pass at twice the size (faces down to ~3 %).
HOG_SIZE = 1280
CNN_SIZE = 800  # the CNN detector costs far more per pixel (seconds per photo on a CPU): one pass, at 800 px
CHIP_SIZE = 150  # the ResNet descriptor's aligned input
CHIP_PADDING = 0.25

Box = tuple[int, int, int, int]  # left, top, right, bottom


def models_dir() -> Path:
    """Folder of dlib's model files, found without importing face_recognition_models (it needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("face models are missing: pip install face_recognition_models (and dlib-bin)")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _model_file(name: str) -> str:
    path = models_dir() / name
    if not path.is_file():
        raise ModelError(f"face model file {path} is missing: reinstall face_recognition_models")
    return str(path)


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


@dataclass(frozen=True)
class Face:
    """One face: box in the photo's upright full-size pixels, detector score, raw 128-d dlib descriptor."""

    box: Box
    score: float
    encoding: np.ndarray = field(repr=False)


class FaceDetector:
    """Finds face boxes. The photo is resized so its long side is `size` px before the detector runs, so huge
    photos cost no more than small ones, and small photos are upsampled (at most 2x) so small faces are found.
    HOG looks in up to three passes, each only when the one before asks for it: at size/2 (a single face found
    there is a portrait: done), at `size`, and, when `group_pass` or more faces were found (a group), at 2x size for
    the smaller faces behind. `cascade=False` starts at `size`."""

    def __init__(self, model: str = "hog", *, size: int | None = None, upsample: int = 0, group_pass: int = 2,
                 cascade: bool = True, detector: Any = None) -> None:
        if model not in ("hog", "cnn"):
            raise ImagesimError(f"unknown face detector {model!r}: use hog or cnn")
        self.model = model
        self.size = size or (HOG_SIZE if model == "hog" else CNN_SIZE)
        self.upsample = upsample
        self.group_pass = group_pass if model == "hog" else 0  # a CNN pass at 2x size costs seconds more
        self.cascade = cascade and model == "hog"
        self._detector = detector
        self._lock = threading.Lock()

    @property
    def detector(self) -> Any:
        with self._lock:  # load once, on first use
            if self._detector is None:
                import dlib

                if self.model == "hog":
                    self._detector = dlib.get_frontal_face_detector()
                else:
                    self._detector = dlib.cnn_face_detection_model_v1(_model_file("mmod_human_face_detector.dat"))
            return self._detector

    def describe(self) -> dict[str, Any]:
        return {"detector": self.model, "size": self.size, "upsample": self.upsample, "group_pass": self.group_pass,
                "cascade": self.cascade}

    def face_locations(self, image: Image.Image) -> list[tuple[tuple[float, float, float, float], float]]:
        """[(box in `image` pixels as floats, score)], best score first."""
        if min(image.size) < 8:
            return []
        found: list[tuple[tuple[float, float, float, float], float]] = []
        scales: list[float] = []
        if self.cascade:
            found = self._run(image, self.size // 2, scales)
            if len(found) == 1:
                return found
        found = _merge(found, self._run(image, self.size, scales))
        if self.group_pass and len(found) >= self.group_pass:
            found = _merge(found, self._run(image, self.size * 2, scales))
        return found

    def _run(self, image: Image.Image, size: int,
             scales: list[float]) -> list[tuple[tuple[float, float, float, float], float]]:
        """One detector pass with the photo's long side at `size` (upsampling at most 2x); skip a repeated scale."""
        w, h = image.size
        scale = min(size / max(w, h), 2.0)
        if any(abs(scale - s) < 0.02 for s in scales):
            return []
        scales.append(scale)
        work = image if abs(scale - 1.0) < 0.02 else image.resize(
            (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR, reducing_gap=2.0)
        scale_x, scale_y = w / work.width, h / work.height
        arr = np.asarray(work.convert("RGB"))
        found: list[tuple[tuple[float, float, float, float], float]] = []
        if self.model == "hog":
            rects, scores, _ = self.detector.run(arr, self.upsample, 0.0)
            pairs = zip(rects, scores, strict=False)
        else:
            pairs = ((d.rect, d.confidence) for d in self.detector(arr, self.upsample))
        for rect, score in pairs:
            left, top = max(0.0, rect.left() * scale_x), max(0.0, rect.top() * scale_y)
            right, bottom = min(float(w), (rect.right() + 1) * scale_x), min(float(h), (rect.bottom() + 1) * scale_y)
            if right - left >= 2 and bottom - top >= 2:
                found.append(((left, top, right, bottom), float(score)))
        found.sort(key=lambda f: -f[1])
        return found


class FaceEmbedder:
    """Aligns each face with 5 landmarks and turns its 150 px chip into dlib's 128-d descriptor (batched)."""

    def __init__(self, *, predictor: Any = None, recognizer: Any = None) -> None:
        self._predictor = predictor
        self._recognizer = recognizer
        self._lock = threading.Lock()

    def _models(self) -> tuple[Any, Any]:
        with self._lock:
            if self._predictor is None or self._recognizer is None:
                import dlib

                if self._predictor is None:
                    self._predictor = dlib.shape_predictor(_model_file("shape_predictor_5_face_landmarks.dat"))
                if self._recognizer is None:
                    self._recognizer = dlib.face_recognition_model_v1(
                        _model_file("dlib_face_recognition_resnet_model_v1.dat"))
            return self._predictor, self._recognizer

    def describe(self) -> dict[str, Any]:
        return {"landmarks": "shape_predictor_5_face_landmarks", "descriptor": "dlib_face_recognition_resnet_model_v1",
                "chip": CHIP_SIZE, "padding": CHIP_PADDING}

    def chip(self, arr: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """The aligned 150x150 face chip for a box in `arr`'s pixels."""
        import dlib

        predictor, _ = self._models()
        rect = dlib.rectangle(int(round(box[0])), int(round(box[1])), int(round(box[2])) - 1, int(round(box[3])) - 1)
        return dlib.get_face_chip(arr, predictor(arr, rect), size=CHIP_SIZE, padding=CHIP_PADDING)

    def face_encodings(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """(n, 128) float32 raw descriptors for aligned chips, in one call to the network."""
        if not chips:
            return np.zeros((0, DIM), dtype=np.float32)
        _, recognizer = self._models()
        out = recognizer.compute_face_descriptor(list(chips))
        return np.asarray([np.asarray(v, dtype=np.float32) for v in out], dtype=np.float32).reshape(len(chips), DIM)


class FaceAnalyzer:
    """Detector + embedder as one pure batch function: decoded photos in, their faces out."""

    def __init__(self, detector: FaceDetector | None = None, embedder: FaceEmbedder | None = None) -> None:
        self.detector = detector or FaceDetector()
        self.embedder = embedder or FaceEmbedder()
        self._lock = threading.Lock()  # dlib's networks keep per-call buffers: one photo batch at a time

    @property
    def input_size(self) -> int:
        """Decode JPEGs (draft) to about the detector's working size: enough pixels for faces, no more."""
        return self.detector.size

    def describe(self) -> dict[str, Any]:
        return {"encoder": "dlib faces", **self.detector.describe(), **self.embedder.describe(), "dim": DIM}

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()[:16]

    def faces(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        """Every face of every photo, boxes in each photo's upright full-size pixels (`info["original_size"]`)."""
        with self._lock:
            return self._faces(images)

    def _faces(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        found: list[list[tuple[Box, float]]] = []
        chips: list[np.ndarray] = []
        for img in images:
            rgb = img if img.mode == "RGB" else img.convert("RGB")
            arr = np.asarray(rgb)
            full_w, full_h = img.info.get("original_size", img.size)
            sx, sy = full_w / img.width, full_h / img.height
            mine: list[tuple[Box, float]] = []
            for box, score in self.detector.face_locations(rgb):
                chips.append(self.embedder.chip(arr, box))
                full = (int(round(box[0] * sx)), int(round(box[1] * sy)), int(round(box[2] * sx)),
                        int(round(box[3] * sy)))
                mine.append((full, score))
            found.append(mine)
        encodings = self.embedder.face_encodings(chips)
        out: list[list[Face]] = []
        row = 0
        for mine in found:
            out.append([Face(box, score, encodings[row + i]) for i, (box, score) in enumerate(mine)])
            row += len(mine)
        return out


def _merge(found: list, more: list) -> list:
    """Add the boxes of a later pass that are not already there; best score first."""
    out = list(found) + [(box, score) for box, score in more if all(_iou(box, b) < 0.3 for b, _ in found)]
    return sorted(out, key=lambda f: -f[1])


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def crop_box(box: Box, image_size: tuple[int, int], margin: float = 0.3) -> Box:
    """A square-ish crop around a face box with some margin, inside the image: for thumbnails."""
    left, top, right, bottom = box
    w, h = right - left, bottom - top
    mx, my = int(w * margin), int(h * margin)
    return (max(0, left - mx), max(0, top - my), min(image_size[0], right + mx), min(image_size[1], bottom + my))
