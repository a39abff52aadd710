"""Detector + embedder as one batch step: decoded photos in, their faces (box, score, descriptor) out."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from .detect import Box, FaceDetector
from .embed import DIM, FaceEmbedder
from .quality import FaceQuality


@dataclass(frozen=True)
class Face:
    """One face: box in the photo's upright full-size pixels, detector score, raw 128-d dlib descriptor."""

    box: Box
    score: float
    encoding: np.ndarray = field(repr=False)
    quality: float | None = None  # 0..1 (quality.py): how far its verdicts can be trusted; None: not measured


class FaceAnalyzer:
    """Detector + embedder as one pure batch function: decoded photos in, their faces out."""

    def __init__(self, detector: FaceDetector | None = None, embedder: FaceEmbedder | None = None,
                 quality: FaceQuality | None = None) -> None:
        self.detector = detector or FaceDetector()
        self.embedder = embedder or FaceEmbedder()
        self.quality = quality or FaceQuality()
        self._lock = threading.Lock()  # dlib's networks keep per-call buffers: one photo batch at a time

    def __getstate__(self) -> dict[str, Any]:  # picklable for `index --ray` workers: a lock never travels
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

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
        found: list[list[tuple[Box, float, float]]] = []
        chips: list[np.ndarray] = []
        for img in images:
            rgb = img if img.mode == "RGB" else img.convert("RGB")
            arr = np.asarray(rgb)
            full_w, full_h = img.info.get("original_size", img.size)
            sx, sy = full_w / img.width, full_h / img.height
            mine: list[tuple[Box, float, float]] = []
            for box, score in self.detector.face_locations(rgb):
                chips.append(self.embedder.chip(arr, box))
                full = (int(round(box[0] * sx)), int(round(box[1] * sy)), int(round(box[2] * sx)),
                        int(round(box[3] * sy)))
                mine.append((full, score, self.quality.assess(arr, box, score).value))
            found.append(mine)
        encodings = self.embedder.face_encodings(chips)
        out: list[list[Face]] = []
        row = 0
        for mine in found:
            out.append([Face(box, score, encodings[row + i], q) for i, (box, score, q) in enumerate(mine)])
            row += len(mine)
        return out
