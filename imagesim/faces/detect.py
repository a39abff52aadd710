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
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from ..errors import ImagesimError, ModelError

# Long side (px) the HOG detector works at. HOG finds faces from ~80 px up, so at 1280 px a face must span ~6 % of
# the photo's long side. A first look at half that size settles portraits (one big face) at a quarter of the cost;
# photos with two or more faces (groups) get a last pass at twice the size (faces down to ~3 %).
HOG_SIZE = 1280
CNN_SIZE = 800  # the CNN detector costs far more per pixel (seconds per photo on a CPU): one pass, at 800 px
MAX_UPSAMPLE = 3.0  # small photos are enlarged at most this much: a 30 px face becomes HOG's ~80 px window
# dlib's HOG finds faces turned in the image plane up to ~15-20 degrees; faces tilted further are looked for on
# copies of the photo turned by these angles (degrees, counter-clockwise), at the upright pass's working size.
ROTATIONS = (-30.0, 30.0)
ROLL_HINT = 12.0
EMPTY_SIZE = 0
ROLL_FACES = 8  # the strongest faces of a photo whose tilt is looked at
# One face at the first look is a portrait (no more passes) only when it is big: a face found there spans >= 1/8 of
# the long side anyway, and a group photo often shows one such face among smaller ones.
PORTRAIT = 0.15  # a found face tilted at least this much (eye line, from its 5 landmarks) hints at more tilted faces
ROTATE_MODES = ("never", "auto", "always")
# HOG's window must lie inside the image, so a face cut by the frame was missed: each pass pads the photo by this
# fraction of its long side, mirrored (a face is nearly symmetric, so its mirrored half stands in for the cut part).
PAD = 0.0
# A turned pass looks at many more windows where nothing is upright (turned backgrounds, frame corners): its boxes
# must score at least this (dlib's HOG scores; the upright passes keep all boxes above 0).
TURNED_FLOOR = 0.1

Box = tuple[int, int, int, int]  # left, top, right, bottom, in the photo's upright full-size pixels


class Detection(NamedTuple):
    """A face box in the detector's input pixels, the detector's score, and the angle (degrees, counter-clockwise)
    the photo was turned by when the face was found (0 upright): turning the face by it makes it upright."""

    box: tuple[float, float, float, float]
    score: float
    angle: float = 0.0


