"""flowers17 photos for the style and duplicate benchmarks, downscaled once and cached in the temp dir."""

from __future__ import annotations

import tempfile
from pathlib import Path

from PIL import Image

from bench.calibrate_style import CALIBRATION_PER_CLASS
from tests.support.photos import datasets_dir

THUMB_SIDE = 256
CACHE = Path(tempfile.gettempdir()) / "imagesim-bench-thumbs"


def flower_photos(include_calibration: bool = True) -> list[Path]:
    """All flowers17 JPEGs sorted by class then name; empty when the dataset is absent."""
    base = datasets_dir() / "flowers17"
    if not base.is_dir():
        return []
    out: list[Path] = []
    for cls in sorted(p for p in base.iterdir() if p.is_dir()):
        photos = sorted(cls.glob("*.jpg"))
        out += photos if include_calibration else photos[CALIBRATION_PER_CLASS:]
    return out


def thumbnail(path: Path, side: int = THUMB_SIDE) -> Image.Image:
    """The photo with its longer side at `side` (cached as PNG, so later runs skip the JPEG decode).

    Downscaled the way the style encoder downscales gallery photos (JPEG draft, then `style.prepare`), so the
    benchmark's photos have the sharpness indexed photos have.
    """
    cached = CACHE / f"{side}-prepared" / path.parent.name / (path.stem + ".png")
    if cached.is_file():
        with Image.open(cached) as img:
            return img.convert("RGB")
    from imagesim.encoders.style import prepare
    from imagesim.images import load_image

    img = load_image(path, draft_size=side)
    img = Image.fromarray((prepare(img, side) * 255 + 0.5).astype("uint8"), "RGB")
    cached.parent.mkdir(parents=True, exist_ok=True)
    img.save(cached)
    return img
