"""One embedding space in memory: an hnswlib graph (cosine), exact search for small collections, atomic files.

The catalog (SQLite) holds every vector; the graph file is a cache of them that can always be rebuilt without
re-encoding. A saved file carries a CRC32 and size recorded in the catalog, checked before hnswlib reads a byte
(hnswlib trusts its input and can crash on a damaged file).
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Iterator, Set
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np

from ..config import EXACT_SEARCH_MAX
from ..errors import StoreError
from .graphfile import HEADER as _HEADER
from .graphfile import SavedVectors, deleted_labels

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


@dataclass(frozen=True)
class IndexFileState:
    """What the catalog records about a saved graph file, to check it before loading."""

    space: str
    generation: int
    filename: str
    size: int
    crc32: int
    elements: int  # slots in the graph, deleted ones included
    labels_sum: int  # sum of all slot labels mod 2**62: a cheap check that the file holds what was saved
    fingerprint: str


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


class LabelSet(Set[int]):
    """A set of non-negative int labels kept as a bitmap (1 byte per label up to the largest) while labels are dense.

    Labels are catalog ids (1, 2, 3, ...): two Python sets of them cost ~120 bytes per vector, 5 % of all the RAM a
    stored vector takes; the bitmap costs ~2. Sparse labels (far above the count) fall back to a plain set. A
    read-only `Set` (==, <=, &, - with Python sets work) plus add/update/discard.
    """

    def __init__(self, labels: list[int] | np.ndarray | tuple[()] = ()) -> None:
        self._flags: np.ndarray | None = np.zeros(0, dtype=bool)
        self._set: set[int] = set()
        self._count = 0
        self.update(np.asarray(labels, dtype=np.int64))

    def __len__(self) -> int:
        return self._count if self._flags is not None else len(self._set)

    def __contains__(self, label: object) -> bool:
        if self._flags is None:
            return label in self._set
        return bool(isinstance(label, (int, np.integer)) and 0 <= label < len(self._flags) and self._flags[label])

    def __iter__(self) -> Iterator[int]:
        return iter(self.to_array().tolist())

    def contains(self, labels: np.ndarray) -> np.ndarray:
        """A boolean per label: is it in the set (vectorised `in`)."""
        labels = np.asarray(labels, dtype=np.int64)
        if self._flags is None:
            return np.fromiter((lb in self._set for lb in labels.tolist()), dtype=bool, count=len(labels))
        inside = (labels >= 0) & (labels < len(self._flags))
        out = np.zeros(len(labels), dtype=bool)
        out[inside] = self._flags[labels[inside]]
        return out

    def to_array(self) -> np.ndarray:
        """The labels, ascending, as int64."""
        if self._flags is None:
            return np.fromiter(sorted(self._set), dtype=np.int64, count=len(self._set))
        return np.flatnonzero(self._flags).astype(np.int64)

    def update(self, labels: list[int] | np.ndarray) -> None:
        arr = sorted_unique(labels)
        if not len(arr):
            return
        if self._flags is not None:
            top = int(arr[-1])
            if arr[0] < 0 or top >= 4 * (self._count + len(arr)) + (1 << 16):  # sparse: a bitmap would waste RAM
                self._set = set(self.to_array().tolist())
                self._flags = None
            else:
                if top >= len(self._flags):
                    grown = np.zeros(max(top + 1, len(self._flags) * 3 // 2), dtype=bool)
                    grown[:len(self._flags)] = self._flags
                    self._flags = grown
                self._count += int(np.count_nonzero(~self._flags[arr]))
                self._flags[arr] = True
                return
        self._set.update(arr.tolist())

    def add(self, label: int) -> None:
        self.update([label])

    def discard(self, label: int) -> None:
        if self._flags is None:
            self._set.discard(label)
        elif label in self:
            self._flags[label] = False
            self._count -= 1


def sorted_unique(values: np.ndarray | list[int]) -> np.ndarray:
    """The distinct values, ascending, as int64: `np.unique` by a sort (numpy 2.4's hash-based `np.unique` takes
    ~0.2 s for 320k labels where a sort takes 2 ms)."""
    arr = np.sort(np.asarray(values, dtype=np.int64).ravel())
    if len(arr) < 2:
        return arr
    keep = np.empty(len(arr), dtype=bool)
    keep[0] = True
    np.not_equal(arr[1:], arr[:-1], out=keep[1:])
    return arr[keep]


def contains_sorted(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A boolean per value: is it in `table` (ascending, distinct), by binary search (no `np.unique` inside)."""
    if not len(table):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(table, values), len(table) - 1)
    return table[at] == values


