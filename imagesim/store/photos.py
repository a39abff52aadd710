"""The photo_info table (date taken, camera, position, place, size, type per content) and the queries filters run.

Metadata belongs to a content (the photo's bytes), like its vectors: a renamed, moved or copied photo keeps it
without being read again, and it goes with its content (ON DELETE CASCADE). Filters are answered here as sets of
content ids (`Selection`), which the k-NN search then honours exactly.
"""

from __future__ import annotations

import bisect
import fnmatch
import os
import re
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, fields
from typing import Any

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
            rows = self.conn.execute(f"SELECT content_id, {', '.join(COLUMNS)}, {self.catalog.ok('photo_info')} FROM "
                                     f"photo_info WHERE content_id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
            for r in self.catalog.sound("photo_info", rows):
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
            for cid, path, mtime in self.catalog.sound("files", self.conn.execute(
                    f"SELECT content_id, path, mtime_ns, {self.catalog.ok('files')} FROM files WHERE status='ok' AND "
                    f"content_id IN ({','.join('?' * len(chunk))}) ORDER BY path", chunk).fetchall()):
                out.setdefault(int(cid), (from_db_path(path), int(mtime)))
        return out

    def dates(self, content_ids: Iterable[int]) -> dict[int, tuple[float | None, str | None]]:
        """(taken_utc, taken_local) per content, for sorting by date."""
        out: dict[int, tuple[float | None, str | None]] = {}
        for chunk in _chunks(sorted({int(c) for c in content_ids}), 500):
            for cid, utc, local in self.catalog.sound("photo_info", self.conn.execute(
                    f"SELECT content_id, taken_utc, taken_local, {self.catalog.ok('photo_info')} FROM photo_info "
                    f"WHERE content_id IN ({','.join('?' * len(chunk))})", chunk).fetchall()):
                out[int(cid)] = (utc, local)
        return out

    # ---- filters ---------------------------------------------------------------------------------------------

    def matching(self, **conditions: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """`PhotoColumns.matching` over this catalog's current columns. The first filter questions asked of a catalog (a
        one-shot command) with a date range or a box read only the rows an index narrows them to, the years or the
        latitudes asked for; later ones (a server) build and keep the columns of every photo."""
        cols = cached_columns(self.catalog)
        if cols is None and _first_use(self.catalog):
            where, params = _narrowing(conditions)
            if where:
                cols = PhotoColumns.load(self.catalog, where, params, paths=False)
        return (cols or columns(self.catalog)).matching(**conditions)

    def contents_in(self, folders: Sequence[str]) -> np.ndarray:
        cols = cached_columns(self.catalog)
        if cols is None and _first_use(self.catalog):  # the files in those folders' path ranges, nothing more
            return _contents_in_rows(self.catalog, folders)
        return (cols or columns(self.catalog)).contents_in(folders)

    def place_known(self, place: str) -> bool:
        """Whether any photo here was taken in a place of this name."""
        return place.strip().casefold() in columns(self.catalog).places


# Filters are answered from columns in memory (numpy arrays, ~10 MB per 100k photos), rebuilt when the catalog
# changed: fetching 50k matching ids row by row from SQLite alone takes longer than the 20 ms a query may take.
_COLUMNS: weakref.WeakKeyDictionary[Catalog, tuple[tuple[int, int], PhotoColumns]] = weakref.WeakKeyDictionary()


_USES: weakref.WeakKeyDictionary[Catalog, int] = weakref.WeakKeyDictionary()


# A one-shot command asks an open catalog at most a few filter questions (a date range, then the folders, for the
# check "no photo matches" and again for the search): those read only what they need. A process that asks more is a
# server or a script's loop, for which the columns of every photo (built once, kept until a commit) pay.
ONE_SHOT_QUESTIONS = 4


def _first_use(catalog: Catalog) -> bool:
    """True for the first `ONE_SHOT_QUESTIONS` filter questions asked of this open catalog."""
    n = _USES.get(catalog, 0)
    _USES[catalog] = n + 1
    return n < ONE_SHOT_QUESTIONS


def _narrowing(conditions: dict[str, Any]) -> tuple[str, tuple]:
    """An indexed WHERE that keeps at least every row `matching` could pass (years of the dates, latitudes of the
    box); empty when no condition has an index."""
    frm, to, box = conditions.get("taken_from"), conditions.get("taken_to"), conditions.get("box")
    if frm is not None or to is not None:
        lo = (frm or "")[:4] if (frm or "")[:4].isdigit() else ""
        hi = str(int(to[:4]) + 1) if to and to[:4].isdigit() else "\uffff"
        return "taken_local >= ? AND taken_local < ?", (lo, hi)
    if box is not None:
        return "lat BETWEEN ? AND ?", (float(box[0]), float(box[1]))
    return "", ()


def _contents_in_rows(catalog: Catalog, folders: Sequence[str]) -> np.ndarray:
    """`PhotoColumns.contents_in` from the files table: each folder's path range through the primary key."""
    picked: set[int] = set()
    for folder in folders:
        literal = folder[:min(folder.index(c) for c in GLOB_CHARS if c in folder)] if GLOB_CHARS & set(folder) \
            else folder
        rows = catalog.sound("files", catalog.conn.execute(
            f"SELECT path, content_id, {catalog.ok('files')} FROM files WHERE path >= ? AND path < ? AND "
            "status='ok' AND content_id IS NOT NULL", (literal, literal + "\U0010ffff")).fetchall())
        picked.update(int(c) for p, c in rows if in_folder(from_db_path(p), folder))
    return np.asarray(sorted(picked), dtype=np.int64)


def cached_columns(catalog: Catalog) -> PhotoColumns | None:
    hit = _COLUMNS.get(catalog)
    return hit[1] if hit is not None and hit[0] == (catalog.data_version(), catalog.conn.total_changes) else None


def columns(catalog: Catalog) -> PhotoColumns:
    """The catalog's photo_info and file paths as columns, cached until another commit (by any connection)."""
    key = (catalog.data_version(), catalog.conn.total_changes)
    hit = _COLUMNS.get(catalog)
    if hit is not None and hit[0] == key:
        return hit[1]
    cols = PhotoColumns.load(catalog)
    _COLUMNS[catalog] = (key, cols)
    return cols


@dataclass
class PhotoColumns:
    """photo_info by content id as arrays (text columns as codes into small vocabularies), and the indexed files'
    paths sorted (prefix filters are two bisections)."""

    ids: np.ndarray
    local: np.ndarray  # taken_local as the number YYYYMMDDHHMMSS (compares like the text, 20x faster); -1 undated
    lat: np.ndarray  # NaN without GPS
    lon: np.ndarray
    camera: np.ndarray  # codes into cameras
    cameras: list[str]  # casefolded "make model"
    format: np.ndarray
    formats: list[str | None]
    place: np.ndarray  # (rows, 5) codes of city, county, state, country, country code into `places` (-1: none)
    places: dict[str, int]
    paths: list[str]
    path_ids: np.ndarray

    @classmethod
    def load(cls, catalog: Catalog, where: str = "", params: tuple = (), *, paths: bool = True) -> PhotoColumns:
        """Every photo's columns, or those of the rows `where` picks (without the paths: `paths=False`)."""
        rows = catalog.sound("photo_info", catalog.conn.execute(
            "SELECT content_id, taken_local, make, model, lat, lon, format, city, county, state, country, "
            f"country_code, {catalog.ok('photo_info')} FROM photo_info {'WHERE ' + where if where else ''} "
            "ORDER BY content_id", params).fetchall())
        n = len(rows)
        cameras: dict[str, int] = {}
        formats: dict[str | None, int] = {}
        places: dict[str, int] = {}
        camera = np.fromiter((cameras.setdefault(f"{r[2] or ''} {r[3] or ''}".casefold(), len(cameras))
                              for r in rows), dtype=np.int32, count=n)
        place = np.asarray([[places.setdefault(v.casefold(), len(places)) if v else -1 for v in r[7:12]]
                            for r in rows], dtype=np.int32).reshape(n, 5)
        files = sorted((from_db_path(p), int(c)) for p, c in catalog.sound("files", catalog.conn.execute(
            f"SELECT path, content_id, {catalog.ok('files')} FROM files WHERE status='ok' AND content_id IS NOT NULL"
            ).fetchall())) if paths else []
        return cls(
            ids=np.fromiter((r[0] for r in rows), dtype=np.int64, count=n),
            local=np.fromiter((_clock(r[1]) for r in rows), dtype=np.int64, count=n),
            lat=np.asarray([np.nan if r[4] is None else r[4] for r in rows], dtype=np.float64),
            lon=np.asarray([np.nan if r[5] is None else r[5] for r in rows], dtype=np.float64),
            camera=camera, cameras=list(cameras),
            format=np.fromiter((formats.setdefault(r[6], len(formats)) for r in rows), dtype=np.int32, count=n),
            formats=list(formats), place=place, places=places,
            paths=[p for p, _ in files], path_ids=np.asarray([c for _, c in files], dtype=np.int64))

    def matching(self, *, taken_from: str | None = None, taken_to: str | None = None, camera: str | None = None,
                 box: tuple[float, float, float, float] | None = None, place: str | None = None,
                 formats: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray | None]:
        """Content ids whose metadata passes every given condition (None = not asked), sorted; with `box`
        (south, north, west, east; west > east crosses the antimeridian) also each one's (lat, lon) rows.

        Dates compare the wall clock where the photo was taken ("YYYY-MM-DD HH:MM:SS", both ends inclusive); the
        camera is a substring of "make model", the place a city, county, state, country or country code (any case)."""
        keep = np.ones(len(self.ids), dtype=bool)
        if taken_from is not None:
            keep &= self.local >= _clock(taken_from)
        if taken_to is not None:
            keep &= (self.local <= _clock(taken_to)) & (self.local >= 0)
        if camera is not None:
            want = camera.casefold()
            keep &= np.isin(self.camera, [i for i, c in enumerate(self.cameras) if want in c])
        if box is not None:
            south, north, west, east = box
            with np.errstate(invalid="ignore"):
                keep &= (self.lat >= south) & (self.lat <= north)
                keep &= ((self.lon >= west) & (self.lon <= east)) if west <= east else \
                    ((self.lon >= west) | (self.lon <= east))
        if place is not None:
            code = self.places.get(place.strip().casefold(), -2)
            keep &= (self.place == code).any(axis=1)
        if formats:
            keep &= np.isin(self.format, [i for i, f in enumerate(self.formats) if f in formats])
        ids = self.ids[keep]
        return ids, (np.stack([self.lat[keep], self.lon[keep]], axis=1) if box is not None else None)

    def contents_in(self, folders: Sequence[str]) -> np.ndarray:
        """Content ids with an indexed file in any of `folders` (prefixes: two bisections; globs: matched within
        the range of their literal start)."""
        picked: list[np.ndarray] = []
        for folder in folders:
            if GLOB_CHARS & set(folder):
                literal = folder[:min(folder.index(c) for c in GLOB_CHARS if c in folder)]
                lo, hi = self._range(literal)
                pattern = re.compile(fnmatch.translate(folder) + "|" + fnmatch.translate(folder.rstrip("/") + "/*"))
                rows = [i for i in range(lo, hi) if pattern.match(self.paths[i])]
                picked.append(self.path_ids[rows])
                continue
            prefix = folder.rstrip("/") + "/"
            lo, hi = self._range(prefix)
            picked.append(self.path_ids[lo:hi])
            i = bisect.bisect_left(self.paths, folder)
            if i < len(self.paths) and self.paths[i] == folder:  # --in naming a file
                picked.append(self.path_ids[i:i + 1])
        if not picked or not sum(len(p) for p in picked):
            return np.zeros(0, np.int64)
        ids = np.concatenate(picked)
        seen = np.zeros(int(ids.max()) + 1, dtype=bool)  # content ids are dense: a bitmap beats np.unique's hash
        seen[ids] = True
        return np.flatnonzero(seen).astype(np.int64)

    def _range(self, literal: str) -> tuple[int, int]:
        """Rows of the paths that start with `literal`."""
        if not literal:
            return 0, len(self.paths)
        return bisect.bisect_left(self.paths, literal), bisect.bisect_left(self.paths, literal + "\U0010ffff")


def _clock(local: str | None) -> int:
    """"2019-07-14 18:03:00" -> 20190714180300; -1 for no date (or one that is not in that form)."""
    digits = "".join(ch for ch in (local or "") if ch.isdigit())
    return int(digits) if len(digits) == 14 else -1


def realpath_folder(folder: str) -> str:
    """A --in value as the catalog stores paths: absolute and resolved (a glob keeps its pattern characters)."""
    expanded = os.path.expanduser(folder)
    if GLOB_CHARS & set(expanded):
        return expanded if expanded.startswith(("/", "*")) else "*/" + expanded
    return os.path.realpath(expanded)


