"""`Gallery`: a database folder opened for queries by photo, text, look, duplicates and faces.

The query modes live in their own modules (`looks`, `duplicates`, `imagesim.faces.search`); Gallery holds the
loaded models and hands each mode the store and, where it needs one, the content vector function."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from ..config import ModelSpec, Settings
from ..encoders import Encoder
from ..encoders.towers import TextTower, TowersUnusable, VisualTower, open_tower
from ..errors import WEIGHTS_REMEDY, ImagesimError, ModelMismatch, ModelMissing
from ..faces.analyze import FaceAnalyzer
from ..faces.catalog import face_count
from ..faces.search import FaceResult, analyzer_for_query, faces_enabled, search_faces
from ..images import load_image
from ..store import MODEL_META_KEY, Store
from ..store.photos import PhotoTable, Selection
from ..store.schema import damaged
from . import looks
from .compose import Term, composed_search
from .duplicates.groups import DupGroup
from .duplicates.queries import find_in_gallery, gallery_groups
from .filters import Filters, select
from .results import Match, Query, check_paging, expand, pool_size

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
        self._towers: dict[str, TextTower | VisualTower] = {}  # exported towers in use, by kind
        self._towers_off = False  # the export could not answer: the full model from then on
        self._rebuild_towers = False  # ...and writes a new one once it is loaded

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
            export = getattr(self._encoder, "export_towers", None)
            if self._rebuild_towers and callable(export):
                self._rebuild_towers = False
                export(self.store.folder, quiet=True, force=True)  # the line that said why has said it
        return self._encoder

    def _asks_for_own_model(self) -> bool:
        """No model asked for, or the very one the database records."""
        return self.settings.model is None or self.settings.model == self.model_spec()

    def _tower(self, kind: str) -> TextTower | VisualTower | None:
        """The exported `kind` tower ("text", "visual") for a query: that tower alone loads, without torch or
        open_clip (imagesim.encoders.towers). None when the full model is loaded already, another model or bf16 was
        asked for, or the export cannot answer for this index (one line why; the full model then loads and rebuilds
        it)."""
        if kind in self._towers:
            return self._towers[kind]
        # the export computes in fp32: "auto" leaves the choice to us, an explicit bf16 gets the torch model it asks for
        if (self._encoder is not None or self._towers_off or not self._asks_for_own_model()
                or self.settings.precision == "bf16"):
            return None
        with self.store.lock:
            info = self.store.catalog.space(CONTENT)
        if info is None:
            return None
        try:
            self._towers[kind] = open_tower(self.store.folder, info.fingerprint, kind,
                                            threads=self.settings.torch_threads or self.settings.threads)
        except TowersUnusable as exc:
            self._tower_failed(exc)
            return None
        return self._towers[kind]

    def _tower_failed(self, exc: TowersUnusable) -> None:
        if exc.notice:
            print(f"imagesim: {exc}: loading the full model instead, and writing a new export", file=sys.stderr)
        self._towers_off, self._rebuild_towers = True, exc.notice
        self._towers.clear()

    def _embed(self, kind: str, inputs: list[Any]) -> np.ndarray:
        """Content vectors of texts (`kind` "text") or images ("visual"): by the exported tower when it can answer,
        else by the full model (a tower that finds itself damaged answers nothing: the model answers instead)."""
        tower = self._tower(kind)
        if tower is not None:
            try:
                return tower.embed_texts(inputs) if isinstance(tower, TextTower) else tower.embed_images(inputs)
            except TowersUnusable as exc:
                self._tower_failed(exc)
        encoder = self.encoder
        if kind == "visual":
            return encoder.embed_images(inputs)
        if not hasattr(encoder, "embed_texts"):
            raise ImagesimError("this model has no text tower")
        return encoder.embed_texts(inputs)

    def _model_name(self, recorded: str | None) -> str | None:
        """The content model as a person knows it: a config file by its file name, not by its content hash."""
        spec = self.model_spec()
        if recorded and recorded.startswith("config:") and spec is not None:
            return f"{os.path.basename(spec.name)} ({recorded})"
        return recorded

    @property
    def loaded_encoder(self) -> Encoder | None:
        """The content model if it is loaded already (None: nothing loaded yet; asking `encoder` would load it)."""
        return self._encoder

    def _check_encoder(self, encoder: Encoder) -> None:
        info = self.store.catalog.space(encoder.space)
        if info is not None and info.fingerprint != encoder.fingerprint():
            was = info.description.get("model")
            raise ModelMismatch(f"{self.store.folder} was indexed with {was}; search with the same "
                                f"--model/--pretrained/--weights, or re-index with --rebuild")

    # ---- queries -------------------------------------------------------------------------------------------------

    def _need_content(self) -> None:
        """Refuse a content or text query in one line when the database has no content vectors yet (indexed
        offline, without the model's weights): before any model loads, with what to do."""
        with self.store.lock:  # a page's threads share the connection
            if self.store.catalog.space(CONTENT) is not None or not self.store.catalog.counts()["files"]:
                return  # an empty database answers "no photos indexed yet", as before
        spec = self.settings.model or self.model_spec() or ModelSpec()
        raise ModelMissing(f"content and text search need the model {spec.describe()}, and {self.store.folder} has "
                           f"no content vectors yet (it was indexed without the model's weights; style, duplicates "
                           f"and faces work): {WEIGHTS_REMEDY}")

    @_catalog_errors
    def vector(self, query: Query) -> np.ndarray:
        """The content vector of a photo: the stored one for an unchanged gallery file, else freshly encoded.

        A photo from outside is decoded before the model loads: a file that is not a photo is refused at once."""
        self._need_content()
        stored = self.store.stored_vector(query, CONTENT) if isinstance(query, (str, os.PathLike)) else None
        if stored is not None:
            if not self._asks_for_own_model():
                _ = self.encoder  # a model asked for explicitly must match the index, stored vector or not
            return stored
        if isinstance(query, Image.Image):
            img = query
        else:  # before the model loads its input size is unknown: no JPEG draft then, a full decode
            loaded = self._encoder or self._tower("visual")
            img = load_image(query, draft_size=getattr(loaded, "input_size", None))
        return self._embed("visual", [img])[0]

    @_catalog_errors
    def select(self, filters: Filters | None) -> Selection | None:
        """The photos `filters` let through (None: no filters), e.g. to say "no photo matches" before searching."""
        self.store.refresh()
        return select(self.store, filters)

    @_catalog_errors
    def search(self, query: Query, k: int = 10, mode: str = "content", style_weight: float = 0.5, *,
               filters: Filters | None = None, offset: int = 0, sort: str = "score") -> list[Match]:
        """Gallery photos like `query` (a path, bytes or a PIL image), best first.

        mode "content": what it shows (CLIP); "style": how it looks; "blend": (1 - style_weight) * content +
        style_weight * style, with both scores and an explanation on every match. `filters`: only photos that pass
        them; `offset`, `sort` ("score" or "date"): which page, in which order.
        """
        check_paging(k, offset, sort)
        within = self.select(filters)
        if mode == "content":
            return self.search_vector(self.vector(query), k, within=within, offset=offset, sort=sort)
        if mode == "blend":
            self._need_content()
        return looks.look_search(self.store, query, k, mode=mode, style_weight=style_weight,
                                 content_vector=self.vector, within=within, offset=offset, sort=sort)

    @_catalog_errors
    def compose(self, terms: Sequence[tuple[Term, float]], k: int = 10, *, filters: Filters | None = None,
                offset: int = 0, sort: str = "score") -> list[Match]:
        """Photos near the weighted sum of several terms, each a photo (`Query`) or a `Text`, e.g.
        `[("beach.jpg", 1), (Text("at sunset"), 1), (Text("people"), -1)]`; each match gives every term's own
        similarity (`terms`) and the term that pulled it in (`why`)."""
        check_paging(k, offset, sort)
        within = self.select(filters)
        return composed_search(self.store, terms, k, image_vector=self.vector, text_vector=self._text_vector,
                               within=within, offset=offset, sort=sort)

    @_catalog_errors
    def has_space(self, space: str) -> bool:
        """Whether the database holds vectors of `space` ("content", "style", "dup", ...)."""
        return self.store.has_space(space)

    @_catalog_errors
    def duplicates(self, *, filters: Filters | None = None) -> list[list[str]]:
        """Groups (absolute paths) of copies in the gallery: byte-identical files and edited copies (among the
        photos `filters` let through)."""
        return [g.paths for g in gallery_groups(self.store, "copies", self.select(filters))]

    @_catalog_errors
    def duplicate_groups(self, kind: str | None = None, *, filters: Filters | None = None) -> list[DupGroup]:
        """Copies and similar shots (or one `kind`: "copies", "similar"), each group with its suggested keeper
        first and every other member explained against it (among the photos `filters` let through)."""
        return gallery_groups(self.store, kind, self.select(filters))

    @_catalog_errors
    def find_duplicates(self, query: Query, *, filters: Filters | None = None) -> list[Match]:
        """Gallery photos that are copies or near-duplicates of `query` ("is this already in my gallery?")."""
        return find_in_gallery(self.store, query, within=self.select(filters))

    def _text_vector(self, text: str) -> np.ndarray:
        if not text.strip():
            raise ImagesimError("the text query is empty")
        self._need_content()
        return self._embed("text", [text])[0]

    @_catalog_errors
    def search_text(self, text: str, k: int = 10, *, filters: Filters | None = None, offset: int = 0,
                    sort: str = "score") -> list[Match]:
        """Gallery photos that match a description, best first."""
        check_paging(k, offset, sort)
        within = self.select(filters)
        return self.search_vector(self._text_vector(text), k, within=within, offset=offset, sort=sort)

    @_catalog_errors
    def search_vector(self, vector: np.ndarray, k: int = 10, space: str = CONTENT, *,
                      within: Selection | None = None, offset: int = 0, sort: str = "score") -> list[Match]:
        k = max(0, int(k))
        self.store.refresh()
        labels, scores = self.store.search(space, vector[None, :], pool_size(k, offset, sort),
                                           allowed=None if within is None else within.contents)
        return expand(self.store, labels[0], scores[0], k, offset=offset, within=within, sort=sort)

    @_catalog_errors
    def photo_info(self, paths: Sequence[str]) -> dict[str, Any]:
        """The stored metadata (`imagesim.metadata.PhotoInfo`) of gallery files, by path (unknown paths left out)."""
        with self.store.lock:
            rows = {p: self.store.catalog.file(os.path.realpath(p)) for p in paths}
            ids = {p: r.content_id for p, r in rows.items() if r is not None and r.content_id is not None}
            infos = PhotoTable(self.store.catalog).get(ids.values())
        return {p: infos[c] for p, c in ids.items() if c in infos}

    @_catalog_errors
    def faces(self, query: Query, k: int = 10, *, filters: Filters | None = None) -> list[FaceResult]:
        """Each face in `query` with the gallery photos of the nearest faces and a same-person verdict.

        Raises NoFaceFound when the photo shows no face, ImagesimError when faces are off for this database."""
        # The face models load once per Gallery (a UI process keeps one open), not once per query.
        if not self._face_analyzer_given:
            self._face_analyzer = analyzer_for_query(self.store, self._face_analyzer)
        return search_faces(self.store, query, k, analyzer=self._face_analyzer, within=self.select(filters))

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
