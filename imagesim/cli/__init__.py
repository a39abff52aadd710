"""The `imagesim` command: `main` parses and dispatches; each command imports what it needs (fast `--help`)."""

from __future__ import annotations

from .main import build_parser, main

__all__ = ["build_parser", "main"]
