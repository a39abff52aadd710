"""An encoder wrapper that counts the photos it embeds: tests assert how much work a run did, never how long."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from imagesim.encoders import Encoder


class Counting(Encoder):
    """Wraps an encoder; `calls` counts the photos it was asked to embed (fingerprint and vectors are the inner's)."""

    def __init__(self, inner: Encoder) -> None:
        self.inner, self.calls = inner, 0
        self.space, self.dim, self.input_size, self.parts = inner.space, inner.dim, inner.input_size, inner.parts

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        self.calls += len(images)
        return self.inner.embed_images(images)

    def describe(self) -> dict:
        return self.inner.describe()

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def __getattr__(self, name: str) -> object:  # embed_texts, model, ...: the inner encoder's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
