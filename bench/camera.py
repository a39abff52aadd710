"""Camera-sized test photos: Flowers-17 upscaled to ~12 MP JPEGs, made once into a cache folder outside the repo.

Upscaled web photos are too smooth to decode like camera files (fewer non-zero DCT coefficients), so mild sensor-like
noise is added: files land at 3-5 MB, like a phone's 12 MP JPEG, and decoding costs what a real photo costs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from tests.support.photos import datasets_dir

CAMERA_PIXELS = 12_000_000
CACHE = Path(os.environ.get("IMAGESIM_BENCH_CACHE", Path("~/.cache/imagesim-bench").expanduser()))


def flower_files(limit: int | None = None) -> list[Path]:
    """Flowers-17 files spread over all classes (round robin), so any prefix mixes every class."""
    root = datasets_dir() / "flowers17"
    if not root.is_dir():
        return []
    classes = [sorted(d.glob("*.jpg")) for d in sorted(root.iterdir()) if d.is_dir()]
    out: list[Path] = []
    for i in range(max((len(c) for c in classes), default=0)):
        out.extend(c[i] for c in classes if i < len(c))
    return out[:limit] if limit else out


def camera_photos(n: int, *, log: bool = True) -> list[Path]:
    """The first `n` camera-sized photos, generating the missing ones into CACHE/camera12mp/ (seconds each)."""
    folder = CACHE / "camera12mp"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    sources = flower_files(n)
    for i, src in enumerate(sources):
        dst = folder / f"{i:04d}_{src.parent.name}_{src.stem}.jpg"
        if not dst.is_file():
            if log and (i % 25 == 0):
                print(f"  making 12 MP photos in {folder}: {i}/{len(sources)}", flush=True)
            _upscale(src, dst, seed=i)
        out.append(dst)
    return out


def _upscale(src: Path, dst: Path, seed: int) -> None:
    with Image.open(src) as img:
        img = img.convert("RGB")
        scale = (CAMERA_PIXELS / (img.width * img.height)) ** 0.5
        big = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
    rng = np.random.default_rng(seed)
    arr = np.asarray(big, dtype=np.int16)
    arr = arr + rng.normal(0.0, 5.0, arr.shape).astype(np.int16)  # sensor-like noise
    noisy = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    tmp = dst.with_suffix(".tmp")
    noisy.save(tmp, format="JPEG", quality=90)  # 4:2:0, like most cameras
    os.replace(tmp, dst)
