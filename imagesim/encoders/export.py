"""Write the content model's towers beside the database (`imagesim index`, or a query that found none): the text
and visual towers as separate ONNX graphs that `towers.py` runs without torch.

Each tower is exported by torch's ONNX exporter, then pre-optimised once by ONNX Runtime and saved with its weights
in a side file (`.data`) that ONNX Runtime memory-maps: a query pays neither the optimisation nor a copy of the
weights. Before the export is kept, its vectors are checked against the torch model's on sample texts and pictures
(cosine >= 0.9999) and its tokens against open_clip's; an export that disagrees is not kept, and queries load the
full model as before. The folder appears whole (written under a temporary name, then renamed) or not at all.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from ..errors import first_line
from .towers import FORMAT, MANIFEST, TowersUnusable, crc32_file, current, export_dir, open_tower_at, read_manifest

if TYPE_CHECKING:
    from .clip import ClipEncoder

_TMP_AGE_S = 3600.0  # a temporary export folder this old belongs to a run that died (younger: one still writing)
MIN_COSINE = 0.9999  # export vs torch, on the sample inputs: below it the export is not kept
PROBE_TEXTS = ["a red flower", "A photo of TWO dogs on a beach, at sunset!", "", "l'été à Paris — 日本 🌸",
               " ".join(["word"] * 90)]  # the last one longer than any context: truncation


def export_towers(encoder: ClipEncoder, db_folder: str | os.PathLike[str], *, quiet: bool = False,
                  force: bool = False) -> Path | None:
    """Export `encoder`'s towers into DB/towers/FINGERPRINT (nothing to do when it is there); other fingerprints'
    exports are removed. Returns the folder, or None with one line on stderr when the model cannot be exported
    (never raises: queries then load the full model, as before)."""
    fingerprint = encoder.fingerprint()
    target = export_dir(db_folder, fingerprint)
    if not force and current(db_folder, fingerprint):
        return target
    start = time.perf_counter()
    parent = target.parent
    try:
        parent.mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{fingerprint}-", dir=parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # as a plain mkdir would (mkdtemp's folder is private)
    except OSError as exc:
        print(f"imagesim: cannot write the model export in {parent} ({exc.strerror}): queries load the full model",
              file=sys.stderr)
        return None
    try:
        manifest = _copy(fingerprint, tmp) or _write(encoder, tmp, fingerprint)
    except Exception as exc:  # noqa: BLE001 - exporters fail in many ways; the index itself must not
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"imagesim: could not export the model for fast queries ({first_line(exc, 200)}): queries load "
              f"the full model", file=sys.stderr)
        # a missing package is this machine's, not the model's (try again later); a good export another process
        # wrote meanwhile stays
        if not isinstance(exc, ImportError) and not current(db_folder, fingerprint):
            _unexportable(target, fingerprint, first_line(exc, 200))
        return None
    try:
        if target.exists():  # a damaged one: replaced
            shutil.rmtree(target)
        os.rename(tmp, target)
    except OSError:  # another process renamed its own export there first: keep that one
        shutil.rmtree(tmp, ignore_errors=True)
        return target if current(db_folder, fingerprint) else None
    for other in parent.iterdir():  # older models' exports, and temporary folders of runs that died long ago
        stale_tmp = other.name.startswith(".") and time.time() - other.stat().st_mtime > _TMP_AGE_S
        if other != target and other.is_dir() and (stale_tmp or not other.name.startswith(".")):
            shutil.rmtree(other, ignore_errors=True)
    _MADE[fingerprint] = target
    if not quiet:
        towers = " and ".join(k for k in ("text", "visual") if manifest.get(k))
        print(f"imagesim: exported the {towers} towers to {target} in {time.perf_counter() - start:.1f} s "
              f"(one-shot queries load them without torch)", file=sys.stderr)
    return target


# Exports this process made, by fingerprint: the same model exported again (`serve` indexing another database, a
# test suite's many small galleries) is a checked copy of the last one, not a second export.
_MADE: dict[str, Path] = {}


def _copy(fingerprint: str, folder: Path) -> dict[str, Any] | None:
    """Copy this process's last export of `fingerprint` into `folder`, checksums checked; None when there is none
    (or it is gone or damaged)."""
    source = _MADE.get(fingerprint)
    if source is None:
        return None
    try:
        manifest = read_manifest(source, fingerprint)
        if not manifest.get("text") and not manifest.get("visual"):
            return None
        for name, meta in manifest["files"].items():
            shutil.copyfile(source / name, folder / name)
            if crc32_file(folder / name) != meta["crc32"]:
                return None
        shutil.copyfile(source / MANIFEST, folder / MANIFEST)
    except (TowersUnusable, OSError):
        return None
    return manifest


def _unexportable(target: Path, fingerprint: str, reason: str) -> None:
    """A manifest with neither tower, so queries load the full model without retrying the export each time."""
    with contextlib.suppress(OSError):
        if target.exists():
            shutil.rmtree(target)
        target.mkdir()
        manifest = {"format": FORMAT, "fingerprint": fingerprint, "files": {}, "text": None, "visual": None,
                    "unexportable": reason}
        (target / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def _write(encoder: ClipEncoder, folder: Path, fingerprint: str) -> dict[str, Any]:
    """Both towers (each where it is exportable), the tokenizer and the manifest, into `folder`; checked."""
    model = encoder.model
    manifest: dict[str, Any] = {"format": FORMAT, "fingerprint": fingerprint, "dim": encoder.dim,
                                "model": encoder.describe().get("model"), "files": {}, "text": None, "visual": None}
    if _standard_tokenizer(encoder.tokenizer) is not None:
        from .tokenizer import build

        context = int(encoder.tokenizer.context_length)
        (folder / "tokenizer.json").write_text(build(_standard_tokenizer(encoder.tokenizer) or ""), encoding="utf-8")
        _onnx(_Text(model), torch.zeros(2, context, dtype=torch.long), folder, "text")
        manifest["text"] = {"graph": "text.onnx", "files": ["text.onnx", "text.data", "tokenizer.json"],
                            "tokenizer": "tokenizer.json", "context_length": context}
    if encoder.fast_preprocess is not None:
        size = int(encoder.input_size or 0)
        with _float_visual(model):
            _onnx(_Visual(model), torch.zeros(2, 3, size, size), folder, "visual")
        manifest["visual"] = {"graph": "visual.onnx", "files": ["visual.onnx", "visual.data"],
                              "input_size": size, "preprocess": encoder.fast_preprocess.to_json()}
    if not manifest["text"] and not manifest["visual"]:
        raise ValueError("neither tower has a standard tokenizer or preprocessing")
    names = sorted({n for k in ("text", "visual") if manifest[k] for n in manifest[k]["files"]})
    manifest["files"] = {n: {"size": (folder / n).stat().st_size, "crc32": crc32_file(folder / n)} for n in names}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    _check(encoder, folder, fingerprint, manifest)
    return manifest


class _Text(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens)


class _Visual(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)


@contextlib.contextmanager
def _float_visual(model: Any) -> Iterator[None]:
    """The image tower in float32 while it is exported (a bf16 one goes back to bf16 after: the round trip is exact).
    The export is float32 either way: ONNX Runtime's CPU kernels are float32."""
    dtype = next(model.visual.parameters()).dtype
    model.visual.float()
    try:
        yield
    finally:
        model.visual.to(dtype)


