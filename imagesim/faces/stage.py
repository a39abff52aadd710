"""The indexer's face step: which photos still need a look, batch detection, and the face rows it writes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..encoders import normalize
from ..store import Catalog, Store
from .analyze import Face, FaceAnalyzer
from .catalog import FaceCatalog
from .detect import FaceDetector
from .embed import DIM
from .schema import FACES, analyzer_for, ensure_schema, face_settings, has_schema, set_faces


class FaceStage:
    """The indexer's face step: which contents still need a look, the batch detection, and the rows it writes."""

    space = FACES

    def __init__(self, analyzer: FaceAnalyzer) -> None:
        self.analyzer = analyzer
        self.found = 0

    @property
    def input_size(self) -> int:
        return self.analyzer.input_size

    def begin(self, store: Store) -> set[int]:
        """Make the tables and space ready; return the contents never scanned for faces with these models."""
        catalog = store.catalog
        ensure_schema(catalog)
        info = catalog.space(FACES)
        fingerprint = self.analyzer.fingerprint()
        if info is not None and info.fingerprint != fingerprint:  # other detector/models: detect everything anew
            with catalog.transaction():
                FaceCatalog(catalog).forget_detections()
        store.ensure_space(FACES, fingerprint, self.analyzer.describe(), DIM, rebuild=True)  # graph: loaded on use
        return FaceCatalog(catalog).unscanned_contents()

    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        return self.analyzer.faces(images)

    def put(self, catalog: Catalog, content_id: int, faces: Sequence[Face]) -> tuple[list[int], np.ndarray]:
        """Write one photo's faces (inside the caller's transaction); return their ids and graph vectors."""
        ids = FaceCatalog(catalog).replace_faces(content_id, faces)
        vectors = normalize(np.stack([f.encoding for f in faces])) if faces else np.zeros((0, DIM), np.float32)
        if ids:
            catalog.put_vectors(FACES, ids, [content_id] * len(ids), vectors)
        self.found += len(ids)
        return ids, vectors


def configure_faces(store: Store, faces: bool | None, detector: str | None = None,
                    analyzer: FaceAnalyzer | None = None) -> FaceStage | None:
    """Apply `--faces` / `--no-faces` / `--face-detector` to this database; return the face step, or None when off.

    `analyzer`: face models to use as given (already loaded by the caller, or fakes in tests); else the settings'."""
    settings = face_settings(store.catalog)
    if faces is False:
        if settings is not None or has_schema(store.catalog):
            set_faces(store, None)
        return None
    if faces or detector:
        settings = {"detector": detector or (settings or {}).get("detector", "hog")}
        FaceDetector(settings["detector"])  # refuse an unknown detector before anything changes
        set_faces(store, settings)
    if settings is None:
        return None
    return FaceStage(analyzer or analyzer_for(settings))


