"""Face recognition: whose face is it? dlib's 128-d ResNet descriptor of a face aligned by 5 landmarks.

It needs detections (boxes from `detect.py`), as immich's recognizer declares; it never looks for faces itself.
Descriptors are raw dlib vectors (not unit length): their euclidean distance is what `verdicts.py` judges. The
network runs on ONNX Runtime from dlib's own weights (`resnet.py`); dlib's `compute_face_descriptor` is the fallback.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ModelError
from .detect import model_file
from .resnet import OnnxFaceResNet

DIM = 128
CHIP_SIZE = 150  # the ResNet descriptor's aligned input
CHIP_PADDING = 0.25


class FaceEmbedder:
    """Aligns each face with 5 landmarks and turns its 150 px chip into dlib's 128-d descriptor (batched)."""

    def __init__(self, *, predictor: Any = None, recognizer: Any = None, threads: int = 1) -> None:
        """`recognizer`: a dlib-like network (`compute_face_descriptor`) used instead of the ONNX one; `threads`: the
        ONNX network's threads for one batch."""
        self._predictor = predictor
        self._recognizer = recognizer
        self._given = (predictor is not None, recognizer is not None)  # dlib's own models load again, unpickled
        self.threads = threads
        self._net: OnnxFaceResNet | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:  # picklable for `index --ray` workers
        state = {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_net")}
        given = getattr(self, "_given", (False, False))
        state["_predictor"] = self._predictor if given[0] else None
        state["_recognizer"] = self._recognizer if given[1] else None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._net = None
        self._lock = threading.Lock()

    def _landmarks(self) -> Any:
        with self._lock:
            if self._predictor is None:
                import dlib

                self._predictor = dlib.shape_predictor(model_file("shape_predictor_5_face_landmarks.dat"))
            return self._predictor

    def _network(self) -> Any:
        """The descriptor network: the injected one, else the ONNX one, else (a file it cannot read) dlib's."""
        with self._lock:
            if self._recognizer is None and self._net is None:
                path = model_file("dlib_face_recognition_resnet_model_v1.dat")
                try:
                    self._net = OnnxFaceResNet(path, threads=self.threads)
                except ModelError as exc:
                    import dlib

                    print(f"imagesim: {exc}; using dlib's own (slower) network", file=sys.stderr)
                    self._recognizer = dlib.face_recognition_model_v1(path)
            return self._net if self._recognizer is None else self._recognizer

    def describe(self) -> dict[str, Any]:
        return {"landmarks": "shape_predictor_5_face_landmarks", "descriptor": "dlib_face_recognition_resnet_model_v1",
                "chip": CHIP_SIZE, "padding": CHIP_PADDING}

    def chip(self, arr: np.ndarray, box: tuple[float, float, float, float], angle: float = 0.0) -> np.ndarray:
        """The aligned 150x150 face chip for a box in `arr`'s pixels. A face found on a copy of the photo turned by
        `angle` degrees gets its landmarks on a patch turned the same way (dlib's 5-point model expects upright
        faces); the chip is aligned by those landmarks, so it comes out upright either way."""
        import dlib

        predictor = self._landmarks()
        if angle:
            arr, box = _turned_patch(arr, box, angle)
        rect = dlib.rectangle(int(round(box[0])), int(round(box[1])), int(round(box[2])) - 1, int(round(box[3])) - 1)
        return dlib.get_face_chip(arr, predictor(arr, rect), size=CHIP_SIZE, padding=CHIP_PADDING)

    def face_encodings(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """(n, 128) float32 raw descriptors for aligned chips, in one call to the network."""
        if not chips:
            return np.zeros((0, DIM), dtype=np.float32)
        network = self._network()
        if isinstance(network, OnnxFaceResNet):
            return network(np.stack(chips))
        out = network.compute_face_descriptor(list(chips))
        return np.asarray([np.asarray(v, dtype=np.float32) for v in out], dtype=np.float32).reshape(len(chips), DIM)


def _turned_patch(arr: np.ndarray, box: tuple[float, float, float, float], angle: float
                  ) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A square patch around the box, turned by `angle` degrees counter-clockwise about the box's centre, and the
    box in the patch's pixels."""
    from PIL import Image

    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half_w, half_h = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
    r = int(np.ceil(1.5 * max(half_w, half_h))) + 2
    patch = Image.fromarray(np.ascontiguousarray(arr)).crop(
        (int(round(cx)) - r, int(round(cy)) - r, int(round(cx)) + r, int(round(cy)) + r))
    turned = np.asarray(patch.rotate(angle, Image.Resampling.BILINEAR))
    off_x, off_y = cx - (int(round(cx)) - r), cy - (int(round(cy)) - r)
    return turned, (off_x - half_w, off_y - half_h, off_x + half_w, off_y + half_h)
