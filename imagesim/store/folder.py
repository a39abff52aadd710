"""A database folder: the SQLite catalog plus one saved hnswlib graph per embedding space.

Layout: `catalog.sqlite` (truth: files, contents, vectors), `<space>.<generation>.hnsw` (graph caches, replaced
atomically), `index.lock` (one writer at a time). A graph that lags the catalog after an interrupted run is brought
up to date from the stored vectors on open; one that does not match what the catalog recorded is refused.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..config import EXACT_SEARCH_MAX, default_threads
from ..errors import ModelMismatch, NoIndex, StoreError
from .catalog import CATALOG_NAME, GRAPH_SYNC_KEY, Catalog
from .graphfile import IndexFileState, check_file, file_stamp
from .schema import damaged
from .vectors import VectorIndex

LOCK_NAME = "index.lock"
# Rebuild a graph on save when this share of its slots are deleted items (keeps memory and recall in check).
COMPACT_DELETED_SHARE = 0.2


class Store:
    """Catalog + graphs of one database folder. Graphs load lazily, on first use of their space."""

    def __init__(self, folder: Path, catalog: Catalog, *, threads: int, exact_max: int) -> None:
        self.folder = folder
        self.catalog = catalog
        self.threads = threads
        self.exact_max = exact_max
        self._indexes: dict[str, VectorIndex] = {}
        self._version = catalog.data_version()
        self._writing = False  # this process holds the writer lock: no other process writes vectors meanwhile
        self.lock = threading.RLock()  # one thread at a time uses the connection and graphs

    @classmethod
    def open(cls, folder: str | os.PathLike[str], *, create: bool = False, threads: int | None = None,
             exact_max: int | None = None) -> Store:
        """Open a database folder; `threads` and `exact_max` default to `imagesim.config`'s (declared there only)."""
        threads = default_threads() if threads is None else threads
        exact_max = EXACT_SEARCH_MAX if exact_max is None else exact_max
        folder = Path(folder).expanduser().resolve()
        if folder.exists() and not folder.is_dir():
            raise StoreError(f"{folder} is a file, not a database folder: pass --db a folder (new or existing)")
        if not (folder / CATALOG_NAME).is_file():
            if not create:
                raise NoIndex(f"no imagesim database at {folder}: run `imagesim index PHOTO_DIR --db {folder}` first")
            folder.mkdir(parents=True, exist_ok=True)
        return cls(folder, Catalog(folder / CATALOG_NAME, create=create), threads=threads, exact_max=exact_max)

    def close(self) -> None:
        self.catalog.close()

    @contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the folder's writer lock: a second indexer fails at once with a clear message."""
        fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(f"another imagesim process is writing to {self.folder}; wait for it to finish"
                                 ) from None
            self._writing = True
            yield
        finally:
            self._writing = False
            os.close(fd)

    # ---- spaces --------------------------------------------------------------------------------------------------

    def ensure_space(self, name: str, fingerprint: str, description: dict, dim: int, *, rebuild: bool = False,
                     hint: str = "--rebuild") -> None:
        """Make sure `name` holds vectors of this encoder; on a different one, drop them (rebuild) or refuse."""
        info = self.catalog.space(name)
        if info is not None and info.fingerprint == fingerprint:
            return
        if info is not None and not rebuild:
            was = info.description.get("model") or info.description.get("encoder")
            now = description.get("model") or description.get("encoder")
            raise ModelMismatch(f"{self.folder} holds {name} vectors made by {was}, not by {now} (or with other "
                                f"weights/preprocessing): pass {hint} to re-embed every photo with the new model")
        with self.catalog.transaction():
            self.catalog.drop_space(name)
            self.catalog.put_space(name, fingerprint, description, dim)
        self._drop_files(name, keep=None)
        self._indexes.pop(name, None)

    def drop_space(self, name: str) -> None:
        """Forget a space's graph in memory and on disk (after the caller deleted its catalog rows)."""
        with self.lock:
            self._indexes.pop(name, None)
            self._drop_files(name, keep=None)

    def index(self, space: str) -> VectorIndex:
        """The space's graph, loaded and checked on first use and brought up to date with the catalog."""
        with self.lock:
            vi = self._indexes.get(space)
            if vi is None:
                vi = self._load(space)
                self._indexes[space] = vi
            return vi

    def _load(self, space: str) -> VectorIndex:
        info = self.catalog.space(space)
        if info is None:
            return VectorIndex(1, threads=self.threads, exact_max=self.exact_max)  # nothing indexed in it yet
        state = self.catalog.index_file(space)
        if state is None:  # first save never happened (interrupted first run): build from the stored vectors
            return self._build(space, info.dim)
        remedy = f"; run `imagesim repair --db {self.folder}` to rebuild it from the stored vectors (no re-encoding)"
        if state.fingerprint != info.fingerprint:
            raise StoreError(f"index file {state.filename} was made by another model than the catalog's{remedy}")
        try:
            vi = VectorIndex.load(self.folder, state, info.dim, threads=self.threads, exact_max=self.exact_max,
                                  checked=self.catalog.graph_checked(space))
        except StoreError as exc:
            raise StoreError(f"{exc}{remedy}") from None
        record = self.catalog.graph_sync(space)
        deletes = self.catalog.vectors_deletes()
        if record is not None and record[0] == state.generation and record[2] == deletes:
            vi.synced = (record[1], deletes)  # no vector deleted since the save: only later rows can be missing
            self._catch_up(space, vi)
        else:
            self._sync(space, vi)
        return vi

    def _build(self, space: str, dim: int) -> VectorIndex:
        synced = self._catalog_state()  # read first: whatever is written while reading lies above it
        labels, vectors = self.catalog.vectors(space, dim=dim)
        vi = VectorIndex(dim, threads=self.threads, exact_max=self.exact_max, capacity=len(labels) + 1024)
        vi.add(labels, vectors)
        vi.dirty = True
        vi.synced = synced
        return vi

    def _catalog_state(self) -> tuple[int, int]:
        return self.catalog.vectors_top(), self.catalog.vectors_deletes()

    def _catch_up(self, space: str, vi: VectorIndex) -> None:
        """Add the vectors written since the graph's catalog state (rows above its rowid): bounded by the writes
        since, whatever the space's size. Only valid while no vector was deleted since (`_sync` otherwise)."""
        assert vi.synced is not None
        top, deletes = vi.synced
        labels, vectors, seen = self.catalog.vectors_since(space, top, vi.dim)
        if len(labels):
            vi.add(labels, vectors)
        vi.synced = (seen, deletes)

    def _sync(self, space: str, vi: VectorIndex) -> None:
        """Apply catalog changes the graph has not seen: add missing vectors, delete vanished ones (reads every label
        of the space: after vectors were deleted, or for a graph saved without a sync record)."""
        synced = self._catalog_state()
        truth = self.catalog.labels(space)
        live = vi.live.to_array()
        extra = np.setdiff1d(live, truth, assume_unique=True).tolist()
        for lb in extra:
            try:
                vi.index.mark_deleted(lb)
            except RuntimeError:
                pass  # already marked deleted in the saved file
            vi.live.discard(lb)
        missing = np.setdiff1d(truth, live, assume_unique=True).tolist()
        if missing:
            labels, vectors = self.catalog.vectors(space, missing, dim=vi.dim)
            vi.add(labels, vectors)
        vi._matrix = None
        vi.dirty = vi.dirty or bool(missing or extra)
        vi.synced = synced

    def refresh(self) -> bool:
        """Pick up what another process committed since the last look (cheap when nothing changed)."""
        with self.lock:
            version = self.catalog.data_version()
            if version == self._version:
                return False
            self._version = version
            for space, vi in list(self._indexes.items()):
                info = self.catalog.space(space)
                if info is None or info.dim != vi.dim:
                    self._indexes.pop(space)
                elif vi.synced is not None and vi.synced[1] == self.catalog.vectors_deletes():
                    self._catch_up(space, vi)
                else:
                    self._sync(space, vi)
            return True

    # ---- saving --------------------------------------------------------------------------------------------------

    def save(self, *, compact: bool = False) -> None:
        """Write changed graphs atomically and record them in the catalog; old files go only after that commit.

        With each graph goes the catalog state it reflects (its sync record), so the next load reads only the vectors
        written after it. The writer (which holds the lock: nobody else writes vectors) has every vector committed so
        far in its graphs; any other process records what its graphs last synced to."""
        with self.lock:
            now = self._catalog_state()  # before refresh: what refresh then syncs is at least this
            self.refresh()
            for space, vi in list(self._indexes.items()):
                info = self.catalog.space(space)
                state = self.catalog.index_file(space)
                if info is None:
                    continue
                if not (vi.dirty or state is None):
                    if self._writing and state is not None and self.catalog.graph_sync(space) != (state.generation,
                                                                                                *now):
                        with self.catalog.transaction():  # the file is what memory holds: record that it is current
                            self.catalog.put_graph_sync(space, state.generation, *now)
                    continue
                if compact or vi.deleted > COMPACT_DELETED_SHARE * max(len(vi), 1000):
                    vi = self._build(space, info.dim)
                    self._indexes[space] = vi
                generation = (state.generation if state else 0) + 1
                synced = now if self._writing else vi.synced
                new_state = vi.save(self.folder, space, generation, info.fingerprint)
                stamp = file_stamp(self.folder / new_state.filename)
                with self.catalog.transaction():
                    self.catalog.put_index_file(new_state)
                    if stamp is not None:  # written and checksummed by us: later loads need not read it all again
                        self.catalog.put_graph_checked(space, stamp)
                    if synced is not None:
                        self.catalog.put_graph_sync(space, generation, *synced)
                    else:
                        self.catalog.delete_meta(GRAPH_SYNC_KEY + space)
                self._drop_files(space, keep=new_state.filename)
            self.catalog.checkpoint()  # the WAL must not keep deleted bytes either

    def rebuild(self) -> list[str]:
        """Rebuild every graph from the stored vectors (the `repair` path); return the spaces rebuilt."""
        with self.lock:
            self._indexes.clear()
            done = []
            for info in self.catalog.spaces():
                self._indexes[info.name] = self._build(info.name, info.dim)
                done.append(info.name)
            self.save()
            return done

    def verify_graphs(self) -> list[str]:
        """Check every saved graph file against its catalog record (size, CRC32, header, neighbour lists), as a load
        does; the spaces checked. Raise StoreError naming `imagesim repair` for the first that does not match."""
        with self.lock:  # the records under the lock, the files outside it (queries go on meanwhile)
            states = [(info, self.catalog.index_file(info.name)) for info in self.catalog.spaces()]
        done = []
        for info, state in states:
            if state is None:
                continue
            path = self.folder / state.filename
            stamp = file_stamp(path)
            problem = check_file(path, state, info.dim)
            if problem is not None and self._same_state(state):  # not just replaced by an indexer meanwhile
                raise StoreError(f"{problem}; run `imagesim repair --db {self.folder}` to rebuild it from the "
                                 "stored vectors (no re-encoding)")
            if problem is None and stamp is not None and stamp == file_stamp(path):
                self._record_checked(info.name, state, stamp)
            done.append(info.name)
        return done

    def _record_checked(self, space: str, state: IndexFileState, stamp: str) -> None:
        """Remember that the file with this stamp passed the full check (best effort, never waiting: a read-only
        catalog or a busy writer leaves the old record, and loads then check in full)."""
        with self.lock:
            try:
                if self._same_state(state) and self.catalog.graph_checked(space) != stamp:
                    self.catalog.record_graph_checked(space, stamp)
            except (sqlite3.Error, StoreError):
                pass

    def _same_state(self, state: IndexFileState) -> bool:
        with self.lock:
            return self.catalog.index_file(state.space) == state

    def verify_in_background(self, report: Callable[[str], None]) -> threading.Thread:
        """Run the full verification (catalog and graph files) in a daemon thread on a connection of its own, so
        queries go on meanwhile (each checks the rows it reads); `report` gets one line if damage is found."""
        def run() -> None:
            try:
                catalog = Catalog(self.folder / CATALOG_NAME, create=False, check=False)
                try:
                    problems = catalog.verify(full=True)
                finally:
                    catalog.close()
                if problems:
                    raise damaged(self.folder / CATALOG_NAME, sqlite3.DatabaseError(problems[0]))
                self.verify_graphs()
            except (StoreError, sqlite3.DatabaseError) as exc:
                report(str(exc) if isinstance(exc, StoreError) else str(damaged(self.folder / CATALOG_NAME, exc)))

        thread = threading.Thread(target=run, name="imagesim-verify", daemon=True)
        thread.start()
        return thread

    def _drop_files(self, space: str, keep: str | None) -> None:
        for path in self.folder.glob(f"{space}.*.hnsw"):
            if path.name != keep:
                path.unlink(missing_ok=True)
        for path in self.folder.glob(f".{space}.*.hnsw.tmp"):
            path.unlink(missing_ok=True)

    # ---- queries -------------------------------------------------------------------------------------------------

    def has_space(self, space: str) -> bool:
        """Whether the database holds vectors of `space` ("content", "style", "dup", ...)."""
        with self.lock:
            return self.catalog.space(space) is not None

    def indexed_content(self, path: str | os.PathLike[str]) -> int | None:
        """The content id of a gallery file that is indexed and unchanged since (same size and mtime); else None."""
        try:
            real = os.path.realpath(path)
            st = os.stat(real)
        except OSError:
            return None
        with self.lock:
            row = self.catalog.file(real)
        if row is None or row.status != "ok" or row.size != st.st_size or row.mtime_ns != st.st_mtime_ns:
            return None
        return row.content_id

    def stored_vector(self, path: str | os.PathLike[str], space: str) -> np.ndarray | None:
        """The stored vector in `space` of a gallery file indexed and unchanged since, or of any file whose bytes the
        catalog holds (a copy elsewhere; a gallery file whose lookup by path misses); else None.

        The second look-up hashes the file (a few ms) and finds its content by SHA-256 through another b-tree than the
        path's: a damaged path index cannot turn a gallery photo into a re-encoded one with other scores."""
        with self.lock:
            content_id = self.indexed_content(path)
        if content_id is None:
            sha = _sha256(path)
            with self.lock:
                content_id = None if sha is None else self.catalog.content_id(sha)
        with self.lock:
            return None if content_id is None else self.catalog.vector_for_content(space, content_id)

    def search(self, space: str, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
               threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(labels, cosine scores) per query, best first; empty rows when the space holds nothing. `allowed`: the
        only labels that may be returned (a filter's), exactly. `threads`: for a batch of queries (see
        VectorIndex.search)."""
        with self.lock:
            if self.catalog.space(space) is None:
                n = len(np.atleast_2d(queries))
                return np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0), dtype=np.float32)
            return self.index(space).search(queries, k, allowed=allowed, threads=threads)


def _sha256(path: str | os.PathLike[str]) -> str | None:
    """The file's SHA-256 as the indexer computes it (None when it cannot be read: the caller decodes and refuses)."""
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None
