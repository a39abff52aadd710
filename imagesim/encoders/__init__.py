"""Encoders turn decoded images into float32 vectors, one space each.

An encoder has ONE required method, `embed_images` (a batch of RGB images in, an (n, dim) float32 array of unit
vectors out): a pure batch function, so it maps onto Ray Data's `map_batches` (`imagesim index --ray` runs
`imagesim.indexer.worker.PhotoWorker`, which decodes and runs every space; `BatchEmbedder` is the one-space form).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image


class Encoder(ABC):
    """A model that embeds images into one vector space."""

    space: str = ""  # the store's name for the vectors this encoder makes
    dim: int = 0
    # Graph vectors per photo: an encoder with parts > 1 returns rows of `parts` unit vectors side by side, stored
    # under labels content_id * parts + i in a graph of dim // parts (the near-duplicate regions).
    parts: int = 1
    input_size: int | None = None  # JPEGs may be draft-decoded down to this many pixels a side

    @abstractmethod
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Return an (len(images), dim) float32 array of L2-normalised vectors."""

    def describe(self) -> dict[str, Any]:
        """What made these vectors (model, weights, preprocessing): vectors from different descriptions never mix."""
        return {"encoder": type(self).__name__, "dim": self.dim}

    def fingerprint(self) -> str:
        blob = json.dumps(self.describe(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def normalize(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows as float32; an all-zero row stays zero instead of becoming NaN."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


_REGISTRY: dict[str, Callable[..., Encoder]] = {}
# Cheap encoders that need no downloaded weights: `imagesim index` adds them beside the content model.
WEIGHT_FREE = ("style", "dup")


def register(kind: str) -> Callable[[Callable[..., Encoder]], Callable[..., Encoder]]:
    def add(factory: Callable[..., Encoder]) -> Callable[..., Encoder]:
        _REGISTRY[kind] = factory
        return factory

    return add


def create_encoder(kind: str, **kwargs: Any) -> Encoder:
    """Build a registered encoder by name ("clip", ...). Heavy imports happen here, not at import time."""
    if kind in ("clip", *WEIGHT_FREE) and kind not in _REGISTRY:
        import importlib

        importlib.import_module(f".{kind}", __name__)  # registers itself
    try:
        factory = _REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown encoder {kind!r}; known: {sorted(_REGISTRY)}") from None
    return factory(**kwargs)


class BatchEmbedder:
    """A Ray Data `map_batches` callable: {"path": [...]} in, the same batch plus "vector" and "error" out.

    Photos that fail to decode get a zero vector and their reason in "error"; the batch never fails for them.
    """

    def __init__(self, kind: str = "clip", **encoder_kwargs: Any) -> None:
        self.encoder = create_encoder(kind, **encoder_kwargs)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from .. import images as imgs
        from ..errors import ImageError

        decoded: list[Image.Image] = []
        keep: list[int] = []
        errors = [""] * len(batch["path"])
        for i, path in enumerate(batch["path"]):
            try:
                decoded.append(imgs.load_image(str(path), draft_size=self.encoder.input_size))
                keep.append(i)
            except ImageError as exc:
                errors[i] = exc.reason
        out = np.zeros((len(errors), self.encoder.dim), dtype=np.float32)
        if decoded:
            out[keep] = self.encoder.embed_images(decoded)
        return {**batch, "vector": out, "error": np.asarray(errors, dtype=object)}
