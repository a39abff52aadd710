"""Faces: detection and descriptors (dlib), the face tables and their space, face queries, and people.

detect (where: boxes) -> embed (whose: descriptors) -> analyze (both, per photo batch); quality (how far a
face can be trusted); verdicts (what a distance means); cluster (faces -> people, pure); schema (the face tables
and the switch that turns faces on or off); catalog (every query on them); stage (the indexer's face step); search
(by face); people (names and corrections).
"""
