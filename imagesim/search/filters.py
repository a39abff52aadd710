"""Filters every search mode takes: when, where, in which folder, with which camera, who, which file type.

`Filters` is a frozen value built from the same strings the CLI takes (`Filters.parse`), so the page and the API
can build it from their fields; `select` turns it into a `Selection` (content ids + folders) that the k-NN search
honours exactly. A value that does not parse, or names a person or place nobody knows, is one ImagesimError line; a
filter that is well-formed but matches no photo gives an empty Selection (and empty results).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from ..errors import ImagesimError
from ..faces.catalog import FaceCatalog
from ..faces.schema import has_schema
from ..metadata import FORMAT_NAMES, known_place
from ..store import Store
from ..store.photos import PhotoTable, Selection, realpath_folder

EARTH_KM = 6371.0088  # mean Earth radius
NEAR_KM = 10.0  # --near without a radius
TYPE_ALIASES = {"jpg": "jpeg", "jpe": "jpeg", "jfif": "jpeg", "heif": "heic", "hif": "heic", "tif": "tiff"}
TYPES = tuple(sorted(set(FORMAT_NAMES.values())))
_DATE = re.compile(r"^(\d{4})(?:[-/:.](\d{1,2})(?:[-/:.](\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?)?)?$")


@dataclass(frozen=True)
class Near:
    """Within `km` of a point (decimal degrees)."""

    lat: float
    lon: float
    km: float = NEAR_KM


@dataclass(frozen=True)
class Filters:
    """What a search may return. Every field set must hold (AND); folders and types are alternatives (OR), people
    must all be in the photo. Dates are the wall clock where the photo was taken, both ends inclusive, as
    "YYYY-MM-DD HH:MM:SS" (`parse` widens "2019" to the whole year at either end)."""

    after: str | None = None
    before: str | None = None
    folders: tuple[str, ...] = ()
    camera: str | None = None
    near: Near | None = None
    place: str | None = None
    people: tuple[str, ...] = ()
    types: tuple[str, ...] = ()

    @classmethod
    def parse(cls, *, after: str | None = None, before: str | None = None, folders: Iterable[str] = (),
              camera: str | None = None, near: str | None = None, place: str | None = None,
              people: Iterable[str] = (), types: Iterable[str] = ()) -> Filters:
        """Filters from the strings a user typed (the CLI's --after, --before, --in, --camera, --near, --place,
        --person, --type); empty strings mean "not given". Raises ImagesimError naming what did not parse."""
        start = parse_date(after, end=False, flag="--after") if after and after.strip() else None
        end = parse_date(before, end=True, flag="--before") if before and before.strip() else None
        if start and end and start > end:
            raise ImagesimError(f"--after {after} is later than --before {before}: no photo can match")
        return cls(after=start, before=end,
                   folders=tuple(realpath_folder(f.strip()) for f in folders if f and f.strip()),
                   camera=camera.strip() if camera and camera.strip() else None,
                   near=parse_near(near) if near and near.strip() else None,
                   place=place.strip() if place and place.strip() else None,
                   people=tuple(p.strip() for p in people if p and p.strip()),
                   types=tuple(dict.fromkeys(parse_type(t) for t in types if t and t.strip())))

    @property
    def empty(self) -> bool:
        return self == Filters()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in vars(self).items():
            if value:
                out[key] = vars(value) if isinstance(value, Near) else list(value) if isinstance(value, tuple) \
                    else value
        return out


def parse_date(text: str, *, end: bool, flag: str = "date") -> str:
    """"2019", "2019-07", "2019-07-14", "2019-07-14 18:03[:00]" -> the first (or with `end`, the last) second of
    that period, as "YYYY-MM-DD HH:MM:SS"."""
    m = _DATE.match(text.strip())
    if m is None:
        raise ImagesimError(f"{flag}: cannot read {text!r} as a date: use YYYY, YYYY-MM, YYYY-MM-DD or "
                            "YYYY-MM-DD HH:MM")
    year, month, day, hour, minute, second = (int(g) if g else None for g in m.groups())
    try:
        if month is None:
            when = datetime(year, 12, 31, 23, 59, 59) if end else datetime(year, 1, 1)  # type: ignore[arg-type]
        elif day is None:
            first = datetime(year, month, 1)  # type: ignore[arg-type]
            nxt = datetime(year + (month == 12), month % 12 + 1, 1)  # type: ignore[operator]
            when = nxt - timedelta(seconds=1) if end else first
        elif hour is None:
            when = datetime(year, month, day, 23, 59, 59) if end else datetime(year, month, day)  # type: ignore[arg-type]
        else:
            sec = second if second is not None else (59 if end else 0)
            when = datetime(year, month, day, hour, minute, sec)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ImagesimError(f"{flag}: {text!r} is not a real date ({exc})") from None
    return when.strftime("%Y-%m-%d %H:%M:%S")


def parse_near(text: str) -> Near:
    """"lat,lon" or "lat,lon,km" in decimal degrees (km defaults to 10)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        lat, lon = float(parts[0]), float(parts[1])
        km = float(parts[2].lower().removesuffix("km")) if len(parts) == 3 else NEAR_KM
    except ValueError:
        raise ImagesimError(f"--near: cannot read {text!r}: use LAT,LON or LAT,LON,KM in decimal degrees, e.g. "
                            "--near 38.72,-9.14,5") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180 and math.isfinite(km) and km > 0):
        raise ImagesimError(f"--near {text}: latitude must be within ±90, longitude within ±180 and the radius "
                            "above 0 km")
    return Near(lat, lon, km)


