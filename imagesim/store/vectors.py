"""One embedding space in memory: an hnswlib graph (cosine), exact search for small collections, atomic files.

The catalog (SQLite) holds every vector; the graph file is a cache of them that can always be rebuilt without
re-encoding. A saved file carries a CRC32 and size recorded in the catalog, checked before hnswlib reads a byte
(hnswlib trusts its input and can crash on a damaged file).
"""

from __future__ import annotations

import os
from pathlib import Path

import hnswlib
import numpy as np

from ..config import EXACT_SEARCH_MAX
from ..errors import StoreError
from .graphfile import IndexFileState, SavedVectors, check_file, deleted_labels, file_crc32, file_stamp, fsync_dir
from .labels import LabelSet, contains_sorted, labels_sum, sorted_unique

# From the recall/latency sweep (`python -m bench speed`, docs/speed.md): ef_construction 200 buys no recall over 100
# on clustered 512-d vectors and halves the build rate; M=16 is the knee (M=24/32 cost 2-3x the build time for
# +0.002 recall); ef=128 keeps recall@10 >= 0.99 at 100k for ~0.35 ms, leaving margin for 1M.
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 100
HNSW_EF_SEARCH = 128
# A filtered query searches the allowed vectors exactly up to this many of them, and walks the graph with hnswlib's
# filter above: the walk visits about ef / (allowed share) nodes, so narrow filters are cheaper exactly. Measured on
# 100k clustered 512-d vectors (`python -m bench filters`, docs/benchmarks.md): the crossover lies near 5k allowed
# vectors, and the filtered walk keeps recall@10 >= 0.995 from 5 % of the gallery up at ef 64 (1.0 at 128, 2-4x
# slower).
FILTER_EXACT_MAX = 5_000
HNSW_EF_FILTERED = 64


