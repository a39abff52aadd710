"""The content model's towers as exported beside the database: a one-shot query loads only the one it needs.

`imagesim index` writes, for the content model it has loaded anyway, `DB/towers/FINGERPRINT/`: the text tower and
the visual tower as separate ONNX graphs (pre-optimised by ONNX Runtime, weights in a side file ONNX Runtime
memory-maps), the tokenizer (`tokenizer.py`) and a manifest with the preprocessing and each file's size and CRC-32
(`export.py` writes it). Here they are read back with ONNX Runtime alone: no torch, no open_clip, and neither the
other tower nor random initialisation of either. bench/startup.py measures the gain (docs/benchmarks.md).

An export is used only for the fingerprint of the index's content vectors: one made for other weights is stale and
refused by its folder name and again by its manifest. Damage is refused before a vector is returned: sizes at open,
each file's CRC-32 (computed in a thread while ONNX Runtime loads) before the first vector. A refusal is a
`TowersUnusable` with one line; the gallery then loads the full model and rebuilds the export.
"""

from __future__ import annotations

import json
import os
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import first_line
from . import normalize
from .pixels import PixelPreprocess

TOWERS_DIR = "towers"  # inside the database folder
MANIFEST = "manifest.json"
FORMAT = 1  # of the manifest and file layout; another number is not read


class TowersUnusable(Exception):
    """The export cannot answer for this index (missing, stale, damaged): `str(exc)` is the one line why.
    `notice` False: nothing is wrong (this model has no exportable tower of that kind), no line to show."""

    def __init__(self, message: str, notice: bool = True) -> None:
        super().__init__(message)
        self.notice = notice


def export_dir(db_folder: str | os.PathLike[str], fingerprint: str) -> Path:
    return Path(db_folder) / TOWERS_DIR / fingerprint


def crc32_file(path: Path) -> int:
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            crc = zlib.crc32(chunk, crc)  # releases the GIL: runs beside ONNX Runtime's load
    return crc


def current(db_folder: str | os.PathLike[str], fingerprint: str) -> bool:
    """Whether a complete export for `fingerprint` is there (sizes checked, not checksums: cheap)."""
    try:
        read_manifest(export_dir(db_folder, fingerprint), fingerprint)
        return True
    except TowersUnusable:
        return False


