"""`Gallery`: a database folder opened for queries by photo, text, look, duplicates and faces.

The query modes live in their own modules (`looks`, `duplicates`, `imagesim.faces.search`); Gallery holds the
loaded models and hands each mode the store and, where it needs one, the content vector function."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from ..config import ModelSpec, Settings
from ..encoders import Encoder
from ..errors import ImagesimError, ModelMismatch
from ..faces.analyze import FaceAnalyzer
from ..faces.search import FaceResult, analyzer_for_query, faces_enabled, search_faces
from ..faces.store import face_count
from ..images import load_image
from ..store import MODEL_META_KEY, Store
from ..store.schema import damaged
from . import duplicates, looks
from .duplicates import DupGroup
from .results import Match, Query, expand

T = TypeVar("T")

CONTENT = "content"
_DAMAGE = (sqlite3.DatabaseError, UnicodeDecodeError, json.JSONDecodeError)


def _catalog_errors(method: Callable[..., T]) -> Callable[..., T]:
    """Rows damaged on disk surface as one StoreError line, like damage found at open."""
    @functools.wraps(method)
    def wrapper(self: Gallery, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except _DAMAGE as exc:
            raise damaged(self.store.catalog.path, exc) from None

    return wrapper


class Gallery:
    """A database folder opened for search. The model loads on first need, so stored-photo queries need no torch."""

    def __init__(self, store: Store, settings: Settings, encoder: Encoder | None = None,
                 face_analyzer: FaceAnalyzer | None = None) -> None:
        """`encoder` and `face_analyzer` are used as given when passed (a page that already loaded them, tests with
        fakes); otherwise the database's models load on first need."""
        self.store = store
        self.settings = settings
        self._encoder = encoder
        self._face_analyzer_given = face_analyzer is not None
        self._encoder_checked = False  # against the index's fingerprint, once
        self._face_analyzer = face_analyzer  # else the face models load on the first face query

    @classmethod
    def open(cls, db: str | os.PathLike[str], *, model: ModelSpec | None = None, encoder: Encoder | None = None,
             face_analyzer: FaceAnalyzer | None = None, threads: int | None = None, precision: str | None = None,
             torch_threads: int | None = None) -> Gallery:
        kwargs: dict[str, Any] = {"model": model, "torch_threads": torch_threads}
        if threads:
            kwargs["threads"] = threads
        if precision:
            kwargs["precision"] = precision
        settings = Settings.for_db(db, **kwargs)
        store = Store.open(settings.db, threads=settings.threads, exact_max=settings.exact_search_max)
        return cls(store, settings, encoder, face_analyzer)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the model -----------------------------------------------------------------------------------------------

    def model_spec(self) -> ModelSpec | None:
        """The model the database was built with, as recorded at index time."""
        raw = self.store.catalog.meta(MODEL_META_KEY)
        return ModelSpec(**json.loads(raw)) if raw else None

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            from ..encoders import create_encoder

            spec = self.settings.model or self.model_spec() or ModelSpec()
            self._encoder = create_encoder("clip", spec=spec, precision=self.settings.precision,
                                           torch_threads=self.settings.torch_threads)
        if not self._encoder_checked:
            self._check_encoder(self._encoder)
            self._encoder_checked = True
        return self._encoder

    def _model_name(self, recorded: str | None) -> str | None:
        """The content model as a person knows it: a config file by its file name, not by its content hash."""
        spec = self.model_spec()
        if recorded and recorded.startswith("config:") and spec is not None:
            return f"{os.path.basename(spec.name)} ({recorded})"
        return recorded

    def _check_encoder(self, encoder: Encoder) -> None:
        info = self.store.catalog.space(encoder.space)
        if info is not None and info.fingerprint != encoder.fingerprint():
            was = info.description.get("model")
            raise ModelMismatch(f"{self.store.folder} was indexed with {was}; search with the same "
                                f"--model/--pretrained/--weights, or re-index with --rebuild")

    # ---- queries -------------------------------------------------------------------------------------------------

    @_catalog_errors
    def vector(self, query: Query) -> np.ndarray:
        """The content vector of a photo: the stored one for an unchanged gallery file, else freshly encoded."""
        if self.settings.model is not None:
            _ = self.encoder  # a model asked for explicitly must match the index, stored vector or not
        if isinstance(query, (str, os.PathLike)):
            stored = self.store.stored_vector(query, CONTENT)
            if stored is not None:
                return stored
        img = query if isinstance(query, Image.Image) else load_image(query, draft_size=self.encoder.input_size)
        return self.encoder.embed_images([img])[0]

    @_catalog_errors
    def search(self, query: Query, k: int = 10, mode: str = "content", style_weight: float = 0.5) -> list[Match]:
        """Gallery photos like `query` (a path, bytes or a PIL image), best first.

        mode "content": what it shows (CLIP); "style": how it looks; "blend": (1 - style_weight) * content +
        style_weight * style, with both scores and an explanation on every match.
        """
        if mode == "content":
            return self.search_vector(self.vector(query), k)
        return looks.look_search(self.store, query, k, mode=mode, style_weight=style_weight,
                                 content_vector=self.vector)

    @_catalog_errors
    def has_space(self, space: str) -> bool:
        """Whether the database holds vectors of `space` ("content", "style", "dup", ...)."""
        return self.store.has_space(space)

    @_catalog_errors
    def duplicates(self) -> list[list[str]]:
        """Groups (absolute paths) of copies in the gallery: byte-identical files and edited copies."""
        return [g.paths for g in duplicates.gallery_groups(self.store, "copies")]

    @_catalog_errors
    def duplicate_groups(self, kind: str | None = None) -> list[DupGroup]:
        """Copies and similar shots (or one `kind`: "copies", "similar"), each group with its suggested keeper
        first and every other member explained against it."""
        return duplicates.gallery_groups(self.store, kind)

    @_catalog_errors
    def find_duplicates(self, query: Query) -> list[Match]:
        """Gallery photos that are copies or near-duplicates of `query` ("is this already in my gallery?")."""
        return duplicates.find_in_gallery(self.store, query)

    @_catalog_errors
    def search_text(self, text: str, k: int = 10) -> list[Match]:
        """Gallery photos that match a description, best first."""
        if not text.strip():
            raise ImagesimError("the text query is empty")
        encoder = self.encoder
        if not hasattr(encoder, "embed_texts"):
            raise ImagesimError("this model has no text tower")
        return self.search_vector(encoder.embed_texts([text])[0], k)

    @_catalog_errors
    def search_vector(self, vector: np.ndarray, k: int = 10, space: str = CONTENT) -> list[Match]:
        k = max(0, int(k))
        self.store.refresh()
        labels, scores = self.store.search(space, vector[None, :], k)
        return expand(self.store, labels[0], scores[0], k)

    @_catalog_errors
    def faces(self, query: Query, k: int = 10) -> list[FaceResult]:
        """Each face in `query` with the gallery photos of the nearest faces and a same-person verdict.

        Raises NoFaceFound when the photo shows no face, ImagesimError when faces are off for this database."""
        # The face models load once per Gallery (a UI process keeps one open), not once per query.
        if not self._face_analyzer_given:
            self._face_analyzer = analyzer_for_query(self.store, self._face_analyzer)
        return search_faces(self.store, query, k, analyzer=self._face_analyzer)

    @property
    def face_analyzer(self) -> FaceAnalyzer | None:
        """The face models this gallery was given or has loaded so far (None before the first face query)."""
        return self._face_analyzer

    def faces_enabled(self) -> bool:
        """Whether this database indexes faces (`imagesim index --faces`)."""
        return faces_enabled(self.store)

    @_catalog_errors
    def status(self) -> dict[str, Any]:
        """Counts, model and when the database was last indexed: what `imagesim status` and the UI show."""
        cat = self.store.catalog
        with self.store.lock:
            counts = cat.counts()
            spaces = {s.name: s.description for s in cat.spaces()}
            return {
                "db": str(self.store.folder),
                "photos": counts["files"],
                "distinct_photos": counts["contents"],
                "failed": counts["failed"],
                "roots": cat.roots(),
                "model": self._model_name(spaces.get(CONTENT, {}).get("model")),
                "spaces": sorted(spaces),
                "last_indexed": float(cat.meta("last_indexed") or 0) or None,
                "faces_enabled": (enabled := self.faces_enabled()),
                "faces": face_count(cat) if enabled else None,  # faces found in the gallery
            }
