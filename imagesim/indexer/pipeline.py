"""The pipeline one indexing run hands its changed files to: reader threads read, hash and decode; the calling
thread encodes in batches and commits each batch with its files in one transaction (`scan.py` decides what to hand
it). With `--ray` the decode + encode step happens elsewhere (`RemoteEncode`) and the results come back to the same
commit code.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

from ..encoders import Encoder
from ..errors import ImageError, ImagesimError
from ..faces.stage import FaceStage
from ..images import load_image, read_bytes
from ..metadata import PhotoInfo, read_info, with_places
from ..store import CATALOG_NAME, Store
from ..store.catalog import ContentReader
from ..store.photos import PhotoTable

if TYPE_CHECKING:
    from tqdm import tqdm

    from ..faces.analyze import Face

SAVE_EVERY_S = 120.0  # write the graphs now and then, so a crash leaves little to catch up on at the next open


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0
    removed: int = 0
    moved: int = 0
    unchanged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    encoded: int = 0
    faces: int | None = None  # faces found in this run; None when faces are off
    # Of `failed`, the files that failed before and are unchanged since (not read again): listed, so a script
    # that reads "failed" sees every file that is not indexed, not only this run's new failures.
    still_failing: int = 0
    waiting_for_model: str | None = None  # the line saying why content vectors wait (no weights here)

    def to_json(self) -> dict:
        out = {"added": self.added, "updated": self.updated, "removed": self.removed, "moved": self.moved,
               "unchanged": self.unchanged, "failed": [{"path": p, "error": e} for p, e in self.failed]}
        if self.still_failing:
            out["still_failing"] = self.still_failing
        if self.faces is not None:
            out["faces"] = self.faces
        if self.waiting_for_model:
            out["waiting_for_model"] = self.waiting_for_model
        return out

    def summary(self) -> str:
        rate = f", {self.encoded / self.seconds:.1f} photos/s encoded" if self.encoded and self.seconds else ""
        faces = f", {self.faces} faces found" if self.faces is not None else ""
        still = f" ({self.still_failing} unchanged since they failed before)" if self.still_failing else ""
        return (f"{self.added} added, {self.updated} updated, {self.moved} moved, {self.removed} removed, "
                f"{self.unchanged} unchanged, {len(self.failed)} failed{still}{faces} ({self.seconds:.1f} s{rate})")


@dataclass
class Item:
    """One file on its way through the pipeline."""

    path: str
    size: int
    mtime_ns: int
    kind: str  # "added" | "updated" | "unchanged" (faces only) | "moved" (decided once its bytes are known)
    sha256: str = ""
    content_id: int | None = None  # known content with all vectors: link only
    image: Image.Image | None = None
    original_size: tuple[int, int] = (0, 0)
    error: str | None = None
    # Remote encoding (--ray): what the worker must compute, and what it sent back in place of `image`
    spaces: tuple[str, ...] = ()
    want_faces: bool = False
    vectors: dict[str, np.ndarray] | None = None
    faces: list[Face] | None = None
    info: PhotoInfo | None = None  # the header's metadata, read for a content the catalog has none for

    @property
    def to_encode(self) -> bool:
        return self.image is not None or bool(self.spaces) or self.want_faces


class RemoteEncode(Protocol):
    """Where decode + encode happen when not in this process (`--ray`): items in, encoded items back.

    Each item asks for `spaces` and `want_faces`; each result carries `vectors`, `faces` and `original_size`, or
    `error`. Results may come in any order and in batches of any size; an item may come back more than once (a
    retried worker): the pipeline keeps the first."""

    def results(self, items: list[Item]) -> Iterator[list[Item]]: ...


class Pipeline:
    """Threads read, hash and decode; the calling thread encodes batches and commits them."""

    def __init__(self, store: Store, encoders: Sequence[Encoder], report: IndexReport,
                 needs_by_space: dict[str, set[int]],
                 gone_contents: set[int | None], batch_size: int, threads: int, commit_every_s: float,
                 progress: bool | None, faces: FaceStage | None = None, needs_faces: set[int] | None = None,
                 remote: RemoteEncode | None = None, needs_info: set[int] | None = None) -> None:
        self.store = store
        self.encoders = encoders
        self.report = report
        self.needs_by_space = needs_by_space
        self.needs_vectors: set[int] = set().union(*needs_by_space.values())  # read by the reader threads
        self.gone_contents = gone_contents
        self.batch_size = max(1, batch_size)
        self.threads = max(1, threads)
        self.commit_every_s = commit_every_s
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.faces = faces
        self.needs_faces = needs_faces or set()
        # One decode serves every step: the face detector needs more pixels than CLIP, which resizes anyway.
        sizes = [e.input_size or 0 for e in encoders] + ([faces.input_size] if faces is not None else [])
        self.draft = max(sizes, default=0) or None
        self.contents = ContentReader(store.folder / CATALOG_NAME)
        self.remote = remote
        self._beside: ThreadPoolExecutor | None = None  # run()'s face-step thread
        self.needs_info = needs_info if needs_info is not None else set()  # no metadata yet: read with the file

    def run(self, todo: list[Item]) -> None:
        if not todo:
            return
        from tqdm import tqdm  # here: only a run with work draws a progress bar

        bar = tqdm(total=len(todo), unit="photo", disable=not self.progress, file=sys.stderr, dynamic_ncols=True)
        pending: list[Item] = []  # processed items waiting for the next commit
        to_encode: list[Item] = []
        to_send: list[Item] = []  # remote: photos to decode and encode elsewhere, one per content
        copies: list[Item] = []  # remote: copies of a photo being encoded elsewhere, filed once it is committed
        batch_shas: set[str] = set()  # contents encoded in this run, so copies are encoded once
        last_commit = last_save = time.monotonic()
        window = self.batch_size * 3  # bounded read-ahead: decoded photos never pile up in memory
        # The face step of a batch runs on a thread of its own while the encoders run on this one: HOG releases the
        # GIL, and each side fills the other's serial stretches (12 MP photos, ViT-B-32 on: bench speed, part d).
        with ThreadPoolExecutor(self.threads, thread_name_prefix="imagesim-read") as pool, \
                ThreadPoolExecutor(1, thread_name_prefix="imagesim-faces-step") as self._beside:
            futures: deque[Future[Item]] = deque()
            queue = iter(todo)
            for item in queue:
                futures.append(pool.submit(self._prepare, item))
                if len(futures) >= window:
                    break
            while futures:
                item = futures.popleft().result()
                nxt = next(queue, None)
                if nxt is not None:
                    futures.append(pool.submit(self._prepare, nxt))
                if item.to_encode and item.sha256 in batch_shas:
                    item.image = None  # a byte-identical copy of a photo already encoded in this run: link it
                    if item.spaces or item.want_faces:
                        item.spaces, item.want_faces = (), False
                        copies.append(item)
                        continue
                if item.to_encode:
                    batch_shas.add(item.sha256)
                    (to_send if self.remote is not None else to_encode).append(item)
                else:
                    pending.append(item)
                now = time.monotonic()
                if len(to_encode) >= self.batch_size or (pending and now - last_commit > self.commit_every_s) \
                        or not futures:
                    self._commit(to_encode, pending)
                    bar.update(len(to_encode) + len(pending))
                    to_encode, pending = [], []
                    last_commit = now
                    if now - last_save > SAVE_EVERY_S:
                        self.store.save()
                        last_save = time.monotonic()
        if self.remote is not None and to_send:
            self._run_remote(self.remote, to_send, copies, bar)
        bar.close()

    def _run_remote(self, remote: RemoteEncode, to_send: list[Item], copies: list[Item], bar: tqdm) -> None:
        """Commit what the remote workers send back, batch by batch, through the same `_commit` as local work."""
        done: dict[str, str | None] = {}  # sha -> error: a result seen twice (a retried worker) is committed once
        last_save = time.monotonic()
        for results in remote.results(to_send):
            fresh = [it for it in results if it.sha256 not in done]
            for it in fresh:
                done[it.sha256] = it.error
            self._commit([it for it in fresh if it.error is None], [it for it in fresh if it.error is not None])
            bar.update(len(fresh))
            if time.monotonic() - last_save > SAVE_EVERY_S:
                self.store.save()
                last_save = time.monotonic()
        missing = [it for it in to_send if it.sha256 not in done]
        if missing:  # cannot happen unless the remote side drops work: never file a photo without its vectors
            raise ImagesimError(f"the cluster returned no result for {len(missing)} photos (e.g. {missing[0].path}); "
                                "run the same command again to finish them")
        for it in copies:  # a copy of a photo that failed to decode fails the same way, as it does locally
            it.error = done.get(it.sha256)
        self._commit([], copies)
        bar.update(len(copies))

    # ---- worker threads --------------------------------------------------------------------------------------------

    def _prepare(self, item: Item) -> Item:
        try:
            data = read_bytes(item.path)
            item.sha256 = hashlib.sha256(data).hexdigest()
            cid = self.contents.content_id(item.sha256)
            if cid is None or cid in self.needs_info:
                item.info = read_info(data, item.mtime_ns)
            if cid is not None and cid not in self.needs_vectors and cid not in self.needs_faces:
                item.content_id = cid
                return item
            if self.remote is not None:  # decoded and encoded by a worker: say what it must compute
                item.spaces = tuple(e.space for e in self.encoders
                                    if cid is None or cid in self.needs_by_space[e.space])
                item.want_faces = self.faces is not None and (cid is None or cid in self.needs_faces)
                return item
            img = load_image(data, draft_size=self.draft, name=item.path)
            item.image = img
            item.original_size = img.info.get("original_size", img.size)
        except ImageError as exc:
            item.error = exc.reason
        return item

    # ---- the calling thread ----------------------------------------------------------------------------------------

    def _commit(self, to_encode: list[Item], pending: list[Item]) -> None:
        catalog = self.store.catalog
        # A known photo decoded only for its faces (faces turned on later) is not re-encoded, and vice versa.
        known = [catalog.content_id(it.sha256) for it in to_encode]
        enc_rows = {  # per space: batch row -> row of that encoder's output
            enc.space: {i: n for n, i in enumerate(
                i for i, c in enumerate(known) if c is None or c in self.needs_by_space[enc.space])}
            for enc in self.encoders}
        face_rows = [i for i, c in enumerate(known) if self.faces is not None and (c is None or c in self.needs_faces)]
        vectors: dict[str, np.ndarray] = {}
        found: dict[int, list] = {}
        if to_encode and to_encode[0].image is None:  # encoded remotely: the results travelled with the items
            vectors = {space: np.stack([to_encode[i].vectors[space] for i in rows])  # type: ignore[index]
                       for space, rows in enc_rows.items() if rows}
            found = {i: to_encode[i].faces or [] for i in face_rows}
        elif to_encode:
            faces: Future[list[list[Face]]] | None = None
            if face_rows and self.faces is not None:
                face_images = [to_encode[i].image for i in face_rows]
                assert self._beside is not None  # _commit with images runs inside run()
                faces = self._beside.submit(self.faces.detect, face_images)  # type: ignore[arg-type]
            for enc in self.encoders:
                if enc_rows[enc.space]:
                    images = [to_encode[i].image for i in enc_rows[enc.space]]
                    vectors[enc.space] = enc.embed_images(images)  # type: ignore[arg-type]
            if faces is not None:
                found = dict(zip(face_rows, faces.result(), strict=True))
        if to_encode:
            for it in to_encode:
                it.image = None  # free the pixels now
            self.report.encoded += len(to_encode)
        new_vectors: dict[str, tuple[list[int], list[np.ndarray]]] = {e.space: ([], []) for e in self.encoders}
        if self.faces is not None:
            new_vectors[self.faces.space] = ([], [])
        _place(to_encode + pending)
        with catalog.transaction():
            for row, it in enumerate(to_encode):
                # One writer, and no two rows of a batch share bytes (batch_shas): the id looked up above holds.
                cid = known[row]
                if cid is None:
                    cid = catalog.add_content(it.sha256, *it.original_size)
                for enc in self.encoders:
                    rows = enc_rows[enc.space]
                    if row in rows:  # a new photo, or one this space lacks
                        # one photo's row: `parts` graph vectors (labels cid * parts + i), usually one
                        parts = enc.parts
                        part_vecs = vectors[enc.space][rows[row]].reshape(parts, -1)
                        part_labels = [cid * parts + i for i in range(parts)]
                        catalog.put_vectors(enc.space, part_labels, [cid] * parts, part_vecs)
                        new_vectors[enc.space][0].extend(part_labels)
                        new_vectors[enc.space][1].extend(part_vecs)
                if row in found and self.faces is not None:
                    ids, face_vecs = self.faces.put(catalog, cid, found[row])
                    new_vectors[self.faces.space][0].extend(ids)
                    new_vectors[self.faces.space][1].extend(face_vecs)
                    self.needs_faces.discard(cid)
                self.needs_vectors.discard(cid)
                for lacking in self.needs_by_space.values():
                    lacking.discard(cid)
                self._file(it, cid)
            for it in pending:
                if it.error:
                    catalog.put_file(it.path, it.size, it.mtime_ns, None, it.error)
                    self.report.failed.append((it.path, it.error))
                else:  # a known content, or a copy of one encoded earlier in this batch or run
                    self._file(it, it.content_id if it.content_id is not None else catalog.content_id(it.sha256))
        for space, (labels, vecs) in new_vectors.items():
            if labels:
                self.store.index(space).add(np.asarray(labels), np.stack(vecs))

    def _file(self, it: Item, cid: int | None) -> None:
        self.store.catalog.put_file(it.path, it.size, it.mtime_ns, cid)
        if it.info is not None and cid is not None:
            PhotoTable(self.store.catalog).put(cid, it.info)
            self.needs_info.discard(cid)
        kind = it.kind
        if kind == "added" and cid in self.gone_contents:
            kind = "moved"
            self.gone_contents.discard(cid)
        setattr(self.report, kind, getattr(self.report, kind) + 1)


def _place(items: list[Item]) -> None:
    """Place names for the items whose header gave a GPS position (one geocoder call per batch)."""
    located = [it for it in items if it.info is not None and it.info.lat is not None]
    if located:
        for it, info in zip(located, with_places([it.info for it in located]), strict=True):  # type: ignore[misc]
            it.info = info
