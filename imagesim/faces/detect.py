"""Face detection: where are the faces? dlib's HOG frontal detector (default) or its CNN mmod detector.

Detection and recognition are separate models, as in immich: this module finds boxes; `embed.py` turns the boxes
it found into descriptors; `analyze.py` runs the two together. The dlib model files come from the
`face_recognition_models` package, found here for both.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ImagesimError, ModelError

# Long side (px) the HOG detector works at. HOG finds faces from ~80 px up, so at 1280 px a face must span ~6 % of
# the photo's long side. A first look at half that size settles portraits (one big face) at a quarter of the cost;
# photos with two or more faces (groups) get a last pass at twice the size (faces down to ~3 %).
HOG_SIZE = 1280
CNN_SIZE = 800  # the CNN detector costs far more per pixel (seconds per photo on a CPU): one pass, at 800 px

Box = tuple[int, int, int, int]  # left, top, right, bottom, in the photo's upright full-size pixels
Location = tuple[tuple[float, float, float, float], float]  # a box in the detector's input pixels, and its score


def models_dir() -> Path:
    """Folder of dlib's model files, found without importing face_recognition_models (it needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("face models are missing: pip install face_recognition_models (and dlib-bin)")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def model_file(name: str) -> str:
    """Path of one dlib model file; a clear error when it is missing."""
    path = models_dir() / name
    if not path.is_file():
        raise ModelError(f"face model file {path} is missing: reinstall face_recognition_models")
    return str(path)


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
        self._given = detector is not None  # a given detector travels when pickled; dlib's own loads again
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:  # picklable for `index --ray` workers
        state = {k: v for k, v in self.__dict__.items() if k != "_lock"}
        if not self._given:
            state["_detector"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def detector(self) -> Any:
        with self._lock:  # load once, on first use
            if self._detector is None:
                import dlib

                if self.model == "hog":
                    self._detector = dlib.get_frontal_face_detector()
                else:
                    self._detector = dlib.cnn_face_detection_model_v1(model_file("mmod_human_face_detector.dat"))
            return self._detector

    def describe(self) -> dict[str, Any]:
        return {"detector": self.model, "size": self.size, "upsample": self.upsample, "group_pass": self.group_pass,
                "cascade": self.cascade}

    def face_locations(self, image: Image.Image) -> list[Location]:
        """[(box in `image` pixels as floats, score)], best score first."""
        if min(image.size) < 8:
            return []
        found: list[Location] = []
        scales: list[float] = []
        if self.cascade:
            found = self._run(image, self.size // 2, scales)
            if len(found) == 1:
                return found
        found = _merge(found, self._run(image, self.size, scales))
        if self.group_pass and len(found) >= self.group_pass:
            found = _merge(found, self._run(image, self.size * 2, scales))
        return found

    def _run(self, image: Image.Image, size: int, scales: list[float]) -> list[Location]:
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
        found: list[Location] = []
        pairs: Iterable[tuple[Any, Any]]  # (dlib rectangle, score)
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


def _merge(found: list[Location], more: list[Location]) -> list[Location]:
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
