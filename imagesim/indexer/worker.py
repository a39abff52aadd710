"""The remote half of `imagesim index --ray`: what a worker builds once (the run's models) and runs per batch.

Nothing here imports Ray: a `PhotoWorker` is a plain callable over dicts of numpy arrays (Ray Data's batch format),
so it is tested without a cluster. It reads each file through `read_bytes` (the one place a path becomes bytes, so
object-store URLs can come later), checks the bytes are the ones the driver hashed, decodes them with the same guarded
`load_image` as the local path, and runs every encoder (and the face models) the photo needs.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..config import ModelSpec
from ..encoders import WEIGHT_FREE, Encoder
from ..errors import ImageError, ModelError
from ..faces.analyze import Face, FaceAnalyzer
from ..images import load_image, read_bytes

CHANGED = "changed while it was being indexed; run imagesim index again to index it"
_FACE_COLS = 5  # left, top, right, bottom, score; then the descriptor


@dataclass(frozen=True)
class ModelRecipe:
    """How a worker builds the run's models itself: pickled to every actor instead of the loaded models.

    `encoders`, when given, are shipped as they are (the caller's own objects: tests, a page's loaded model);
    else the content model is built from `spec` on the worker, beside the weight-free spaces. `analyzer` is the
    run's face models (they load lazily, on the worker). `fingerprints` must match what the worker builds.
    `device`: where the worker runs the content model ("cuda" on an actor given a GPU)."""

    fingerprints: tuple[tuple[str, str], ...]
    spec: ModelSpec | None = None
    precision: str = "auto"
    torch_threads: int | None = None
    encoders: tuple[Encoder, ...] = ()
    analyzer: FaceAnalyzer | None = None
    device: str = "cpu"

    def build(self) -> tuple[list[Encoder], FaceAnalyzer | None]:
        from ..encoders import create_encoder

        encoders = list(self.encoders) or [
            create_encoder("clip", spec=self.spec, precision=self.precision, torch_threads=self.torch_threads,
                           device=self.device),
            *(create_encoder(kind) for kind in WEIGHT_FREE)]
        got = tuple((e.space, e.fingerprint()) for e in encoders)
        if got != self.fingerprints:
            raise ModelError(f"the worker's models differ from the driver's ({dict(got)} vs {dict(self.fingerprints)}):"
                             " install the same imagesim version and model files on every node")
        return encoders, self.analyzer


def vector_column(space: str) -> str:
    return f"vec_{space}"


def pack_faces(faces: list[Face], dim: int) -> bytes:
    rows = np.zeros((len(faces), _FACE_COLS + dim), dtype=np.float64)
    for i, face in enumerate(faces):
        rows[i, :4] = face.box
        rows[i, 4] = face.score
        rows[i, _FACE_COLS:] = face.encoding
    return rows.tobytes()


def unpack_faces(blob: bytes, dim: int) -> list[Face]:
    rows = np.frombuffer(blob, dtype=np.float64).reshape(-1, _FACE_COLS + dim)
    return [Face((int(r[0]), int(r[1]), int(r[2]), int(r[3])), float(r[4]), r[_FACE_COLS:].copy()) for r in rows]


class PhotoWorker:
    """A Ray Data `map_batches` callable class: the models load once per actor, in `__init__`.

    In: {"path", "sha256", "spaces" (comma-separated), "faces" (bool)}. Out: {"sha256", "error" ("" when fine),
    "width", "height" (the photo's upright full size), "vec_<space>" per space (zeros where not asked for or
    failed), "faces" (packed rows, see `pack_faces`)}."""

    def __init__(self, recipe: ModelRecipe) -> None:
        self.encoders, self.analyzer = recipe.build()
        sizes = [e.input_size or 0 for e in self.encoders] + ([self.analyzer.input_size] if self.analyzer else [])
        self.draft = max(sizes, default=0) or None  # one decode serves every step, as on the local path
        # decoding releases the GIL: a batch decodes on every CPU the actor holds, as the local path's readers do
        self.decoders = ThreadPoolExecutor(max(1, recipe.torch_threads or 1), thread_name_prefix="imagesim-decode")

    def _decode(self, path: str, sha: str) -> tuple[Image.Image | None, str]:
        """(image, "") or (None, the reason it cannot be used)."""
        try:
            data = read_bytes(path)
            if hashlib.sha256(data).hexdigest() != sha:
                return None, CHANGED
            return load_image(data, draft_size=self.draft, name=path), ""
        except ImageError as exc:
            return None, exc.reason

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        n = len(batch["path"])
        errors = [""] * n
        sizes = np.zeros((n, 2), dtype=np.int64)
        images: dict[int, Image.Image] = {}
        decoded = self.decoders.map(self._decode, [str(p) for p in batch["path"]], [str(s) for s in batch["sha256"]])
        for i, (img, error) in enumerate(decoded):
            if img is None:
                errors[i] = error
                continue
            images[i] = img
            sizes[i] = img.info.get("original_size", img.size)
        wanted = [str(s).split(",") if s else [] for s in batch["spaces"]]
        out: dict[str, Any] = {"sha256": np.asarray(batch["sha256"]), "error": np.asarray(errors, dtype=object),
                               "width": sizes[:, 0], "height": sizes[:, 1]}
        for enc in self.encoders:
            rows = [i for i in images if enc.space in wanted[i]]
            vectors = np.zeros((n, enc.dim), dtype=np.float32)
            if rows:
                vectors[rows] = enc.embed_images([images[i] for i in rows])
            out[vector_column(enc.space)] = vectors
        faces: list[bytes] = [b""] * n
        rows = [i for i in images if bool(batch["faces"][i])]
        if rows and self.analyzer is not None:
            from ..faces.embed import DIM

            for i, found in zip(rows, self.analyzer.faces([images[i] for i in rows]), strict=True):
                faces[i] = pack_faces(found, DIM)
        out["faces"] = np.asarray(faces, dtype=object)
        return out
