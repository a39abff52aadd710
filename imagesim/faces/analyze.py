"""Detector + embedder as one batch step: decoded photos in, their faces (box, score, descriptor) out."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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
                 quality: FaceQuality | None = None, *, threads: int | None = None) -> None:
        self.threads = threads or min(2, os.cpu_count() or 1)  # photos of a batch detected side by side
        self.detector = detector or FaceDetector()
        self.embedder = embedder or FaceEmbedder(threads=self.threads)
        self.quality = quality or FaceQuality()
        self._lock = threading.Lock()  # dlib's networks keep per-call buffers: one photo batch at a time
        # One pool for the analyzer's life: starting threads per batch cost ~0.1 s a thread while dlib held the GIL
        # in the other (bench scale: 67 starts, 9 s of a 1,000-photo index run).
        self._pool: ThreadPoolExecutor | None = None

    def __getstate__(self) -> dict[str, Any]:  # picklable for `index --ray` workers: a lock or pool never travels
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_pool")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._pool = None

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
        # Detection and alignment photo by photo, on `threads` threads (dlib releases the GIL while it scans);
        # then every chip of the batch through the descriptor network in one call.
        if len(images) > 1 and self.threads > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="imagesim-faces")
            per_photo = list(self._pool.map(self._detect, images))
        else:
            per_photo = [self._detect(img) for img in images]
        encodings = self.embedder.face_encodings([chip for _, chips in per_photo for chip in chips])
        out: list[list[Face]] = []
        row = 0
        for mine, _ in per_photo:
            out.append([Face(box, score, encodings[row + i], q) for i, (box, score, q) in enumerate(mine)])
            row += len(mine)
        return out

    def _detect(self, img: Image.Image) -> tuple[list[tuple[Box, float, float]], list[np.ndarray]]:
        """One photo's boxes (upright full-size pixels), scores and qualities, and their aligned chips."""
        rgb = img if img.mode == "RGB" else img.convert("RGB")
        arr = np.asarray(rgb)
        full_w, full_h = img.info.get("original_size", img.size)
        sx, sy = full_w / img.width, full_h / img.height
        mine: list[tuple[Box, float, float]] = []
        chips: list[np.ndarray] = []
        for box, score, angle in self.detector.face_locations(rgb):
            chips.append(self.embedder.chip(arr, box, angle) if angle else self.embedder.chip(arr, box))
            full = (int(round(box[0] * sx)), int(round(box[1] * sy)), int(round(box[2] * sx)),
                    int(round(box[3] * sy)))
            mine.append((full, score, self.quality.assess(arr, box, score).value))
        return mine, chips
