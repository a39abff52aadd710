"""What a photo's header says about it, read without decoding its pixels: when and where it was taken, with which
camera, its size, orientation and file type; and the place names of a GPS position (offline, `reverse_geocode`).

`read_info` opens the bytes lazily (Pillow parses the header and EXIF only, ~0.1-0.5 ms) and never fails a photo:
a missing or garbled tag is just absent. The date is the EXIF DateTimeOriginal (else DateTimeDigitized) with its
OffsetTimeOriginal when the camera wrote one, else the file's modification time; `taken_source` says which.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, BinaryIO

from PIL import Image

from .images import ALLOWED_FORMATS

# EXIF tags (CIPA DC-008): IFD0, the Exif IFD and the GPS IFD
_MAKE, _MODEL, _ORIENTATION = 0x010F, 0x0110, 0x0112
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATE_ORIGINAL, _DATE_DIGITIZED = 0x9003, 0x9004
_OFFSET_ORIGINAL, _OFFSET_DIGITIZED = 0x9011, 0x9012
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4

# Pillow's format names as users say them (`--type`): HEIF files are HEIC to a phone user, MPO is a camera JPEG
FORMAT_NAMES = {"JPEG": "jpeg", "MPO": "jpeg", "HEIF": "heic", "PNG": "png", "GIF": "gif", "WEBP": "webp",
                "TIFF": "tiff", "BMP": "bmp", "AVIF": "avif"}
LOCAL_FORMAT = "%Y-%m-%d %H:%M:%S"  # taken_local: sorts as text, compared by --after/--before


@dataclass(frozen=True)
class PhotoInfo:
    """A photo's metadata as the catalog stores it (one row per content).

    `taken_utc`: seconds since the epoch (None when neither EXIF nor the file gave a time); `taken_local`: the wall
    clock where it was taken, "YYYY-MM-DD HH:MM:SS"; `taken_source`: "exif" (date and offset), "exif-local" (date
    without offset: read as this machine's time zone for `taken_utc`), "mtime" (the file's) or "none".
    """

    taken_utc: float | None = None
    taken_local: str | None = None
    taken_source: str = "none"
    make: str | None = None
    model: str | None = None
    lat: float | None = None
    lon: float | None = None
    width: int | None = None  # upright pixels
    height: int | None = None
    orientation: int | None = None
    format: str | None = None
    country_code: str | None = None
    country: str | None = None
    state: str | None = None
    county: str | None = None
    city: str | None = None

    @property
    def camera(self) -> str | None:
        """"Make Model" without the make repeated (many models start with it: "Canon" "Canon EOS R5")."""
        make, model = (self.make or "").strip(), (self.model or "").strip()
        if model.lower().startswith(make.lower()):
            make = ""
        return " ".join(p for p in (make, model) if p) or None

    @property
    def place(self) -> str | None:
        """"City, Country" for people, from the reverse geocoder."""
        return ", ".join(p for p in (self.city, self.country) if p) or None


def read_info(source: bytes | BinaryIO, mtime_ns: int | None = None) -> PhotoInfo:
    """The metadata in a photo's header (its bytes, or an open file: only the header is read); `mtime_ns` (the
    file's) dates a photo whose EXIF has no date."""
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source, formats=ALLOWED_FORMATS)
    except Exception:  # noqa: BLE001 - not a photo: decoding reports that; metadata is never the reason to fail
        return _dated(PhotoInfo(), None, None, mtime_ns)
    with img:
        try:
            exif = img.getexif()
        except Exception:  # noqa: BLE001 - garbled EXIF: the photo still counts, without it
            exif = Image.Exif()
        orientation = _int(exif.get(_ORIENTATION))
        width, height = img.size
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        sub = _ifd(exif, _EXIF_IFD)
        gps = _ifd(exif, _GPS_IFD)
        local, offset = _text(sub.get(_DATE_ORIGINAL)), _text(sub.get(_OFFSET_ORIGINAL))
        if local is None:
            local, offset = _text(sub.get(_DATE_DIGITIZED)), _text(sub.get(_OFFSET_DIGITIZED))
        lat, lon = _gps(gps)
        info = PhotoInfo(make=_text(exif.get(_MAKE)), model=_text(exif.get(_MODEL)), lat=lat, lon=lon, width=width,
                         height=height, orientation=orientation, format=FORMAT_NAMES.get(img.format or ""))
    return _dated(info, local, offset, mtime_ns)