def _onnx(module: torch.nn.Module, example: torch.Tensor, folder: Path, name: str) -> None:
    """`module` -> folder/NAME.onnx (graph, pre-optimised by ONNX Runtime) + NAME.data (weights, memory-mapped)."""
    import onnxruntime as ort

    raw = folder / f".{name}.raw.onnx"
    module.eval()
    # grad on: under no_grad, torch's attention takes its fused inference path, which has no ONNX form
    with torch.inference_mode(False), torch.enable_grad(), _silenced():
        # TorchScript-based exporter: a plain graph of standard ops, seconds for ViT-B (the dynamo one is slower)
        torch.onnx.export(module, (example,), str(raw), input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=18,
                          dynamo=False)
    options = ort.SessionOptions()
    # EXTENDED, not ALL: ALL adds layout changes for this very CPU; the saved graph must run on any CPU
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(folder / f"{name}.onnx")
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", f"{name}.data")
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    options.log_severity_level = 3
    with _silenced():
        ort.InferenceSession(str(raw), options, providers=["CPUExecutionProvider"])
    raw.unlink()


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """The exporters' warnings and dumps (Python's and the C++ side's, on file descriptors 1 and 2) go nowhere:
    a failure becomes our one line instead."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as null, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _check(encoder: ClipEncoder, folder: Path, fingerprint: str, manifest: dict[str, Any]) -> None:
    """The export as a query will run it vs the torch model, on sample inputs; raises when they disagree."""
    if manifest["text"]:
        text = open_tower_at(folder, fingerprint, "text")
        ours = text.tokenize(PROBE_TEXTS)  # type: ignore[union-attr]
        theirs = encoder.tokenizer(PROBE_TEXTS).numpy()
        if ours.shape != theirs.shape or (ours != theirs).any():
            raise ValueError("the exported tokenizer's tokens differ from open_clip's")
        _agree("text", text.embed_texts(PROBE_TEXTS), encoder.embed_texts(PROBE_TEXTS))  # type: ignore[union-attr]
    if manifest["visual"]:
        visual = open_tower_at(folder, fingerprint, "visual")
        pictures = _probe_pictures()
        with _float_visual(encoder.model), torch.inference_mode():
            batch = encoder.fast_preprocess.batch(pictures)  # type: ignore[union-attr]
            ref = encoder.model.encode_image(batch).float().numpy()
        _agree("visual", visual.embed_images(pictures), ref)  # type: ignore[union-attr]


def _agree(kind: str, ours: np.ndarray, ref: np.ndarray) -> None:
    ref = ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
    cosine = float(np.min(np.sum(ours * ref, axis=1)))
    if not cosine >= MIN_COSINE:
        raise ValueError(f"the exported {kind} tower disagrees with the model (cosine {cosine:.5f})")


def _probe_pictures() -> list[Image.Image]:
    """A few pictures of different shapes: noise (every weight matters) and smooth gradients (like photos)."""
    rng = np.random.default_rng(0)
    noise = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in ((300, 200), (64, 96))]
    y, x = np.mgrid[0:180, 0:240]
    smooth = np.stack([x * 255 / 240, y * 255 / 180, (x + y) * 255 / 420], axis=-1).astype(np.uint8)
    return [*noise, Image.fromarray(smooth)]


def _standard_tokenizer(tokenizer: Any) -> str | None:
    """The vocabulary file of an open_clip tokenizer that `tokenizer.py` reproduces (the default BPE, "lower"
    cleaning, no reduction, no extra special tokens), else None."""
    from open_clip.tokenizer import SimpleTokenizer, _clean_lower, default_bpe

    if (type(tokenizer) is not SimpleTokenizer or tokenizer.clean_fn is not _clean_lower
            or tokenizer.reduction_fn is not None or tokenizer.vocab_size != 49408 or not tokenizer.context_length):
        return None
    return str(default_bpe())
