"""Faces: detection and descriptors (dlib), the face tables and their space, face queries, and people.

detect (where: boxes) -> embed (whose: descriptors) -> analyze (both, per photo batch); quality (how far a
face can be trusted); verdicts (what a distance means); cluster (faces -> people, pure); store (the face tables:
schema and every query); stage (the indexer's face step); search (by face); people (names and corrections).
"""