class VectorIndex:
    """Cosine k-NN over unit vectors with integer labels; exact below `exact_max` live items, HNSW above (one numpy
    matmul beats the graph there: the crossover lies between 5k and 10k, bench speed)."""

    def __init__(self, dim: int, *, threads: int = 1, exact_max: int = EXACT_SEARCH_MAX, capacity: int = 1024,
                 filter_exact_max: int = FILTER_EXACT_MAX) -> None:
        self.dim = dim
        self.threads = threads
        self.exact_max = exact_max
        self.filter_exact_max = filter_exact_max
        self.index = hnswlib.Index(space="cosine", dim=dim)
        # No slot replacement: hnswlib's replace-deleted path drops labels when a batch re-adds labels it deleted.
        # Deleted slots are reclaimed by rebuilding instead (Store.save compacts past a share of deleted slots).
        self.index.init_index(max_elements=max(capacity, 16), M=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION)
        self.index.set_num_threads(threads)
        self.live = LabelSet()
        self.present = LabelSet()  # every label with a slot, live or marked deleted
        self._matrix: tuple[np.ndarray, np.ndarray] | None = None  # (labels, vectors) for exact search
        self.dirty = False
        # The saved graph file read in place (memory-mapped) for the vectors of an exact filtered search: hnswlib's
        # get_items costs ~0.2 ms per vector, the mapped file microseconds; labels added since come from get_items.
        self._file: Path | None = None
        self._saved: SavedVectors | None = None
        self._changed = LabelSet()
        # (vectors rowid, vector deletions count) of the catalog state this graph reflects; set by the Store, which
        # catches up from there (rows above the rowid) instead of reading every label of the space.
        self.synced: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.live)

    @property
    def deleted(self) -> int:
        return len(self.present) - len(self.live)

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Add or replace vectors; a label seen before (live or deleted) is updated in its own slot."""
        labels = np.asarray(labels, dtype=np.int64)
        if not len(labels):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(labels), self.dim)
        fresh = 0
        for lb in labels.tolist():
            if lb not in self.present:
                fresh += 1
            elif lb not in self.live:
                self.index.unmark_deleted(lb)
        needed = self.index.element_count + fresh
        if needed > self.index.get_max_elements():
            self.index.resize_index(max(needed, int(self.index.get_max_elements() * 1.5)))
        self.index.add_items(vectors, labels, num_threads=self.threads)
        self._changed.update(labels)
        self.live.update(labels)
        self.present.update(labels)
        self._matrix = None
        self.dirty = True

    def remove(self, labels: list[int] | np.ndarray) -> None:
        for lb in np.asarray(labels, dtype=np.int64).tolist():
            if lb in self.live:
                self.index.mark_deleted(lb)
                self.live.discard(lb)
                self.dirty = True
        self._matrix = None

    def vectors(self, labels: list[int]) -> np.ndarray:
        if not labels:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self.index.get_items(labels), dtype=np.float32).reshape(len(labels), self.dim)

    def search(self, queries: np.ndarray, k: int, ef: int | None = None,
               allowed: np.ndarray | None = None, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Return (labels, cosine similarities), each (n_queries, k'), best first; k' = min(k, live items).

        `allowed`: only these labels may be returned (a filter); the answer is then exact below `filter_exact_max`
        allowed labels and hnswlib's filtered graph walk above. `threads`: hnswlib threads over the queries (one
        query gains nothing; a batch, as a re-cluster asks, does)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if allowed is not None:
            return self._filtered(queries, k, np.asarray(allowed, dtype=np.int64), ef)
        k = min(int(k), len(self.live))
        if k <= 0:
            return np.zeros((len(queries), 0), dtype=np.int64), np.zeros((len(queries), 0), dtype=np.float32)
        if len(self.live) <= self.exact_max:
            return self._exact(queries, k)
        self.index.set_ef(max(ef or HNSW_EF_SEARCH, k))
        labels, distances = self.index.knn_query(queries, k=k, num_threads=max(1, threads))
        return labels.astype(np.int64), (1.0 - distances).astype(np.float32)

    def _filtered(self, queries: np.ndarray, k: int, allowed: np.ndarray,
                  ef: int | None) -> tuple[np.ndarray, np.ndarray]:
        allowed = allowed[self.live.contains(allowed)]
        k = min(int(k), len(allowed))
        if k <= 0:
            return np.zeros((len(queries), 0), dtype=np.int64), np.zeros((len(queries), 0), dtype=np.float32)
        if len(allowed) <= self.filter_exact_max or len(self.live) <= self.exact_max:
            if len(self.live) <= self.exact_max:  # the whole matrix is in memory: take the allowed rows of it
                labels, matrix = self._full_matrix()
                rows = np.searchsorted(labels, allowed)
                return self._exact(queries, k, (allowed, matrix[rows]))
            return self._exact(queries, k, (allowed, self._allowed_vectors(allowed)))
        present = self.present.to_array()
        mask = np.zeros(int(max(allowed.max(), present[-1] if len(present) else 0)) + 1, dtype=np.uint8)
        mask[allowed] = 1
        self.index.set_ef(max(ef or HNSW_EF_FILTERED, k))
        # bytes.__getitem__ as the filter: 0 or 1 per label, no Python frame per node the walk visits
        labels, distances = self.index.knn_query(queries, k=k, num_threads=1, filter=mask.tobytes().__getitem__)
        return labels.astype(np.int64), (1.0 - distances).astype(np.float32)

    def _allowed_vectors(self, labels: np.ndarray) -> np.ndarray:
        """The (unit) vectors of these live labels: from the saved file where it still holds them, else hnswlib."""
        if self._saved is None and self._file is not None and self._file.is_file():
            self._saved = SavedVectors(self._file, self.dim)
        if self._saved is None:
            return self.vectors(labels.tolist())
        out = np.empty((len(labels), self.dim), dtype=np.float32)
        in_file = self._saved.holds(labels) & ~self._changed.contains(labels)
        out[in_file] = self._saved.get(labels[in_file])
        out[~in_file] = self.vectors(labels[~in_file].tolist())
        return out

    def _full_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        if self._matrix is None:
            labels = self.live.to_array()
            self._matrix = (labels, self.vectors(labels.tolist()))
        return self._matrix

    def _exact(self, queries: np.ndarray, k: int,
               subset: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        labels, matrix = subset if subset is not None else self._full_matrix()
        norms = np.linalg.norm(queries, axis=1, keepdims=True)
        unit = queries / np.maximum(norms, 1e-12)
        # A filter's subset: einsum runs on this thread; BLAS wakes its thread pool for a matrix-vector product,
        # which takes 100x longer than the product itself when the cores are busy (bench filters)
        scores = np.einsum("qd,nd->qn", unit, matrix) if subset is not None else unit @ matrix.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else np.tile(
            np.arange(scores.shape[1]), (len(queries), 1))
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        return labels[top], np.take_along_axis(top_scores, order, axis=1).astype(np.float32)

    # ---- files -------------------------------------------------------------------------------------------------

    def save(self, folder: Path, space: str, generation: int, fingerprint: str) -> IndexFileState:
        """Write the graph to `<space>.<generation>.hnsw` atomically (temp file, fsync, rename, fsync folder)."""
        name = f"{space}.{generation}.hnsw"
        final = folder / name
        tmp = folder / f".{name}.tmp"
        self.index.save_index(str(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        size, crc = file_crc32(tmp)
        os.replace(tmp, final)
        fsync_dir(folder)
        self.dirty = False
        self._file, self._saved, self._changed = final, None, LabelSet()
        return IndexFileState(space, generation, name, size, crc, int(self.index.element_count),
                              labels_sum(self.index.get_ids_list()), fingerprint)

    @classmethod
    def load(cls, folder: Path, state: IndexFileState, dim: int, *, threads: int = 1,
             exact_max: int = EXACT_SEARCH_MAX, checked: str | None = None) -> VectorIndex:
        """Load a saved graph after checking size, CRC32, header, neighbour lists and label checksum; raise
        StoreError if off. `checked`: the file's stamp when it was written or last fully checked; while the file
        still has it (nothing wrote to it since: any write changes its ctime), CRC32 and neighbour lists, which read
        the whole file, are not checked again."""
        path = folder / state.filename
        problem = check_file(path, state, dim, deep=checked is None or checked != file_stamp(path))
        if problem:
            raise StoreError(problem)
        vi = cls(dim, threads=threads, exact_max=exact_max)
        vi.index = hnswlib.Index(space="cosine", dim=dim)
        vi.index.load_index(str(path), max_elements=max(state.elements, 16))
        vi.index.set_num_threads(threads)
        ids = vi.index.get_ids_list()
        if int(vi.index.element_count) != state.elements or labels_sum(ids) != state.labels_sum:
            raise StoreError(f"{path.name} does not hold the vectors the catalog recorded (count or checksum differ)")
        vi.present = LabelSet(ids)
        live = np.asarray(ids, dtype=np.int64)
        deleted = deleted_labels(path)
        vi.live = LabelSet(live[~contains_sorted(sorted_unique(deleted), live)] if len(deleted) else live)
        vi._file = path
        return vi