class _Checksums(threading.Thread):
    """Each file's CRC-32 against the manifest's, in the background; `result()` waits and names a bad file."""

    def __init__(self, folder: Path, files: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.folder, self.files = folder, files
        self.bad: str | None = None

    def run(self) -> None:
        for name, crc in self.files.items():
            try:
                if crc32_file(self.folder / name) != crc:
                    self.bad = f"{name} does not match its checksum"
                    return
            except OSError as exc:
                self.bad = f"cannot read {name} ({exc.strerror})"
                return

    def result(self) -> str | None:
        self.join()
        return self.bad


def read_manifest(folder: Path, fingerprint: str) -> dict[str, Any]:
    """The manifest of the export in `folder`, checked to be for `fingerprint` and complete (sizes); else
    TowersUnusable."""
    if not folder.is_dir():
        others = [p.name for p in folder.parent.iterdir() if p.is_dir()] if folder.parent.is_dir() else []
        if any(not name.startswith(".") for name in others):
            raise TowersUnusable(f"the model export in {folder.parent} is stale (made for another model)")
        raise TowersUnusable(f"no model export in {folder.parent} yet")
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = {str(k): (int(v["size"]), int(v["crc32"])) for k, v in manifest["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TowersUnusable(f"the model export in {folder} is damaged (manifest: {type(exc).__name__})") from None
    if manifest.get("format") != FORMAT:
        raise TowersUnusable(f"the model export in {folder} is of another format ({manifest.get('format')!r})")
    if manifest.get("fingerprint") != fingerprint:
        raise TowersUnusable(f"the model export in {folder} is stale (made for model {manifest.get('fingerprint')})")
    for name, (size, _) in files.items():
        try:
            if (folder / name).stat().st_size != size:
                raise TowersUnusable(f"the model export in {folder} is damaged ({name} has the wrong size)")
        except OSError:
            raise TowersUnusable(f"the model export in {folder} is damaged ({name} is missing)") from None
    return manifest


class _Tower:
    """One exported graph run by ONNX Runtime; loads on first use, checks its files' checksums by the first answer."""

    def __init__(self, folder: Path, manifest: dict[str, Any], kind: str, threads: int | None) -> None:
        self.folder, self.kind, self.threads = folder, kind, threads
        self.spec: dict[str, Any] = manifest[kind]
        self.dim = int(manifest["dim"])
        self._files = {name: int(manifest["files"][name]["crc32"]) for name in self.spec["files"]}
        self._session: Any = None
        self._lock = threading.Lock()  # a page's threads may ask at once: one load

    def _run(self, batch: np.ndarray) -> np.ndarray:
        checks: _Checksums | None = None
        with self._lock:
            if self._session is None:
                checks = _Checksums(self.folder, self._files)
                checks.start()
                self._session = self._load()
            session = self._session
        try:
            (out,) = session.run(None, {"input": batch})
        except Exception as exc:  # noqa: BLE001 - a damaged graph fails in ONNX Runtime in many ways
            raise TowersUnusable(f"the model export in {self.folder} cannot run ({first_line(exc, 200)})") from None
        if checks is not None and (bad := checks.result()):
            self._session = None
            raise TowersUnusable(f"the model export in {self.folder} is damaged ({bad})")
        out = np.asarray(out, dtype=np.float32)
        if out.ndim != 2 or out.shape != (batch.shape[0], self.dim) or not np.isfinite(out).all():
            raise TowersUnusable(f"the model export in {self.folder} gave a {out.shape} answer, not {self.dim} wide")
        return normalize(out)

    def _load(self) -> Any:
        try:
            import onnxruntime as ort
        except ImportError:
            raise TowersUnusable("onnxruntime is not installed here (pip install onnxruntime)") from None

        options = ort.SessionOptions()
        # Optimised at export time: no passes here. No pre-packing of the weights either: for a one-shot query it
        # costs more at load (ViT-B-32's text tower: 0.25 s -> 0.07 s) than it saves on the one run (~0.04 s).
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.add_session_config_entry("session.disable_prepacking", "1")
        if self.threads:
            options.intra_op_num_threads = max(1, int(self.threads))
        options.log_severity_level = 3  # warnings would be lines on the user's terminal
        try:
            return ort.InferenceSession(str(self.folder / self.spec["graph"]), options,
                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - protobuf, file or graph errors: all mean "cannot use it"
            raise TowersUnusable(f"the model export in {self.folder} cannot load ({first_line(exc, 200)})") from None


class TextTower(_Tower):
    """Texts -> unit vectors, through the exported text tower and the torch-free tokenizer."""

    def __init__(self, folder: Path, manifest: dict[str, Any], threads: int | None = None) -> None:
        super().__init__(folder, manifest, "text", threads)
        self._tokenizer: Any = None

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        if self._tokenizer is None:
            from .tokenizer import ClipTokenizer

            try:
                self._tokenizer = ClipTokenizer.load(self.folder / self.spec["tokenizer"], self.spec["context_length"])
            except Exception as exc:  # noqa: BLE001 - a damaged file fails the JSON parser in many ways
                raise TowersUnusable(f"the model export in {self.folder} is damaged ({self.spec['tokenizer']}: "
                                     f"{first_line(exc, 120)})") from None
        return np.asarray(self._tokenizer(texts))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._run(self.tokenize(texts))


class VisualTower(_Tower):
    """RGB images -> unit vectors, preprocessed as the index was (the manifest's resize, crop and normalisation)."""

    def __init__(self, folder: Path, manifest: dict[str, Any], threads: int | None = None) -> None:
        super().__init__(folder, manifest, "visual", threads)
        self.preprocess = PixelPreprocess.from_json(self.spec["preprocess"])
        self.input_size = int(self.spec["input_size"])

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._run(self.preprocess.array(images))


def open_tower(db_folder: str | os.PathLike[str], fingerprint: str, kind: str,
               threads: int | None = None) -> TextTower | VisualTower:
    """The exported `kind` ("text" or "visual") tower for the content vectors of `fingerprint`; TowersUnusable
    (one line) when there is none that fits."""
    return open_tower_at(export_dir(db_folder, fingerprint), fingerprint, kind, threads)


def open_tower_at(folder: Path, fingerprint: str, kind: str, threads: int | None = None) -> TextTower | VisualTower:
    manifest = read_manifest(folder, fingerprint)
    if not manifest.get(kind):
        raise TowersUnusable(f"the model export in {folder} has no {kind} tower (this model's is not exportable)",
                             notice=False)
    try:
        return TextTower(folder, manifest, threads) if kind == "text" else VisualTower(folder, manifest, threads)
    except (KeyError, TypeError, ValueError) as exc:
        raise TowersUnusable(f"the model export in {folder} is damaged (manifest: {type(exc).__name__})") from None