def parse_type(text: str) -> str:
    name = text.strip().lower().lstrip(".")
    name = TYPE_ALIASES.get(name, name)
    if name not in TYPES:
        raise ImagesimError(f"--type: unknown file type {text!r}: use one of {', '.join(TYPES)}")
    return name


def select(store: Store, filters: Filters | None) -> Selection | None:
    """The photos `filters` let through (None when there are no filters: everything)."""
    if filters is None or filters.empty:
        return None
    f = filters
    with store.lock:
        table = PhotoTable(store.catalog)
        ids: np.ndarray | None = None
        if f.after or f.before or f.camera or f.near or f.place or f.types:
            if f.place and not table.place_known(f.place) and not known_place(f.place):
                raise ImagesimError(f"--place: no city, region or country called {f.place!r} is known (names come "
                                    "from GeoNames, in English or the local spelling)")
            ids, coords = table.matching(taken_from=f.after, taken_to=f.before, camera=f.camera,
                                         box=_box(f.near) if f.near else None, place=f.place, formats=f.types)
            if f.near is not None and coords is not None and len(ids):
                ids = ids[_km(coords, f.near) <= f.near.km]
        if f.folders:
            ids = _and(ids, table.contents_in(f.folders))
        if f.people:
            ids = _and(ids, _people(store, f.people))
    return Selection(np.zeros(0, np.int64) if ids is None else ids, f.folders)


def _and(a: np.ndarray | None, b: np.ndarray) -> np.ndarray:
    return b if a is None else np.intersect1d(a, b, assume_unique=True)


def _people(store: Store, names: tuple[str, ...]) -> np.ndarray:
    """Contents showing every one of these people (by name, any case, or as "person N" / "N")."""
    if not has_schema(store.catalog):
        raise ImagesimError(f"--person: faces are off for {store.folder}, so nobody is known: run `imagesim index "
                            f"DIR --db {store.folder} --faces` and name people with `imagesim people name`")
    tables = FaceCatalog(store.catalog)
    out: np.ndarray | None = None
    for name in names:
        pid = tables.name_owner(name, -1)
        number = name.lower().removeprefix("person").strip()
        if pid is None and number.isdigit() and int(number) in tables.person_ids():
            pid = int(number)
        if pid is None:
            raise ImagesimError(f"--person: nobody is called {name!r}: `imagesim people` lists everyone")
        out = _and(out, np.asarray(sorted(tables.contents_of(pid)), dtype=np.int64))
    return np.zeros(0, np.int64) if out is None else out


def _box(near: Near) -> tuple[float, float, float, float]:
    """(south, north, west, east) around a circle, for the index on lat; west > east crosses the antimeridian."""
    dlat = math.degrees(near.km / EARTH_KM)
    south, north = max(-90.0, near.lat - dlat), min(90.0, near.lat + dlat)
    cos = math.cos(math.radians(max(abs(south), abs(north))))
    if north >= 90 or south <= -90 or cos < 1e-9:
        return south, north, -180.0, 180.0
    dlon = min(180.0, math.degrees(near.km / (EARTH_KM * cos)))
    if dlon >= 180:
        return south, north, -180.0, 180.0
    west, east = near.lon - dlon, near.lon + dlon
    return south, north, (west + 540) % 360 - 180 if west < -180 else west, (east + 180) % 360 - 180 \
        if east > 180 else east


def _km(coords: np.ndarray, near: Near) -> np.ndarray:
    """Great-circle distances (haversine) from `near` to each (lat, lon) row."""
    lat1, lon1 = math.radians(near.lat), math.radians(near.lon)
    lat2, lon2 = np.radians(coords[:, 0]), np.radians(coords[:, 1])
    a = np.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
