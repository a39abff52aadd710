"""Queries: `Gallery` (a database opened for search) and its modes; results are `Match` objects."""

from __future__ import annotations

from .compose import Text
from .filters import Filters
from .gallery import Gallery
from .results import Match, Query

__all__ = ["Filters", "Gallery", "Match", "Query", "Text"]
