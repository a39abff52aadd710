"""Fake face models for fast tests: "faces" are squares of pure colours on grey, one colour per person.

FakeHog stands in for dlib's HOG detector (it finds the squares in whatever array it is given, so tests check the
scaling and EXIF mapping of boxes), FakeEmbedder for the landmarks + ResNet pair (each colour maps to a fixed
128-d descriptor of norm ~1.4, like dlib's), FakeQuality for the face quality (every square a good face: flat colour
would measure as blurred). All count their calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imagesim.faces.analyze import FaceAnalyzer
from imagesim.faces.detect import FaceDetector
from imagesim.faces.embed import DIM, FaceEmbedder
from imagesim.faces.quality import FaceQuality, Quality, score_quality

PALETTE = [(220, 40, 40), (40, 200, 40), (40, 40, 220), (230, 220, 40), (200, 40, 200)]
GREY = (128, 128, 128)


class _Rect:
    def __init__(self, left: int, top: int, right: int, bottom: int) -> None:
        self._box = (left, top, right, bottom)

    def left(self) -> int:
        return self._box[0]

    def top(self) -> int:
        return self._box[1]

    def right(self) -> int:
        return self._box[2]

    def bottom(self) -> int:
        return self._box[3]


class FakeHog:
    """dlib's `detector.run(arr, upsample, adjust) -> (rects, scores, kinds)`, finding the coloured squares."""

    def __init__(self, min_side: int = 20, scores: dict[int, float] | None = None) -> None:
        self.min_side = min_side
        self.scores = scores or {}  # palette index -> detector score (default 1.0): weak "faces" for some colours
        self.calls: list[tuple[int, int]] = []  # (height, width) of each array seen

    def run(self, arr: np.ndarray, upsample: int, adjust: float) -> tuple[list[_Rect], list[float], list[int]]:
        self.calls.append(arr.shape[:2])
        rects, scores = [], []
        for who, colour in enumerate(PALETTE):
            mask = (np.abs(arr.astype(np.int16) - np.asarray(colour)) < 40).all(axis=2)
            cols = np.concatenate([[False], mask.any(axis=0), [False]])
            edges = np.nonzero(np.diff(cols.astype(np.int8)))[0]
            for x0, x1 in zip(edges[::2], edges[1::2], strict=True):  # side-by-side squares of one colour: twins
                ys = np.nonzero(mask[:, x0:x1].any(axis=1))[0]
                if x1 - x0 >= self.min_side:
                    rects.append(_Rect(int(x0), int(ys.min()), int(x1 - 1), int(ys.max())))
                    scores.append(self.scores.get(who, 1.0))
        return rects, scores, [0] * len(rects)


class FakeEmbedder(FaceEmbedder):
    """Chip = mean colour of the box centre; descriptor = the nearest palette colour's fixed vector."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(7)
        base = rng.normal(size=(len(PALETTE), DIM)).astype(np.float32)
        self.base = 1.4 * base / np.linalg.norm(base, axis=1, keepdims=True)
        self.calls = 0

    def describe(self) -> dict[str, Any]:
        return {"embedder": "fake"}

    def chip(self, arr: np.ndarray, box: tuple[float, float, float, float], angle: float = 0.0) -> np.ndarray:
        left, top, right, bottom = (int(round(v)) for v in box)
        cx, cy = (left + right) // 2, (top + bottom) // 2
        w, h = max(1, (right - left) // 4), max(1, (bottom - top) // 4)
        return arr[cy - h:cy + h + 1, cx - w:cx + w + 1].reshape(-1, 3).mean(axis=0)

    def face_encodings(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(chips), DIM), dtype=np.float32)
        for i, colour in enumerate(chips):
            who = int(np.argmin([np.abs(np.asarray(c) - colour).sum() for c in PALETTE]))
            out[i] = self.base[who]
        return out


class FakeQuality(FaceQuality):
    """Every face measures as good (quality 1.0), without dlib's landmark model."""

    def __init__(self) -> None:
        super().__init__(predictor=object())
        self.calls = 0

    def assess(self, arr: np.ndarray, box: Sequence[float], detector_score: float) -> Quality:
        self.calls += 1
        return score_quality(120, 500, 0.0, 2.0)


def fake_analyzer(size: int | None = None, scores: dict[int, float] | None = None) -> FaceAnalyzer:
    return FaceAnalyzer(FaceDetector(size=size or 1280, detector=FakeHog(scores=scores)), FakeEmbedder(),
                        FakeQuality())


def face_photo(people: Sequence[int], size: tuple[int, int] = (400, 300), side: int = 60, seed: int = 0,
               at: Sequence[tuple[int, int]] | None = None) -> Image.Image:
    """Grey photo with one square per person (palette index), left to right unless `at` gives top-left corners."""
    img = Image.new("RGB", size, GREY)
    rng = np.random.default_rng(seed)
    arr = np.asarray(img).copy()
    arr[:4, :4] = rng.integers(100, 156, (4, 4, 3))  # photos differ in bytes even with the same people
    img = Image.fromarray(arr)
    for n, person in enumerate(people):
        x, y = at[n] if at else (20 + n * (side + 30), 40)
        img.paste(PALETTE[person], (x, y, x + side, y + side))
    return img


def write_face_photo(path: Path, people: Sequence[int], **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    face_photo(people, **kwargs).save(path, quality=95)
    return path


def index_with_fakes(db: Path, roots: Sequence[Path], encoders: Sequence[Any],
                     analyzer: FaceAnalyzer | None = None) -> Any:
    """`imagesim index --faces` with fake face models: index, update people (as the indexer does), close; return the
    IndexReport."""
    from imagesim.faces.people import People
    from imagesim.faces.stage import FaceStage, configure_faces
    from imagesim.indexer import index_gallery
    from imagesim.store import Store

    store = Store.open(db, create=True)
    try:
        configure_faces(store, True)
        report = index_gallery(store, roots, encoders, faces=FaceStage(analyzer or fake_analyzer()), progress=False,
                               threads=1)
        People(store).update()
        return report
    finally:
        store.close()
