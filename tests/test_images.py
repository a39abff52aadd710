"""Safe decoding: every tricky case is generated here, none shipped."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagesim.errors import ImageError
from imagesim.images import find_images, load_image
from tests.support.photos import photo


def _bytes(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "HEIF", "AVIF"])
def test_allowed_formats_decode_to_rgb(fmt: str) -> None:
    img = load_image(_bytes(photo(1), fmt))
    assert img.mode == "RGB" and img.size == (96, 72)
    assert img.info["original_size"] == (96, 72)


def test_reads_paths_and_file_objects(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    photo(2).save(path)
    assert load_image(path).size == load_image(str(path)).size == load_image(io.BytesIO(path.read_bytes())).size


def _oriented(orientation: int) -> bytes:
    """A 40x20 image with a red left half, stored with EXIF orientation `orientation`."""
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _bytes(img, "PNG", exif=exif.tobytes())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_all_exif_orientations_come_out_upright(orientation: int) -> None:
    img = load_image(_oriented(orientation))
    expected = (20, 40) if orientation >= 5 else (40, 20)
    assert img.size == expected
    assert img.info["original_size"] == expected
    # Where the stored left (red) half must end up once the photo is shown upright (EXIF 2.32, tag 0x0112).
    side = {1: "left", 2: "right", 3: "right", 4: "left", 5: "top", 6: "top", 7: "bottom", 8: "bottom"}[orientation]
    red = np.asarray(img)[..., 0] > 128
    h, w = red.shape
    halves = {"left": red[:, : w // 2], "right": red[:, w // 2:], "top": red[: h // 2], "bottom": red[h // 2:]}
    assert halves[side].all() and red.sum() == red.size // 2


def test_broken_exif_keeps_the_photo() -> None:
    data = _bytes(photo(3), "JPEG")
    # An APP1 segment that claims to be EXIF but holds garbage.
    bad = data[:2] + b"\xff\xe1\x00\x10Exif\x00\x00garbage!" + data[2:]
    assert load_image(bad).size == (96, 72)


def test_alpha_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    out = np.asarray(load_image(_bytes(rgba, "PNG")))
    assert tuple(out[1, 1]) == (255, 255, 255)
    assert tuple(out[0, 0]) == (0, 0, 255)


@pytest.mark.parametrize("mode", ["LA", "P", "PA", "L", "1", "CMYK", "I;16", "I", "F"])
def test_odd_modes_become_rgb(mode: str) -> None:
    base = photo(4)
    if mode in ("I;16", "I"):
        arr = (np.asarray(base.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
        img = Image.fromarray(arr) if mode == "I;16" else Image.fromarray(arr.astype(np.int32))
        fmt = "PNG" if mode == "I;16" else "TIFF"
    elif mode == "F":
        img, fmt = Image.fromarray(np.asarray(base.convert("L"), dtype=np.float32) / 255.0, "F"), "TIFF"
    elif mode == "P":
        img, fmt = base.convert("P"), "GIF"
    elif mode == "PA":
        img = base.convert("P")
        img.info["transparency"] = 0
        fmt = "PNG"
    elif mode == "CMYK":
        img, fmt = base.convert("CMYK"), "JPEG"
    else:
        img, fmt = base.convert(mode), "PNG"
    out = load_image(_bytes(img, fmt))
    assert out.mode == "RGB" and out.size == base.size
    grey = np.asarray(out.convert("L"), dtype=np.float64)
    if mode in ("I;16", "I", "F"):  # 16-bit and float are scaled into 8 bits, not clipped to white
        assert abs(grey.mean() - np.asarray(base.convert("L"), dtype=np.float64).mean()) < 3


def test_first_frame_of_an_animation() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    for fmt in ("GIF", "WEBP"):
        data = _bytes(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)
        r, g, b = load_image(data).getpixel((8, 8))
        assert r > 200 and g < 60 and b < 60, fmt


def test_jpeg_draft_decodes_near_the_asked_size() -> None:
    data = _bytes(photo(5, (2000, 1500)), "JPEG", quality=90)
    small = load_image(data, draft_size=224)
    assert min(small.size) >= 224 and small.size[0] <= 500  # 1/4 or 1/8 scale, not the full 2000 px
    assert small.info["original_size"] == (2000, 1500)
    assert load_image(data).size == (2000, 1500)


@pytest.mark.parametrize("fmt, kw", [("PNG", {}), ("WEBP", {"lossless": True})])
def test_big_non_jpegs_are_reduced_to_twice_the_draft_size(fmt: str, kw: dict) -> None:
    big = photo(6, (2400, 1000))
    data = _bytes(big, fmt, **kw)
    small = load_image(data, draft_size=224)
    assert small.size == (2400 // 2, 1000 // 2) and small.mode == "RGB"  # factor 1000 // 448 = 2
    assert small.info["original_size"] == (2400, 1000)
    assert np.abs(np.asarray(small, dtype=np.int16) - np.asarray(big.reduce(2), dtype=np.int16)).max() <= 2
    assert load_image(data, draft_size=600).size == (2400, 1000)  # under 2 x 600 on the short side: untouched
    assert load_image(data).size == (2400, 1000)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"hello, I am text pretending to be a photo\n", "not a supported image"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not a supported image"),
        (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", "not a supported image"),
        (b"8BPS\x00\x01" + b"\x00" * 40, "not a supported image"),  # PSD
        (b"SIMPLE  =                    T" + b" " * 50, "not a supported image"),  # FITS
    ],
)
def test_non_images_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError) as info:
        load_image(data, name="x.jpg")
    assert reason in info.value.reason
    assert str(info.value).startswith("x.jpg: ")


def test_truncated_and_corrupt_files_raise_image_error() -> None:
    jpeg = _bytes(photo(6, (400, 300)), "JPEG")
    png = _bytes(photo(6, (400, 300)), "PNG")
    for data in (jpeg[: len(jpeg) // 2], png[: len(png) // 2], png[:40], jpeg[:200]):
        with pytest.raises(ImageError):
            load_image(data)
    flipped = bytearray(png)
    flipped[len(png) // 2] ^= 0xFF  # a flipped byte inside the compressed data: PNG's CRC catches it
    with pytest.raises(ImageError):
        load_image(bytes(flipped))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (1-bit grey) with one tiny IDAT: enough for Image.open."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [10_000, 20_000])  # 100 Mpx (Pillow only warns) and 400 Mpx (Pillow errors)
def test_decompression_bombs_are_refused(side: int) -> None:
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(_png_header_only(side, side))
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # the limit is never disabled


def test_find_images_skips_hidden_symlinks_and_other_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.JPG").write_bytes(b"1")
    (tmp_path / "a" / "notes.txt").write_text("no")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "y.jpg").write_bytes(b"1")
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "z.png").write_bytes(b"1")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.jpg"
    outside.write_bytes(b"1")
    (tmp_path / "link.jpg").symlink_to(outside)
    (tmp_path / "loop").symlink_to(tmp_path)
    found = [p.relative_to(tmp_path).as_posix() for p in find_images([tmp_path], exclude=[tmp_path / "db"])]
    assert found == ["a/x.JPG"]
