"""A saved hnswlib graph file: its layout, the checks that stand between it and hnswlib (which trusts its input and
can crash on a damaged file), its stamp, and its vectors read in place by label (for exact filtered search)."""

from __future__ import annotations

import math
import os
import struct
import zlib
from dataclasses import dataclass
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
        head = fh.read(HEADER.size)
    if len(head) < HEADER.size:
        return f"index file {path.name} is too short for a header"
    (offset_l0, max_el, count, per_el, label_off, offset_data, maxlevel, entry, max_m, max_m0, m, mult,
     efc) = HEADER.unpack(head)
    data_size = dim * 4
    ok = (count == state.elements and count <= max_el <= 2**36 and offset_l0 == 0 and 0 < m <= 512 and max_m == m
          and abs(mult - 1 / math.log(m if m > 1 else 2)) < 1e-9 and 0 < efc <= 100_000
          and max_m0 == 2 * m and offset_data == 4 + max_m0 * 4 and label_off == offset_data + data_size
          and per_el == label_off + 8 and -1 <= maxlevel < 64 and (count == 0 or entry < count)
          and HEADER.size + count * per_el <= size)
    if not ok:
        return f"index file {path.name} has an impossible header"
    return _check_links(path, count, per_el, max_m, max_m0, maxlevel, entry) if deep else None


def _check_links(path: Path, count: int, per_el: int, max_m: int, max_m0: int, maxlevel: int,
                 entry: int) -> str | None:
    """Every neighbour list must have a sane length and point at existing elements, or hnswlib would follow it."""
    bad = f"index file {path.name} has impossible neighbour lists"
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    start = HEADER.size
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
