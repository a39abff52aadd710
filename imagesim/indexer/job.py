"""`run_index`, the `imagesim index` job: open the database, pick the models, index (here or on Ray), record it."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING

from ..config import ModelSpec, Settings
from ..encoders import WEIGHT_FREE, Encoder
from ..errors import WeightsUnavailable
from ..faces.analyze import FaceAnalyzer
from ..faces.catalog import faces_version
from ..faces.people import People
from ..faces.stage import configure_faces
from ..store import MODEL_META_KEY, Store
from ..store.schema import damaged
from .pipeline import IndexReport, RemoteEncode
from .scan import check_roots, index_gallery

if TYPE_CHECKING:
    from .cluster import RayOptions


def run_index(settings: Settings, roots: Sequence[str | os.PathLike[str]], *, rebuild: bool = False,
              progress: bool | None = None, encoders: Sequence[Encoder] | None = None,
              faces: bool | None = None, face_detector: str | None = None,
              content_encoder: Encoder | None = None, face_analyzer: FaceAnalyzer | None = None,
              ray: RayOptions | None = None) -> IndexReport:
    """The `imagesim index` job: open (or create) the database, pick the model, index, record what was done.

    `faces` True turns face indexing on for this database (remembered), False turns it off and deletes all face
    data, None keeps what the database says. `content_encoder` and `face_analyzer` reuse already loaded models (the
    web page's). `ray`: decode and encode on a Ray cluster (`imagesim index --ray`); given `encoders` or
    `content_encoder` are then pickled to every worker, else each worker builds the database's model itself."""
    check_roots(roots)  # fail on a typo before loading a model
    store = Store.open(settings.db, create=True, threads=settings.threads, exact_max=settings.exact_search_max)
    try:
        recorded = store.catalog.meta(MODEL_META_KEY)
        spec = settings.model or (ModelSpec(**json.loads(recorded)) if recorded else ModelSpec())
        shipped = encoders is not None or content_encoder is not None
        waiting: str | None = None  # why the content model is missing, when it is
        if encoders is None:
            from ..encoders import create_encoder

            encoders = [create_encoder(kind) for kind in WEIGHT_FREE]  # style and near-duplicate spaces
            try:
                encoders.insert(0, content_encoder or _deferred_content(store, recorded, spec, settings, rebuild) or
                                create_encoder("clip", spec=spec, precision=settings.precision,
                                               torch_threads=settings.torch_threads))
            except WeightsUnavailable as exc:
                if rebuild:  # re-embedding everything needs the model itself
                    raise
                # Offline without weights: index what needs none (style, near-duplicates, faces); the next run
                # that has the model adds only the content vectors (every other space is already complete).
                waiting = exc.waiting
                shipped = True  # Ray workers get the weight-free encoders as they are, never a model to load
        # The model is recorded only while no content vectors say otherwise: a run without the weights never
        # relabels a database whose content space another model built.
        record = waiting is None or store.catalog.space("content") is None
        if rebuild or store.catalog.space("content") is None:
            # a first (or rebuilding) run records its model now, so one stopped half-way (Ctrl-C, a full disk)
            # resumes with a plain `imagesim index`; otherwise the space's fingerprint check comes first
            with store.catalog.transaction():
                store.catalog.set_meta(MODEL_META_KEY, json.dumps(asdict(spec)))
        stage = configure_faces(store, faces, face_detector, face_analyzer)
        faces_before = faces_version(store.catalog) if stage is not None else None
        remote: RemoteEncode | None = None
        if ray is not None:
            from .cluster import RayEncode
            from .worker import ModelRecipe

            # Workers size torch's threads from the CPUs Ray gives each actor, never from this machine's flag.
            recipe = ModelRecipe(fingerprints=tuple((e.space, e.fingerprint()) for e in encoders), spec=spec,
                                 precision=settings.precision, encoders=tuple(encoders) if shipped else (),
                                 analyzer=stage.analyzer if stage is not None else None)
            remote = RayEncode(ray, recipe, settings.batch_size)
        report = index_gallery(store, roots, encoders, rebuild=rebuild, batch_size=settings.batch_size,
                               threads=settings.threads, commit_every_s=settings.commit_every_s, progress=progress,
                               faces=stage, remote=remote)
        report.waiting_for_model = waiting
        if stage is not None and faces_version(store.catalog) != faces_before:  # re-cluster only after a change
            People(store).update()
        with store.catalog.transaction():
            if record:
                store.catalog.set_meta(MODEL_META_KEY, json.dumps(asdict(spec)))
            source = _checkpoint(encoders)
            if record and source is not None:
                store.catalog.set_meta(CHECKPOINT_META_KEY, source)
            store.catalog.set_meta("last_indexed", str(time.time()))
        # Check what this run wrote (bounded by its work) and move the verified mark over it, so later opens check
        # only what comes after; a full verification too once the catalog grew by a tenth since the last one.
        problems = store.catalog.verify(full=store.catalog.wants_full_verify())
        if problems:
            raise damaged(store.catalog.path, sqlite3.DatabaseError(problems[0]))
        return report
    finally:
        store.close()


# The weights file the content model was last built from: while it is there, a run asking for the recorded model
# need not build it until a photo needs a vector (`_deferred_content`).
CHECKPOINT_META_KEY = "model_checkpoint"


def _deferred_content(store: Store, recorded: str | None, spec: ModelSpec, settings: Settings,
                      rebuild: bool) -> Encoder | None:
    """The recorded content model, built only when a photo needs it (an unchanged tree then never imports torch):
    when `spec` is the model the database records, its content space exists, and the weights file it was built
    from is still there (otherwise the model is built now, so missing weights are known before the scan).
    `recorded`: the ModelSpec JSON the database records."""
    info = store.catalog.space("content")
    if rebuild or recorded is None or info is None or ModelSpec(**json.loads(recorded)) != spec:
        return None
    if spec.weights or spec.pretrained:
        source = store.catalog.meta(CHECKPOINT_META_KEY)
        if not source or not os.path.isfile(source):
            return None
    from ..encoders import create_encoder
    from ..encoders.deferred import Deferred

    def build() -> Encoder:
        return create_encoder("clip", spec=spec, precision=settings.precision, torch_threads=settings.torch_threads)

    return Deferred("content", info.dim, info.fingerprint, info.description, build)


def _checkpoint(encoders: Sequence[Encoder]) -> str | None:
    """The weights file the (built) content model read, if any."""
    for enc in encoders:
        if enc.space == "content" and getattr(enc, "built", True):
            source = getattr(enc, "checkpoint", None)
            return source if isinstance(source, str) else None
    return None
