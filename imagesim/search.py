"""Queries against a database: by photo, by text; results carry an absolute path and a cosine score."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from PIL import Image

from .catalog import damaged
from .config import ModelSpec, Settings
from .encoders import Encoder
from .errors import ImagesimError, ModelMismatch
from .images import load_image
from .store import Store

T = TypeVar("T")

if TYPE_CHECKING:
    from .face_search import FaceResult

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
MODEL_META_KEY = "content_model"


@dataclass(frozen=True)
class Match:
    """One gallery photo for a query. `score` is the cosine similarity (1.0 = same vector).

    Style and blend searches also fill `content_score`, `style_score` and `why` (a short explanation).
    """

    path: str
    score: float
    content_score: float | None = None
    style_score: float | None = None
    why: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


Query = str | os.PathLike[str] | bytes | Image.Image


class Gallery:
    """A database folder opened for search. The model loads on first need, so stored-photo queries need no torch."""

    def __init__(self, store: Store, settings: Settings, encoder: Encoder | None = None) -> None:
        self.store = store
        self.settings = settings
        self._encoder = encoder
        self._encoder_checked = False  # against the index's fingerprint, once
        self._face_analyzer: Any = None  # the face models, loaded on the first face query

    @classmethod
    def open(cls, db: str | os.PathLike[str], *, model: ModelSpec | None = None, encoder: Encoder | None = None,
             threads: int | None = None, precision: str | None = None) -> Gallery:
        kwargs: dict[str, Any] = {"model": model}
        if threads:
            kwargs["threads"] = threads
        if precision:
            kwargs["precision"] = precision
        settings = Settings.for_db(db, **kwargs)
        store = Store.open(settings.db, threads=settings.threads, exact_max=settings.exact_search_max)
        return cls(store, settings, encoder)

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
            from .encoders import create_encoder

            spec = self.settings.model or self.model_spec() or ModelSpec()
            self._encoder = create_encoder("clip", spec=spec, threads=self.settings.threads,
                                           precision=self.settings.precision)
        if not self._encoder_checked:
            self._check_encoder(self._encoder)
            self._encoder_checked = True
        return self._encoder

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
            stored = self._stored_vector(Path(query))
            if stored is not None:
                return stored
        img = query if isinstance(query, Image.Image) else load_image(query, draft_size=self.encoder.input_size)
        return self.encoder.embed_images([img])[0]

    def _stored_vector(self, path: Path, space: str = CONTENT) -> np.ndarray | None:
        try:
            real = os.path.realpath(path)
            st = os.stat(real)
        except OSError:
            return None
        with self.store.lock:
            row = self.store.catalog.file(real)
            if row is None or row.status != "ok" or row.size != st.st_size or row.mtime_ns != st.st_mtime_ns:
                return None
            assert row.content_id is not None
            return self.store.catalog.vector_for_content(space, row.content_id)

    @_catalog_errors
    def search(self, query: Query, k: int = 10, mode: str = "content", style_weight: float = 0.5) -> list[Match]:
        """Gallery photos like `query` (a path, bytes or a PIL image), best first.

        mode "content": what it shows (CLIP); "style": how it looks; "blend": (1 - style_weight) * content +
        style_weight * style, with both scores and an explanation on every match.
        """
        if mode == "content":
            return self.search_vector(self.vector(query), k)
        from .looks import look_search

        return look_search(self, query, k, mode=mode, style_weight=style_weight)

    @_catalog_errors
    def has_space(self, space: str) -> bool:
        """Whether the database holds vectors of `space` ("content", "style", "dup", ...)."""
        with self.store.lock:
            return self.store.catalog.space(space) is not None

    @_catalog_errors
    def duplicates(self) -> list[list[str]]:
        """Groups (absolute paths) of byte-identical copies and near-duplicates in the gallery."""
        from .duplicates import gallery_groups

        return gallery_groups(self)

    @_catalog_errors
    def find_duplicates(self, query: Query) -> list[Match]:
        """Gallery photos that are copies or near-duplicates of `query` ("is this already in my gallery?")."""
        from .duplicates import find_in_gallery

        return find_in_gallery(self, query)

    @_catalog_errors
    def search_text(self, text: str, k: int = 10) -> list[Match]:
        """Gallery photos that match a description, best first."""
        if not text.strip():
            raise ImagesimError("the text query is empty")
        encoder = self.encoder
        if not hasattr(encoder, "embed_texts"):
            raise ImagesimError("this model has no text tower")
        return self.search_vector(encoder.embed_texts([text])[0], k)  # type: ignore[attr-defined]

    @_catalog_errors
    def search_vector(self, vector: np.ndarray, k: int = 10, space: str = CONTENT) -> list[Match]:
        k = max(0, int(k))
        self.store.refresh()
        labels, scores = self.store.search(space, vector[None, :], k)
        return self._expand(labels[0], scores[0], k)

    def _expand(self, labels: np.ndarray, scores: np.ndarray, k: int) -> list[Match]:
        """Content labels -> files: byte-identical copies each get a row with the same score."""
        with self.store.lock:
            paths = self.store.catalog.paths_for(labels.tolist())
        out: list[Match] = []
        for label, score in zip(labels.tolist(), scores.tolist(), strict=False):
            for path in paths.get(label, []):
                out.append(Match(path, round(float(min(1.0, max(-1.0, score))), 6)))
        return out[:k]

    @_catalog_errors
    def faces(self, query: Query, k: int = 10) -> list[FaceResult]:
        """Each face in `query` with the gallery photos of the nearest faces and a same-person verdict.

        Raises NoFaceFound when the photo shows no face, ImagesimError when faces are off for this database."""
        from .face_search import analyzer_for_query, search_faces

        # The face models load once per Gallery (a UI process keeps one open), not once per query.
        self._face_analyzer = analyzer_for_query(self.store, self._face_analyzer)
        return search_faces(self.store, query, k, analyzer=self._face_analyzer)

    def faces_enabled(self) -> bool:
        """Whether this database indexes faces (`imagesim index --faces`)."""
        from .face_search import faces_enabled

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
                "model": spaces.get(CONTENT, {}).get("model"),
                "spaces": sorted(spaces),
                "last_indexed": float(cat.meta("last_indexed") or 0) or None,
                "faces_enabled": (enabled := self.faces_enabled()),
                "faces": _face_count(cat) if enabled else None,  # faces found in the gallery
            }


def _face_count(catalog: Any) -> int:
    from .facestore import faces_version

    try:
        return faces_version(catalog)[0]
    except sqlite3.OperationalError:  # no faces table yet
        return 0
