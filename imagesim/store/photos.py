"""The photo_info table (date taken, camera, position, place, size, type per content) and the queries filters run.

Metadata belongs to a content (the photo's bytes), like its vectors: a renamed, moved or copied photo keeps it
without being read again, and it goes with its content (ON DELETE CASCADE). Filters are answered here as sets of
content ids (`Selection`), which the k-NN search then honours exactly.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, fields

import numpy as np

from ..metadata import PhotoInfo
from .catalog import Catalog, _chunks, from_db_path

COLUMNS = tuple(f.name for f in fields(PhotoInfo))
GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Selection:
    """The photos a filtered query may return: content ids (sorted), and when a folder filter is on, the folders
    (prefixes or globs) a returned file must lie in, so a copy outside them is not listed."""

    contents: np.ndarray
    folders: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.contents)

    def allows(self, path: str) -> bool:
        return not self.folders or any(in_folder(path, f) for f in self.folders)

    def __contains__(self, content_id: object) -> bool:
        i = np.searchsorted(self.contents, content_id)  # type: ignore[call-overload]
        return bool(i < len(self.contents) and self.contents[i] == content_id)


def in_folder(path: str, folder: str) -> bool:
    """Whether `path` lies in `folder`: a prefix (the folder itself or below it) or a glob over the whole path (a
    glob matches the folder or anything below it; `*` crosses "/")."""
    if GLOB_CHARS & set(folder):
        return fnmatch.fnmatchcase(path, folder) or fnmatch.fnmatchcase(path, folder.rstrip("/") + "/*")
    return path == folder or path.startswith(folder.rstrip("/") + "/")


class PhotoTable:
    """Every query on photo_info, over an open catalog (the caller holds the store's lock)."""

    def __init__(self, catalog: Catalog) -> None:
        self.conn = catalog.conn
        self.catalog = catalog

    def put(self, content_id: int, info: PhotoInfo) -> None:
        marks = ",".join("?" * (len(COLUMNS) + 1))
        self.conn.execute(f"INSERT OR REPLACE INTO photo_info(content_id, {', '.join(COLUMNS)}) VALUES({marks})",
                          (int(content_id), *astuple(info)))

    def get(self, content_ids: Iterable[int]) -> dict[int, PhotoInfo]:
        out: dict[int, PhotoInfo] = {}
        for chunk in _chunks(sorted({int(c) for c in content_ids}), 500):
            rows = self.conn.execute(f"SELECT content_id, {', '.join(COLUMNS)} FROM photo_info WHERE content_id IN "
                                     f"({','.join('?' * len(chunk))})", chunk)
            for r in rows:
                out[int(r[0])] = PhotoInfo(*r[1:])
        return out

    def missing(self) -> set[int]:
        """Contents without a photo_info row (indexed before this version): the next index run reads their headers."""
        return {int(r[0]) for r in self.conn.execute(
            "SELECT id FROM contents c WHERE NOT EXISTS (SELECT 1 FROM photo_info p WHERE p.content_id=c.id)")}

    def files_of(self, content_ids: Iterable[int]) -> dict[int, tuple[str, int]]:
        """One indexed file (path, mtime_ns) per content: where to read the header of a content lacking its row."""
        out: dict[int, tuple[str, int]] = {}
        for chunk in _chunks(sorted({int(c) for c in content_ids}), 500):
            for cid, path, mtime in self.conn.execute(
                    f"SELECT content_id, path, mtime_ns FROM files WHERE status='ok' AND content_id IN "
                    f"({','.join('?' * len(chunk))}) ORDER BY path", chunk):
                out.setdefault(int(cid), (from_db_path(path), int(mtime)))
        return out

    def dates(self, content_ids: Iterable[int]) -> dict[int, tuple[float | None, str | None]]:
        """(taken_utc, taken_local) per content, for sorting by date."""
        out: dict[int, tuple[float | None, str | None]] = {}
        for chunk in _chunks(sorted({int(c) for c in content_ids}), 500):
            for cid, utc, local in self.conn.execute(
                    "SELECT content_id, taken_utc, taken_local FROM photo_info WHERE content_id IN "
                    f"({','.join('?' * len(chunk))})", chunk):
                out[int(cid)] = (utc, local)
        return out

    # ---- filters ---------------------------------------------------------------------------------------------

    def matching(self, *, taken_from: str | None = None, taken_to: str | None = None, camera: str | None = None,
                 box: tuple[float, float, float, float] | None = None, place: str | None = None,
                 formats: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray | None]:
        """Content ids whose metadata passes every given condition (None = not asked), sorted; with `box`
        (south, north, west, east; west > east crosses the antimeridian) also each one's (lat, lon) rows.

        Dates compare the wall clock where the photo was taken ("YYYY-MM-DD HH:MM:SS", both ends inclusive)."""
        where: list[str] = []
        params: list[object] = []
        if taken_from is not None:
            where.append("taken_local >= ?")
            params.append(taken_from)
        if taken_to is not None:
            where.append("taken_local <= ?")
            params.append(taken_to)
        if camera is not None:
            where.append("(COALESCE(make, '') || ' ' || COALESCE(model, '')) LIKE ? ESCAPE '\\'")
            params.append("%" + _like(camera) + "%")
        if box is not None:
            south, north, west, east = box
            where.append("lat BETWEEN ? AND ? AND " + ("lon BETWEEN ? AND ?" if west <= east else
                                                       "(lon >= ? OR lon <= ?)"))
            params += [south, north, west, east]
        if place is not None:
            where.append("(city = ? COLLATE NOCASE OR county = ? COLLATE NOCASE OR state = ? COLLATE NOCASE OR "
                         "country = ? COLLATE NOCASE OR country_code = ? COLLATE NOCASE)")
            params += [place] * 5
        if formats:
            where.append(f"format IN ({','.join('?' * len(formats))})")
            params += list(formats)
        clause = " WHERE " + " AND ".join(where) if where else ""
        if box is None:  # ids only, sorted here: numpy sorts 50k ids faster than SQLite hands them over sorted
            rows = self.conn.execute("SELECT content_id FROM photo_info" + clause, params).fetchall()
            return np.sort(np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))), None
        rows = self.conn.execute("SELECT content_id, lat, lon FROM photo_info" + clause + " ORDER BY content_id",
                                 params).fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return ids, np.asarray([(r[1], r[2]) for r in rows], dtype=np.float64).reshape(-1, 2)

    def contents_in(self, folders: Sequence[str]) -> np.ndarray:
        """Content ids with an indexed file in any of `folders` (absolute prefixes: index ranges; globs: a scan)."""
        found: set[int] = set()
        for folder in folders:
            if GLOB_CHARS & set(folder):
                sql = "SELECT content_id FROM files WHERE status='ok' AND (path GLOB ? OR path GLOB ?)"
                params: tuple = (folder, folder.rstrip("/") + "/*")
                literal = folder[:min(folder.index(c) for c in GLOB_CHARS if c in folder)]
                if literal:  # the part before the first wildcard is a range of the path index, not a scan
                    sql += " AND path >= ? AND path < ?"
                    params += (literal, literal + "\U0010ffff")
                found.update(int(r[0]) for r in self.conn.execute(sql, params) if r[0] is not None)
                continue
            prefix = folder.rstrip("/") + "/"
            for whole, start in ((folder, prefix), (os.fsencode(folder), os.fsencode(prefix))):  # TEXT and BLOB paths
                end = start[:-1] + ("0" if isinstance(start, str) else b"0")  # type: ignore[operator]  # "/" + 1
                found.update(int(r[0]) for r in self.conn.execute(
                    "SELECT content_id FROM files WHERE status='ok' AND content_id IS NOT NULL AND "
                    "(path = ? OR (path >= ? AND path < ?))", (whole, start, end)))
        return np.asarray(sorted(found), dtype=np.int64)

    def place_known(self, place: str) -> bool:
        """Whether any photo here was taken in a place of this name."""
        return self.conn.execute(
            "SELECT 1 FROM photo_info WHERE city = ? COLLATE NOCASE OR county = ? COLLATE NOCASE OR "
            "state = ? COLLATE NOCASE OR country = ? COLLATE NOCASE OR country_code = ? COLLATE NOCASE LIMIT 1",
            [place] * 5).fetchone() is not None


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def realpath_folder(folder: str) -> str:
    """A --in value as the catalog stores paths: absolute and resolved (a glob keeps its pattern characters)."""
    expanded = os.path.expanduser(folder)
    if GLOB_CHARS & set(expanded):
        return expanded if expanded.startswith(("/", "*")) else "*/" + expanded
    return os.path.realpath(expanded)


