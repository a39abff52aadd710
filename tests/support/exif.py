"""Photos with real EXIF written by Pillow: date taken (with or without offset), camera, GPS position, orientation."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image


def exif_photo(path: Path, *, taken: str | None = None, offset: str | None = None, make: str | None = None,
               model: str | None = None, gps: tuple[float, float] | None = None, orientation: int | None = None,
               seed: int = 0, size: tuple[int, int] = (96, 64), fmt: str = "JPEG",
               mtime: float | None = None) -> Path:
    """Write a small photo of random blobs with the given EXIF tags (`taken` as EXIF writes it, "2019:07:14 18:03:00";
    `gps` as signed decimal degrees) and return its path; `mtime` sets the file's modification time."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    exif = Image.Exif()
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    if orientation:
        exif[0x0112] = orientation
    if taken or offset:
        sub = exif.get_ifd(0x8769)
        if taken:
            sub[0x9003] = taken
        if offset:
            sub[0x9011] = offset
    if gps:
        g = exif.get_ifd(0x8825)
        lat, lon = gps
        g[1], g[2] = ("N" if lat >= 0 else "S"), _dms(abs(lat))
        g[3], g[4] = ("E" if lon >= 0 else "W"), _dms(abs(lon))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, exif=exif.tobytes()) if len(exif) or taken or gps else img.save(path, fmt)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def _dms(value: float) -> tuple[float, float, float]:
    d = int(value)
    m = int((value - d) * 60)
    return float(d), float(m), round((value - d - m / 60) * 3600, 4)
