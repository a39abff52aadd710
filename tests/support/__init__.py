"""Helpers shared by the tests and the benchmarks: synthetic photos, fake face models, hostile files.

bench/ may import from here; nothing here imports from bench/ or from a test module."""
