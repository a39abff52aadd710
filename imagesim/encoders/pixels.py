"""Photo -> model input pixels without torch: resize the short side, centre crop, normalise (as torchvision does).

The arithmetic of open_clip's standard transform, shared by the content encoder's batch path (`preprocess.py`, which
adds torch tensors) and the exported visual tower (`towers.py`, numpy only), so both feed a model the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

PIL_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
               "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}


@dataclass(frozen=True)
class PixelPreprocess:
    """Resize the short side to `resize`, centre-crop `crop` x `crop`, normalise with mean/std (as torchvision)."""

    resize: int
    crop: int
    resample: Image.Resampling
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def pixels(self, img: Image.Image) -> np.ndarray:
        """One RGB image -> (crop, crop, 3) uint8, resized and cropped exactly as torchvision does for PIL input."""
        if img.mode != "RGB":
            img = img.convert("RGB")
        w, h = img.size
        # torchvision's _compute_resized_output_size: short side -> resize, long side scaled and truncated
        if w <= h:
            nw, nh = self.resize, int(self.resize * h / w)
        else:
            nw, nh = int(self.resize * w / h), self.resize
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), self.resample)
        c = self.crop
        if nw < c or nh < c:  # torchvision pads with black before cropping
            padded = Image.new("RGB", (max(nw, c), max(nh, c)))
            padded.paste(img, ((max(nw, c) - nw) // 2, (max(nh, c) - nh) // 2))
            img, nw, nh = padded, max(nw, c), max(nh, c)
        left, top = int(round((nw - c) / 2.0)), int(round((nh - c) / 2.0))
        return np.asarray(img.crop((left, top, left + c, top + c)), dtype=np.uint8)

    def array(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB images -> a normalised (n, 3, crop, crop) float32 array; the same float32 arithmetic as
        `FastPreprocess.batch` (one multiply, one subtract, per element)."""
        x = np.stack([self.pixels(img) for img in images]).transpose(0, 3, 1, 2).astype(np.float32)
        scale = np.array([1.0 / (255.0 * s) for s in self.std], dtype=np.float32).reshape(1, 3, 1, 1)
        shift = np.array([m / s for m, s in zip(self.mean, self.std, strict=True)], dtype=np.float32)
        shift = shift.reshape(1, 3, 1, 1)
        return np.ascontiguousarray(x * scale - shift)

    def to_json(self) -> dict[str, Any]:
        """What the export's manifest keeps, so a query preprocesses exactly as the index did."""
        resample = next(name for name, f in PIL_FILTERS.items() if f == self.resample)
        return {"resize": self.resize, "crop": self.crop, "resample": resample, "mean": list(self.mean),
                "std": list(self.std)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PixelPreprocess:
        mean, std = [float(x) for x in data["mean"]], [float(x) for x in data["std"]]
        if len(mean) != 3 or len(std) != 3 or data["resample"] not in PIL_FILTERS:
            raise ValueError(f"not a preprocessing description: {data!r}")
        return cls(int(data["resize"]), int(data["crop"]), PIL_FILTERS[data["resample"]],
                   (mean[0], mean[1], mean[2]), (std[0], std[1], std[2]))
