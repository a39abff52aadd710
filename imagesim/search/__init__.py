"""Queries: `Gallery` (a database opened for search) and its modes; results are `Match` objects."""

from __future__ import annotations

from .gallery import Gallery
from .results import Match, Query

__all__ = ["Gallery", "Match", "Query"]
