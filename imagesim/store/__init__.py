"""The database folder: the SQLite catalog (truth) and one hnswlib graph per space (a cache of stored vectors)."""

from __future__ import annotations

from .catalog import CATALOG_NAME, MODEL_META_KEY, Catalog
from .folder import Store

__all__ = ["CATALOG_NAME", "MODEL_META_KEY", "Catalog", "Store"]
