"""An encoder whose model is built only when a photo needs it.

`imagesim index` over a tree where nothing changed is the scan alone: it must not import torch and open_clip and load
the weights (seconds and ~1 GB) only to find there is nothing to embed. The database already records what the model
makes (the space's fingerprint and description), so until a photo needs a vector this stands in for the model with
those; the first photo builds it, and a model that no longer makes those vectors (its files changed in place) is
refused then, before it embeds anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ModelMismatch
from . import Encoder


class Deferred(Encoder):
    """`build()` makes the real encoder, once, on first use; `fingerprint` and `description` are the recorded ones."""

    def __init__(self, space: str, dim: int, fingerprint: str, description: dict[str, Any],
                 build: Callable[[], Encoder]) -> None:
        self.space, self.dim = space, dim
        self._fingerprint, self._description, self._build = fingerprint, dict(description), build
        self._real: Encoder | None = None

    @property
    def built(self) -> bool:
        return self._real is not None

    def real(self) -> Encoder:
        if self._real is None:
            real = self._build()
            if real.fingerprint() != self._fingerprint:
                raise ModelMismatch(f"the {self.space} model's files changed since this database was indexed (it "
                                    "no longer makes the stored vectors): pass --rebuild to re-embed every photo")
            self._real = real
        return self._real

    @property
    def input_size(self) -> int | None:  # asked only by a run with photos to decode
        return self.real().input_size

    @input_size.setter
    def input_size(self, value: int | None) -> None:
        raise AttributeError("input_size is the model's")

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.real().embed_images(images)

    def describe(self) -> dict[str, Any]:
        return dict(self._description)

    def fingerprint(self) -> str:
        return self._fingerprint

    def export_towers(self, db_folder: str | os.PathLike[str], quiet: bool = False,
                      force: bool = False) -> Path | None:
        """The model's towers beside the database; the model is built for it only when they are not there yet."""
        from .towers import current, export_dir  # without torch

        if self._real is None and not force and current(db_folder, self._fingerprint):
            return export_dir(db_folder, self._fingerprint)
        export = getattr(self.real(), "export_towers", None)
        return export(db_folder, quiet=quiet, force=force) if callable(export) else None

    def __getattr__(self, name: str) -> Any:  # anything else (embed_texts, model, ...) is the real model's
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.real(), name)
