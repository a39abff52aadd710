"""imagesim: find photos by content, by look, and by the people in them, on your own machine."""

from __future__ import annotations

from .config import ModelSpec, Settings
from .errors import (
                     ImageError,
                     ImagesimError,
                     ModelError,
                     ModelMismatch,
                     NoFaceFound,
                     NoIndex,
                     StoreError,
                     WeightsUnavailable,
)
from .images import find_images, load_image
from .search import Gallery, Match  # also registers the face tables with the store (imagesim.faces.schema)

__all__ = ["Gallery", "ImageError", "ImagesimError", "Match", "ModelError", "ModelMismatch", "ModelSpec",
           "NoFaceFound", "NoIndex", "Settings", "StoreError", "WeightsUnavailable", "find_images", "load_image"]
__version__ = "0.1.0"
