"""The layout of a saved hnswlib graph file, and its vectors read in place by label (for exact filtered search)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

# hnswlib's file header (hnswalg.h saveIndex): offsetLevel0, max_elements, cur_element_count (size_t),
# size_data_per_element, label_offset, offsetData (size_t), maxlevel (int), enterpoint_node (uint),
# maxM, maxM0, M (size_t), mult (double), ef_construction (size_t).
HEADER = struct.Struct("<QQQQQQiIQQQdQ")


class SavedVectors:
    """The vectors of a saved graph file by label, read in place: hnswlib's level-0 records hold each element's
    (normalised) vector and label at fixed offsets (the header gives them; `check_file` vetted it at load)."""

    def __init__(self, path: Path, dim: int) -> None:
        raw = np.memmap(path, dtype=np.uint8, mode="r")
        _, _, count, per_el, label_off, offset_data, *_ = HEADER.unpack(bytes(raw[:HEADER.size]))
        records = raw[HEADER.size:HEADER.size + count * per_el].reshape(count, per_el)
        self.dim = dim
        self._vectors = records[:, offset_data:offset_data + dim * 4]
        labels = records[:, label_off:label_off + 8].copy().view(np.uint64).ravel().astype(np.int64)
        self._rows = np.argsort(labels, kind="stable")
        self._labels = labels[self._rows]

    def holds(self, labels: np.ndarray) -> np.ndarray:
        i = np.minimum(np.searchsorted(self._labels, labels), max(len(self._labels) - 1, 0))
        return self._labels[i] == labels if len(self._labels) else np.zeros(len(labels), dtype=bool)

    def get(self, labels: np.ndarray) -> np.ndarray:
        """Vectors of labels the file holds (check with `holds`), in the order given."""
        rows = self._rows[np.searchsorted(self._labels, labels)]
        return np.ascontiguousarray(self._vectors[rows]).view(np.float32).reshape(len(labels), self.dim)


def deleted_labels(path: Path) -> np.ndarray:
    """Labels hnswlib marked deleted in a saved graph file (the DELETE_MARK bit of each level-0 record's third byte,
    hnswalg.h markDeletedInternal): the file keeps them, so a load knows its live labels without asking the catalog."""
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    _, _, count, per_el, label_off, *_ = HEADER.unpack(bytes(raw[:HEADER.size]))
    records = raw[HEADER.size:HEADER.size + count * per_el].reshape(count, per_el)
    gone = np.flatnonzero(records[:, 2] & 1)
    return records[gone, label_off:label_off + 8].copy().view(np.uint64).ravel().astype(np.int64)