def labels_sum(labels: list[int] | np.ndarray) -> int:
    return int(np.asarray(labels, dtype=np.uint64).sum(dtype=np.uint64) % np.uint64(2**62)) if len(labels) else 0


def file_crc32(path: Path) -> tuple[int, int]:
    crc, size = 0, 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return size, crc


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_stamp(path: Path) -> str | None:
    """Name, inode, size, mtime and ctime of a file: any write to it (or a replacement) changes the stamp, and
    ctime cannot be set back by a program (utime sets mtime only). None when it is not there."""
    try:
        st = path.stat()
    except OSError:
        return None
    return f"{path.name}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def check_file(path: Path, state: IndexFileState, dim: int, *, deep: bool = True) -> str | None:
    """Return why `path` must not be handed to hnswlib, or None when it is the file the catalog recorded.
    `deep` False: size and header only (the file is known unchanged since a deep check)."""
    if not path.is_file():
        return f"index file {path.name} is missing"
    size = path.stat().st_size
    if size != state.size:
        return f"index file {path.name} has {size} bytes, the catalog recorded {state.size} (truncated or replaced)"
    if deep and file_crc32(path)[1] != state.crc32:
        return f"index file {path.name} is damaged (checksum mismatch)"
    with open(path, "rb") as fh:
        head = fh.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return f"index file {path.name} is too short for a header"
    (offset_l0, max_el, count, per_el, label_off, offset_data, maxlevel, entry, max_m, max_m0, m, mult,
     efc) = _HEADER.unpack(head)
    data_size = dim * 4
    ok = (count == state.elements and count <= max_el <= 2**36 and offset_l0 == 0 and 0 < m <= 512 and max_m == m
          and abs(mult - 1 / math.log(m if m > 1 else 2)) < 1e-9 and 0 < efc <= 100_000
          and max_m0 == 2 * m and offset_data == 4 + max_m0 * 4 and label_off == offset_data + data_size
          and per_el == label_off + 8 and -1 <= maxlevel < 64 and (count == 0 or entry < count)
          and _HEADER.size + count * per_el <= size)
    if not ok:
        return f"index file {path.name} has an impossible header"
    return _check_links(path, count, per_el, max_m, max_m0, maxlevel, entry) if deep else None


def _check_links(path: Path, count: int, per_el: int, max_m: int, max_m0: int, maxlevel: int,
                 entry: int) -> str | None:
    """Every neighbour list must have a sane length and point at existing elements, or hnswlib would follow it."""
    bad = f"index file {path.name} has impossible neighbour lists"
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    start = _HEADER.size
    for first in range(0, count, 65536):  # level 0: fixed-size records, checked in chunks
        n = min(65536, count - first)
        level0 = raw[start + first * per_el:start + (first + n) * per_el].reshape(n, per_el)
        sizes = level0[:, 0:2].copy().view(np.uint16).ravel()
        if int(sizes.max()) > max_m0:
            return bad
        links = level0[:, 4:4 + max_m0 * 4].copy().view(np.uint32).reshape(n, max_m0)
        if bool((links[np.arange(max_m0)[None, :] < sizes[:, None]] >= count).any()):
            return bad
    # Upper levels: per element a uint32 byte size, then that many bytes of lists; most elements have none.
    pos, i, top, entry_level = start + count * per_el, 0, 0, 0
    per_level = max_m * 4 + 4
    while i < count:
        m = min(count - i, 4096)
        if pos + 4 * m > len(raw):
            return bad
        sizes = raw[pos:pos + 4 * m].view(np.uint32)
        nonzero = np.flatnonzero(sizes)
        if not len(nonzero):
            i, pos = i + m, pos + 4 * m
            continue
        skip = int(nonzero[0])
        i, pos = i + skip, pos + 4 * skip
        size = int(sizes[skip])
        pos += 4
        if size % per_level or size // per_level > 64 or pos + size > len(raw):
            return bad
        block = raw[pos:pos + size].copy().view(np.uint32).reshape(-1, max_m + 1)
        n_links = block[:, 0] & 0xFFFF
        if int(n_links.max()) > max_m or bool((block[:, 1:][np.arange(max_m)[None, :] < n_links[:, None]]
                                               >= count).any()):
            return bad
        level = size // per_level
        entry_level = level if i == entry else entry_level
        top = max(top, level)
        i, pos = i + 1, pos + size
    if pos != len(raw) or (count and (top != maxlevel or entry_level != maxlevel)):
        return bad
    return None