def _dated(info: PhotoInfo, local: str | None, offset: str | None, mtime_ns: int | None) -> PhotoInfo:
    when = _exif_time(local)
    if when is not None:
        tz = _offset(offset)
        if tz is not None:
            return replace(info, taken_utc=when.replace(tzinfo=tz).timestamp(),
                           taken_local=when.strftime(LOCAL_FORMAT), taken_source="exif")
        return replace(info, taken_utc=time.mktime(when.timetuple()), taken_local=when.strftime(LOCAL_FORMAT),
                       taken_source="exif-local")
    if mtime_ns is not None:
        seconds = mtime_ns / 1e9
        return replace(info, taken_utc=seconds, taken_local=time.strftime(LOCAL_FORMAT, time.localtime(seconds)),
                       taken_source="mtime")
    return info


def _exif_time(text: str | None) -> datetime | None:
    """EXIF's "YYYY:MM:DD HH:MM:SS" (some writers use "-" or "T"); "0000:00:00 00:00:00" and junk are None."""
    if not text:
        return None
    text = text.strip().replace("T", " ")[:19]
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M", "%Y-%m-%d %H:%M"):
        try:
            when = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return when if 1826 <= when.year <= 2200 else None  # the oldest surviving photograph is from 1826
    return None


def _offset(text: str | None) -> timezone | None:
    """OffsetTimeOriginal, "+01:00" or "-05:30"; None when absent or malformed."""
    if not text or len(text.strip()) < 6:
        return None
    text = text.strip()
    try:
        sign = {"+": 1, "-": -1}[text[0]]
        hours, minutes = int(text[1:3]), int(text[4:6])
    except (KeyError, ValueError):
        return None
    if hours > 14 or minutes > 59:
        return None
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _ifd(exif: Image.Exif, tag: int) -> dict[int, Any]:
    try:
        return dict(exif.get_ifd(tag))
    except Exception:  # noqa: BLE001 - a broken sub-IFD loses only its own tags
        return {}


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value[:100] or None


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _gps(gps: dict[int, Any]) -> tuple[float | None, float | None]:
    """Decimal degrees from the GPS IFD's degrees/minutes/seconds and N/S, E/W; (None, None) when absent or bogus."""
    try:
        lat = _degrees(gps[_GPS_LAT]) * (-1 if _text(gps.get(_GPS_LAT_REF)) == "S" else 1)
        lon = _degrees(gps[_GPS_LON]) * (-1 if _text(gps.get(_GPS_LON_REF)) == "W" else 1)
    except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError):
        return None, None
    if not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90 or abs(lon) > 180 or (lat == 0 and lon == 0):
        return None, None  # 0,0 is what some cameras write without a fix
    return round(lat, 7), round(lon, 7)


def _degrees(dms: Sequence[Any]) -> float:
    d, m, s = (float(x) for x in (list(dms) + [0, 0])[:3])
    return d + m / 60.0 + s / 3600.0


# ---- places -------------------------------------------------------------------------------------------------------

def with_places(infos: Sequence[PhotoInfo]) -> list[PhotoInfo]:
    """Fill country, state, county and city from each GPS position (nearest GeoNames place of 1000+ people, from the
    data `reverse_geocode` ships: no network). The data loads on first use (~0.5 s), only when a photo has GPS."""
    located = [i for i, info in enumerate(infos) if info.lat is not None and info.lon is not None]
    out = list(infos)
    if not located:
        return out
    import reverse_geocode  # here: its data loads only when some photo has a position

    found = reverse_geocode.search([(infos[i].lat, infos[i].lon) for i in located])
    for i, place in zip(located, found, strict=True):
        out[i] = replace(infos[i], country_code=place.get("country_code") or None,
                         country=place.get("country") or None, state=place.get("state") or None,
                         county=place.get("county") or None, city=place.get("city") or None)
    return out


def known_place(name: str) -> bool:
    """Whether the geocoder knows a city, county, state, country or country code of this name (any case)."""
    import reverse_geocode

    want = name.strip().casefold()
    data = reverse_geocode.GeocodeData()
    countries = getattr(data, "_countries", {})
    if any(want in (code.casefold(), str(n).casefold()) for code, n in countries.items()):
        return True
    locations = getattr(data, "_locations", None)
    if locations is None:  # another version of the package: no list to check against
        return True
    return any(want == str(loc.get(key, "")).casefold() for loc in locations for key in ("city", "county", "state"))