Location = Detection  # the old name


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
    photos cost no more than small ones, and small photos are upsampled (at most `max_upsample`) so small faces are
    found. HOG looks in up to three upright passes, each only when the one before asks for it: at size/2 (a single
    face found there is a portrait: done), at `size`, and, when `group_pass` or more faces were found (a group), at
    2x size for the smaller faces behind. `cascade=False` starts at `size`. The first look settles a photo only when
    its one face is big (PORTRAIT of the long side).

    Tilted faces: `rotate="always"` also looks at the photo turned by each of `rotations`; `"auto"` (default) only
    when a pass could find more: no face found upright, or a found face tilted by at least ROLL_HINT degrees (then
    only the turns towards its tilt). Boxes of every pass are merged by non-maximum suppression (IoU 0.3).

    Detection is thread-safe (each thread gets its own dlib detector; dlib releases the GIL while it scans)."""

    def __init__(self, model: str = "hog", *, size: int | None = None, upsample: int = 0, group_pass: int = 2,
                 cascade: bool = True, rotate: str = "auto", rotations: Sequence[float] = ROTATIONS,
                 max_upsample: float = MAX_UPSAMPLE, pad: float = PAD, pad_mode: str = "reflect",
                 turned_floor: float = TURNED_FLOOR, empty_size: int | None = None,
                 portrait: float = PORTRAIT,
                 detector: Any = None, predictor: Any = None) -> None:
        if model not in ("hog", "cnn"):
            raise ImagesimError(f"unknown face detector {model!r}: use hog or cnn")
        if rotate not in ROTATE_MODES:
            raise ImagesimError(f"unknown rotate mode {rotate!r}: use one of {', '.join(ROTATE_MODES)}")
        self.model = model
        self.size = size or (HOG_SIZE if model == "hog" else CNN_SIZE)
        self.upsample = upsample
        self.group_pass = group_pass if model == "hog" else 0  # a CNN pass at 2x size costs seconds more
        self.cascade = cascade and model == "hog"
        self.rotate = rotate if model == "hog" else "never"  # a CNN pass per angle would cost seconds each
        self.rotations = tuple(float(a) for a in rotations)
        self.max_upsample = float(max_upsample)
        self.pad, self.pad_mode = float(pad), pad_mode
        self.turned_floor = float(turned_floor)
        self.portrait = float(portrait)
        # Turned passes on a photo where no face was found upright: none by default (0). In faces-crowd every turned
        # photo had an upright face to show the tilt, and HOG finds a lone big face tilted 35 degrees; on 12 MP photos
        # without faces the two turns at 640 px doubled detection time.
        self.empty_size = EMPTY_SIZE if empty_size is None else empty_size
        self._detector = detector
        self._predictor = predictor
        self._given = (detector is not None, predictor is not None)  # given models travel when pickled
        self._lock = threading.Lock()
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:  # picklable for `index --ray` workers
        state = {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_local")}
        given = state.get("_given", (False, False))
        if not isinstance(given, tuple):
            given = (bool(given), False)
        if not given[0]:
            state["_detector"] = None
        if not given[1]:
            state["_predictor"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._local = threading.local()

    @property
    def detector(self) -> Any:
        """This thread's detector: a given one is shared (fakes in tests); dlib's HOG is made per thread."""
        if self._detector is not None and (self._given[0] or self.model == "cnn"):
            return self._detector
        mine = getattr(self._local, "detector", None)
        if mine is None:
            import dlib

            if self.model == "hog":
                mine = dlib.get_frontal_face_detector()
            else:
                with self._lock:  # one CNN in memory (its weights are large); load once, on first use
                    if self._detector is None:
                        self._detector = dlib.cnn_face_detection_model_v1(
                            model_file("mmod_human_face_detector.dat"))
                    return self._detector
            self._local.detector = mine
        return mine

    @property
    def predictor(self) -> Any:
        with self._lock:
            if self._predictor is None:
                import dlib

                self._predictor = dlib.shape_predictor(model_file("shape_predictor_5_face_landmarks.dat"))
            return self._predictor

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"detector": self.model, "size": self.size, "upsample": self.upsample,
                               "group_pass": self.group_pass, "cascade": self.cascade}
        if self.rotate != "never" or self.max_upsample != 2.0 or self.pad or self.portrait:  # old settings: old print
            out.update({"rotate": self.rotate, "rotations": list(self.rotations), "max_upsample": self.max_upsample,
                        "pad": self.pad, "pad_mode": self.pad_mode, "turned_floor": self.turned_floor,
                        "empty_size": self.empty_size, "portrait": self.portrait})
        return out

    def face_locations(self, image: Image.Image) -> list[Detection]:
        """[Detection(box in `image` pixels as floats, score, angle)], best score first."""
        if min(image.size) < 8:
            return []
        found: list[Detection] = []
        scales: list[float] = []
        portrait = False
        if self.cascade:
            found = self._run(image, self.size // 2, scales)
            portrait = len(found) == 1 and _side(found[0].box) >= self.portrait * max(image.size)
            if not portrait:
                found = _merge(found, self._run(image, self.size, scales))
        else:
            found = self._run(image, self.size, scales)
        if self.group_pass and len(found) >= self.group_pass:
            found = _merge(found, self._run(image, self.size * 2, scales))
        for angle, size in self.turns(image, found, portrait):
            found = _merge(found, self._run(image, size, [], angle))
        return found

    def turns(self, image: Image.Image, found: Sequence[Detection], portrait: bool = False
              ) -> list[tuple[float, int]]:
        """The turned passes (angle, long side in px) worth running after the upright ones found `found`.

        `auto`: a photo where no face was found gets both turns at `empty_size` px when it is set (off by default);
        a photo with faces gets the turns towards its faces' tilt only when one of its
        strongest faces is tilted by ROLL_HINT degrees or more (a whole photo turned shows in the faces HOG still
        finds), at the portrait's size for a portrait, else at full size."""
        if self.rotate == "never" or not self.rotations:
            return []
        if self.rotate == "always":
            return [(a, self.size) for a in self.rotations]
        if not found:
            return [(a, self.empty_size) for a in self.rotations] if self.empty_size else []
        arr = np.asarray(image.convert("RGB"))
        rolls = [self.roll(arr, d.box) for d in found[:ROLL_FACES]]
        tilted = [r for r in rolls if abs(r) >= ROLL_HINT]
        size = self.size // 2 if portrait else self.size
        return [(a, size) for a in self.rotations if any(a * r > 0 for r in tilted)]

    def roll(self, arr: np.ndarray, box: Sequence[float]) -> float:
        """How far a face is turned in the image plane (degrees, counter-clockwise turn that makes it upright),
        from the eye line of its 5 landmarks."""
        import dlib

        rect = dlib.rectangle(int(round(box[0])), int(round(box[1])), int(round(box[2])) - 1, int(round(box[3])) - 1)
        shape = self.predictor(arr, rect)
        pts = [(shape.part(i).x, shape.part(i).y) for i in range(4)]  # 0-1: one eye's corners, 2-3: the other's
        (ax, ay), (bx, by) = np.mean(pts[2:], axis=0), np.mean(pts[:2], axis=0)
        return float(np.degrees(np.arctan2(by - ay, bx - ax)))

    def _run(self, image: Image.Image, size: int, scales: list[float], angle: float = 0.0) -> list[Detection]:
        """One detector pass with the photo's long side at `size` (upsampling at most `max_upsample`), turned by
        `angle` degrees counter-clockwise; boxes come back in `image`'s upright pixels. An upright pass at a scale
        already looked at is skipped."""
        w, h = image.size
        scale = min(size / max(w, h), self.max_upsample)
        if any(abs(scale - s) < 0.02 for s in scales):
            return []
        scales.append(scale)
        work = image if abs(scale - 1.0) < 0.02 else image.resize(
            (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR, reducing_gap=2.0)
        work = work.convert("RGB")
        if angle:
            turned = work.rotate(angle, Image.Resampling.BILINEAR, expand=True)
        else:
            turned = work
        arr = np.asarray(turned)
        p = int(round(self.pad * max(arr.shape[:2]))) if self.pad else 0
        if p:
            arr = np.pad(arr, ((p, p), (p, p), (0, 0)), mode=self.pad_mode)  # type: ignore[call-overload]
        pairs: Iterable[tuple[Any, Any]]  # (dlib rectangle, score)
        if self.model == "hog":
            rects, scores, _ = self.detector.run(arr, self.upsample, 0.0)
            pairs = zip(rects, scores, strict=False)
        else:
            pairs = ((d.rect, d.confidence) for d in self.detector(arr, self.upsample))
        # A point of the turned copy back to `work`: turn about the centres by -angle.
        cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
        tcx, tcy, wcx, wcy = turned.width / 2, turned.height / 2, work.width / 2, work.height / 2
        scale_x, scale_y = w / work.width, h / work.height
        found: list[Detection] = []
        for rect, score in pairs:
            if angle and score < self.turned_floor:
                continue
            half_w, half_h = (rect.right() + 1 - rect.left()) / 2, (rect.bottom() + 1 - rect.top()) / 2
            dx, dy = rect.left() - p + half_w - tcx, rect.top() - p + half_h - tcy
            cx, cy = wcx + dx * cos - dy * sin, wcy + dx * sin + dy * cos
            left, top = max(0.0, (cx - half_w) * scale_x), max(0.0, (cy - half_h) * scale_y)
            right, bottom = min(float(w), (cx + half_w) * scale_x), min(float(h), (cy + half_h) * scale_y)
            if right - left >= 2 and bottom - top >= 2:
                found.append(Detection((left, top, right, bottom), float(score), angle))
        found.sort(key=lambda f: -f.score)
        return found


def _merge(found: list[Detection], more: list[Detection], overlap: float = 0.3) -> list[Detection]:
    """Non-maximum suppression over two passes' boxes: best score first, a box overlapping a better one (IoU >=
    `overlap`) is dropped."""
    kept: list[Detection] = []
    for d in sorted([*found, *more], key=lambda f: -f.score):
        if all(_iou(d.box, k.box) < overlap for k in kept):
            kept.append(d)
    return kept


def _side(box: Sequence[float]) -> float:
    return max(box[2] - box[0], box[3] - box[1])


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
