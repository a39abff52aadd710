"""Hostile and odd files, made on the spot: shared by the decode tests, the upload tests and the reliability bench."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.support.photos import photo


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height 1-bit pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def zlib_bomb_png(side: int) -> bytes:
    """A real, fully valid 1-bit PNG of side x side pixels (all zero): a few hundred KB that inflate to side^2/8."""
    row = b"\x00" + bytes((side + 7) // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def hostile_bytes() -> dict[str, bytes]:
    """name -> file content; names end in the extension a user (or attacker) would give them."""
    base = photo(1, (320, 240))
    jpeg = _save(base, "JPEG", quality=90)
    png = _save(base, "PNG")
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0))]
    eps = _save(base.convert("L").resize((16, 12)), "EPS") if "EPS" in Image.SAVE else b"%!PS-Adobe-3.0 EPSF-3.0\n"
    cases = {
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "corrupt.jpg": jpeg[:300] + bytes(len(jpeg) - 300),
        "truncated.png": png[: len(png) // 2],
        "corrupt.png": png[:200] + b"\x13" * 500 + png[700:],
        "zero-bytes.jpg": b"",
        "text.jpg": b"Dear diary, today I pretended to be a JPEG.\n" * 20,
        "bomb-100mpx.png": png_claiming(10_000, 10_000),
        "bomb-20000x20000.png": zlib_bomb_png(20_000),
        "eps-renamed.jpg": eps,
        "pdf-renamed.jpg": _save(base, "PDF"),
        "psd-renamed.jpg": b"8BPS\x00\x01" + b"\x00" * 6 + struct.pack(">HIIHH", 3, 240, 320, 8, 3) + b"\x00" * 64,
        "fits-renamed.jpg": (b"SIMPLE  =                    T" + b" " * 50 + b"BITPIX  =                    8"
                             + b" " * 49 + b"END" + b" " * 77).ljust(2880, b" ") + bytes(2880),
        "animated.gif": _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0),
        "animated.webp": _save(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=40),
        "cmyk.jpg": _save(base.convert("CMYK"), "JPEG"),
        "16bit.png": _save(Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257), "PNG"),
        "palette-alpha.png": _save(base.convert("P"), "PNG", transparency=0),
        "photo.heic": _save(base, "HEIF"),
        "photo.avif": _save(base, "AVIF"),
    }
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        cases[f"exif-orientation-{orientation}.jpg"] = _save(base, "JPEG", exif=exif.tobytes())
    return cases


def write_hostile_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, data in hostile_bytes().items():
        (folder / name).write_bytes(data)
        out[name] = folder / name
    return out


# What each file must give: "ok" (decoded) or a fragment of the refusal reason.
EXPECTED = {
    "truncated.jpg": "corrupt or truncated", "corrupt.jpg": "", "truncated.png": "corrupt or truncated",
    "corrupt.png": "", "zero-bytes.jpg": "empty file", "text.jpg": "not a supported image",
    "bomb-100mpx.png": "pixel", "bomb-20000x20000.png": "pixel", "eps-renamed.jpg": "not a supported image",
    "pdf-renamed.jpg": "not a supported image", "psd-renamed.jpg": "not a supported image",
    "fits-renamed.jpg": "not a supported image", "animated.gif": "ok", "animated.webp": "ok", "cmyk.jpg": "ok",
    "16bit.png": "ok", "palette-alpha.png": "ok", "photo.heic": "ok", "photo.avif": "ok",
    **{f"exif-orientation-{o}.jpg": "ok" for o in range(1, 9)},
}
