"""Incremental indexing: scan -> diff against the catalog -> hand what changed to the pipeline -> drop what went.

Unchanged files (same size and mtime) are not read. A file whose bytes the catalog already knows (a rename, a move,
a copy) is linked to the stored vectors without being decoded (`pipeline.py` reads, hashes, decodes, encodes and
commits). Work committed before a crash or Ctrl-C is kept; the next run picks up the rest.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..config import BATCH_SIZE, COMMIT_EVERY_S, default_threads
from ..encoders import WEIGHT_FREE, Encoder
from ..errors import ImagesimError
from ..faces.stage import FaceStage
from ..images import find_images
from ..metadata import PhotoInfo, read_info, with_places
from ..store import Store
from ..store.photos import PhotoTable
from .pipeline import IndexReport, Item, Pipeline, RemoteEncode


def index_gallery(store: Store, roots: Sequence[str | os.PathLike[str]], encoders: Sequence[Encoder], *,
                  rebuild: bool = False, batch_size: int = BATCH_SIZE, threads: int | None = None,
                  commit_every_s: float = COMMIT_EVERY_S, progress: bool | None = None,
                  faces: FaceStage | None = None, remote: RemoteEncode | None = None) -> IndexReport:
    """Bring the catalog and graphs up to date with the photos below `roots` (and their faces, given `faces`).

    `remote`: decode and encode elsewhere (`--ray`); this process still scans, hashes and commits."""
    start = time.perf_counter()
    root_paths = check_roots(roots)
    report = IndexReport()
    with store.writer():
        for enc in encoders:
            store.ensure_space(enc.space, enc.fingerprint(), enc.describe(), enc.dim // enc.parts,
                               rebuild=rebuild or enc.space in WEIGHT_FREE)  # cheap: a new version re-embeds
        catalog = store.catalog
        with catalog.transaction():
            catalog.add_roots(root_paths)
        known = catalog.files_under(root_paths)
        # Per space, the known photos still without a vector there (a new space, a model change): each encoder
        # runs only on the photos it is missing, so adding a cheap space never re-runs CLIP over the gallery.
        needs_by_space = {enc.space: set(catalog.contents_missing(enc.space)) for enc in encoders}
        needs_vectors: set[int] = set().union(*needs_by_space.values())
        needs_faces = faces.begin(store) if faces is not None else set()  # photos indexed before faces were on
        needs_info = PhotoTable(catalog).missing()  # photos indexed before metadata was kept: headers only
        info_missing = set(needs_info)  # the pipeline's copy: the loop below takes out what it will read

        todo: list[Item] = []
        seen: set[str] = set()
        for path in find_images(root_paths, exclude=[store.folder]):
            p = str(path)
            seen.add(p)
            try:
                st = path.stat()
            except OSError as exc:
                report.failed.append((p, f"cannot read file ({exc.strerror})"))
                continue
            row = known.get(p)
            same = row is not None and row.size == st.st_size and row.mtime_ns == st.st_mtime_ns
            cid = row.content_id if row is not None else None
            if same and row is not None and row.status == "failed":  # not read again; still listed as failed
                report.failed.append((p, row.error or "could not be read"))
                report.still_failing += 1
                continue
            if same and row is not None and cid not in needs_vectors and cid not in needs_faces:
                report.unchanged += 1
                continue
            needs_info.discard(cid)  # read below with the rest of the file
            # An unchanged file read again only to find its faces (faces just turned on) still counts as unchanged.
            kind = "unchanged" if same and cid not in needs_vectors else ("updated" if row is not None else "added")
            todo.append(Item(p, st.st_size, st.st_mtime_ns, kind))
        gone = [p for p in known if p not in seen]
        gone_contents = {known[p].content_id for p in gone if known[p].status == "ok"}

        if todo or gone:
            # Graphs load (or build) before this run commits anything new, and only then: an unchanged tree is the
            # scan alone (no graph read, no model built: a deferred content model stays unbuilt).
            for space in [enc.space for enc in encoders] + ([faces.space] if faces is not None else []):
                store.index(space)
            Pipeline(store, encoders, report, needs_by_space, gone_contents, batch_size,
                      default_threads() if threads is None else threads, commit_every_s,
                      progress, faces, needs_faces, remote, info_missing).run(todo)

        removed_ok = [p for p in gone if known[p].status == "ok"]
        with catalog.transaction():
            catalog.delete_files(gone)
            removed_labels = catalog.delete_contents(catalog.orphan_contents())
        for space, labels in removed_labels.items():
            store.index(space).remove(labels)
        fill_info(store, needs_info, default_threads() if threads is None else threads)
        report.removed = max(0, len(removed_ok) - report.moved)
        report.failed.sort()  # by path: the same list whichever order the photos were decoded in (--ray)
        if faces is not None:
            report.faces = faces.found
        store.save()
        _export_towers(store, encoders)
    report.seconds = time.perf_counter() - start
    return report


def _export_towers(store: Store, encoders: Sequence[Encoder]) -> None:
    """The content model, loaded for this run anyway, keeps its towers beside the database (when they are not there
    already), so a one-shot query loads only the one it needs (imagesim.encoders.towers)."""
    for enc in encoders:
        export = getattr(enc, "export_towers", None)
        if callable(export) and store.catalog.space(enc.space) is not None:
            export(store.folder)


def check_roots(roots: Iterable[str | os.PathLike[str]]) -> list[str]:
    out = []
    for root in roots:
        path = Path(root).expanduser()
        if not path.exists():
            raise ImagesimError(f"no such file or folder: {root}")
        out.append(os.path.realpath(path))
    if not out:
        raise ImagesimError("give at least one folder of photos to index")
    return out


def fill_info(store: Store, content_ids: set[int], threads: int, batch: int = 1000) -> int:
    """Read the metadata of contents indexed before it was kept, from one of their files' headers only (no
    decoding, no hashing, no encoder): how an existing database gets dates and places. Returns the rows added."""
    if not content_ids:
        return 0
    table = PhotoTable(store.catalog)
    where = sorted(table.files_of(content_ids).items())

    def read(entry: tuple[int, tuple[str, int]]) -> tuple[int, PhotoInfo | None]:
        cid, (path, mtime_ns) = entry
        try:
            with open(path, "rb") as fh:
                if os.fstat(fh.fileno()).st_mtime_ns != mtime_ns:  # changed since: not these bytes any more
                    return cid, None
                return cid, read_info(fh, mtime_ns)
        except OSError:  # gone or unreadable since: the next run that sees the file reads it
            return cid, None

    added = 0
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="imagesim-info") as pool:
        for start in range(0, len(where), batch):
            got = [(cid, info) for cid, info in pool.map(read, where[start:start + batch]) if info is not None]
            infos = with_places([info for _, info in got])
            with store.catalog.transaction():
                for (cid, _), info in zip(got, infos, strict=True):
                    table.put(cid, info)
            added += len(got)
    return added
