"""Faces: detection and descriptors (dlib), the face tables and their space, face queries, and people."""
