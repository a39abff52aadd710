"""Photos made on the spot for tests: no files shipped, nothing downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]  # the repository
TINY_CONFIG = ROOT / "tests" / "data" / "tiny_clip.json"


def datasets_dir() -> Path:
    """The shared evaluation photos: $IMAGESIM_DATASETS, else ../shared/datasets beside the project; resolved, as the
    indexer stores real paths (a linked shared/ would otherwise name the same photos twice)."""
    return Path(os.environ.get("IMAGESIM_DATASETS", ROOT.parent / "shared" / "datasets")).resolve()


def photo(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A deterministic, distinct-looking RGB picture: smooth colour field plus a few shapes."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    base = rng.uniform(0, 255, 3)
    slope = rng.uniform(-2, 2, (2, 3))
    arr = base + x[..., None] * slope[0] * 96 / w + y[..., None] * slope[1] * 72 / h
    for _ in range(3):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(5, max(6, min(w, h) / 3))
        arr[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def write_photo(path: Path, seed: int, size: tuple[int, int] = (96, 72), **save_kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    photo(seed, size).save(path, **save_kwargs)
    return path


def write_gallery(folder: Path, n: int, start_seed: int = 0) -> list[Path]:
    return [write_photo(folder / f"photo_{i:03d}.jpg", start_seed + i, quality=92) for i in range(n)]
