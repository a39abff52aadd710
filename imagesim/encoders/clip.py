"""The content encoder: an open_clip model (name or config JSON) with pretrained-tag or local-file weights."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import socket
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
from PIL import Image

from ..config import PRECISIONS, ModelSpec
from ..errors import ModelError, WeightsUnavailable, first_line
from . import Encoder, normalize, register
from .preprocess import FastPreprocess


def cpu_has_bf16() -> bool:
    """True when the CPU runs bf16 matrix maths natively (AVX512-BF16 or AMX-BF16), where bf16 pays."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(precision: str) -> str:
    """"auto" -> "bf16" where the CPU has native bf16, else "fp32"; anything unknown is a one-line error."""
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    return precision


def set_torch_threads(threads: int) -> None:
    """Size torch's process-wide intra-op thread pool: the application's decision (`Settings.torch_threads`)."""
    torch.set_num_threads(max(1, int(threads)))


@register("clip")
class ClipEncoder(Encoder):
    """CLIP image and text towers; vectors are float32 and unit length.

    `precision` "bf16" runs the image tower in bfloat16 (about 3x faster on AVX512-BF16 CPUs; cosine >= 0.999 to
    fp32, see docs/speed.md), "auto" picks it where the CPU supports it. Text stays fp32: it is one query at a time.
    """

    space = "content"

    def __init__(self, spec: ModelSpec | None = None, precision: str = "auto",
                 torch_threads: int | None = None, device: str = "cpu") -> None:
        """`torch_threads`, when given, sizes torch's process-wide pool (an application's choice, never a default).
        `device`: "cpu", or "cuda" where a GPU is there (a Ray actor given one); vectors come back on the CPU."""
        import open_clip

        self.precision = resolve_precision(precision)  # before the slow load: a typo fails at once
        self.spec = spec or ModelSpec()
        if device != "cpu" and not (device.startswith("cuda") and torch.cuda.is_available()):
            raise ModelError(f"no {device} device here: run on the CPU, or where a GPU is visible to torch")
        self.device = torch.device(device)
        if torch_threads:
            set_torch_threads(torch_threads)
        model_name, config_sha = _register_config(self.spec.name)
        kwargs: dict[str, Any] = {}
        checkpoint: str | None = None
        if self.spec.pretrained and not _is_config_path(self.spec.name):
            tag_cfg = open_clip.get_pretrained_cfg(model_name, self.spec.pretrained)
            if not tag_cfg:
                known = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
                raise ModelError(f"model {model_name} has no pretrained tag {self.spec.pretrained!r} (known: {known})")
            kwargs.update(_preprocess_kwargs(tag_cfg))
            if not self.spec.weights:
                checkpoint = _resolve_tag(self.spec, tag_cfg)
        if self.spec.weights:
            checkpoint = str(Path(self.spec.weights).expanduser())
            if not os.path.isfile(checkpoint):
                raise ModelError(f"weights file not found: {checkpoint}")
        try:
            with _quiet_logs():
                model, _, preprocess = open_clip.create_model_and_transforms(
                    model_name, pretrained=checkpoint, device="cpu", **kwargs
                )
        except Exception as exc:  # noqa: BLE001 - a user's file can fail torch.load/load_state_dict in many ways
            if self.spec.weights and checkpoint:  # say which model the file is for, not what torch tripped on
                from .checkpoints import describe_path, wrong_checkpoint

                line = wrong_checkpoint(checkpoint, model_name, describe_path(self.spec.name))
                if line:
                    raise ModelError(line) from None
            raise ModelError(f"cannot load {self.spec.describe()}: {first_line(exc, 300)}") from None
        model.eval()
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.model_name = model_name
        self.config_sha = config_sha
        self.weights_sha = _sha256_file(checkpoint) if self.spec.weights and checkpoint else None
        self.checkpoint = checkpoint  # the weights file read (None: random weights from a config)
        size = model.visual.image_size
        self.input_size = int(max(size) if isinstance(size, (tuple, list)) else size)
        model.to(self.device)
        with torch.inference_mode():
            probe = model.encode_image(torch.zeros(1, 3, self.input_size, self.input_size, device=self.device))
        self.dim = int(probe.shape[-1])
        self.dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        if self.dtype != torch.float32:
            model.visual.to(self.dtype)
        # None when open_clip's transform is not the standard one: then every photo goes through it as before
        self.fast_preprocess = FastPreprocess.from_transform(preprocess)

    def save_weights(self, path: str | os.PathLike[str]) -> int:
        """Write the model's weights as one state dict file (torch.save) that `--weights FILE` loads; atomic (a
        half-written file never takes the name). Returns its size in bytes. Build the encoder with precision
        "fp32" to save the weights exactly: a bf16 image tower holds rounded ones."""
        target = Path(path).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target.stat().st_size

    def export_towers(self, db_folder: str | os.PathLike[str], quiet: bool = False, force: bool = False) -> Path | None:
        """Keep this model's text and visual towers beside the database (DB/towers/FINGERPRINT, ONNX), so a one-shot
        query loads only the tower it needs, without torch (`towers.py`); None when it cannot (one line said).
        `force`: write it again even when it looks complete (a query found it damaged)."""
        from .export import export_towers

        return export_towers(self, db_folder, quiet=quiet, force=force)

    def describe(self) -> dict[str, Any]:
        return {
            "encoder": "clip",
            # a config file is known by its content, weights by their bytes: moving either changes nothing
            "model": self.spec.name if self.config_sha is None else f"config:{self.config_sha[:16]}",
            "pretrained": None if self.spec.weights else self.spec.pretrained,
            "weights_sha256": self.weights_sha,
            "preprocess": repr(self.preprocess),
            "dim": self.dim,
            # precision is left out on purpose: bf16 and fp32 vectors of one model agree to cosine >= 0.999, so
            # they mix in one index and switching --precision needs no re-embedding (docs/speed.md).
        }

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.fast_preprocess is not None:
            batch = self.fast_preprocess.batch(images, self.dtype)
        else:
            batch = torch.stack([self.preprocess(img) for img in images]).to(self.dtype)
        with torch.inference_mode():
            features = self.model.encode_image(batch.to(self.device))
        return normalize(features.float().cpu().numpy())

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens = self.tokenizer(list(texts))
        with torch.inference_mode():
            features = self.model.encode_text(tokens.to(self.device))
        return normalize(features.float().cpu().numpy())


def _is_config_path(name: str) -> bool:
    return name.endswith(".json") or os.sep in name or os.path.isfile(name)


def _register_config(name: str) -> tuple[str, str | None]:
    """Return the open_clip registry name for `name`, registering a config JSON file under a unique name."""
    import open_clip

    if not _is_config_path(name):
        if name not in open_clip.list_models():
            raise ModelError(f"unknown model {name!r}: give an open_clip model name or a path to a config JSON")
        return name, None
    path = Path(name).expanduser()
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read model config {path}: {first_line(exc, 300)}") from None
    if not isinstance(cfg, dict) or not all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ModelError(f"model config {path} needs the keys embed_dim, vision_cfg and text_cfg")
    canonical = json.dumps(cfg, sort_keys=True)
    sha = hashlib.sha256(canonical.encode()).hexdigest()
    registered = f"imagesim-{sha[:12]}"
    if registered not in open_clip.list_models():
        global _CONFIG_DIR
        if _CONFIG_DIR is None:  # one folder per process, removed when the process exits
            _CONFIG_DIR = tempfile.TemporaryDirectory(prefix="imagesim-cfg-")
        path = Path(_CONFIG_DIR.name) / f"{registered}.json"
        path.write_text(canonical)
        open_clip.add_model_config(path)
    CONFIG_SOURCES.setdefault(registered, str(Path(name).expanduser()))
    return registered, sha


_CONFIG_DIR: tempfile.TemporaryDirectory[str] | None = None
CONFIG_SOURCES: dict[str, str] = {}  # registered name -> the config file it came from (for messages)


def _preprocess_kwargs(tag_cfg: dict[str, Any]) -> dict[str, Any]:
    """The tag's preprocessing and activation, so a local copy of tagged weights is fed exactly as in training."""
    kwargs: dict[str, Any] = {}
    for key, arg in (("mean", "image_mean"), ("std", "image_std"), ("interpolation", "image_interpolation"),
                     ("resize_mode", "image_resize_mode")):
        if tag_cfg.get(key) is not None:
            kwargs[arg] = tag_cfg[key]
    if tag_cfg.get("quick_gelu"):
        kwargs["force_quick_gelu"] = True
    return kwargs


def _resolve_tag(spec: ModelSpec, tag_cfg: dict[str, Any]) -> str:
    """A local file for a pretrained tag: the cached copy, else a one-time download, else one clear error."""
    import open_clip

    cached = _cached_checkpoint(tag_cfg)
    if cached:
        return cached
    model = f"{spec.name} (pretrained {spec.pretrained!r})"
    if not _hub_reachable(tag_cfg):
        raise WeightsUnavailable(model)
    try:
        with _quiet_logs():
            return str(open_clip.download_pretrained(tag_cfg))
    except Exception as exc:  # noqa: BLE001 - hub clients raise many types; all mean "no weights"
        raise WeightsUnavailable(model, first_line(exc, 300)) from None


def _cached_checkpoint(tag_cfg: dict[str, Any]) -> str | None:
    """Look for the tag's weights in the hub cache (or open_clip's URL cache) without touching the network."""
    hub = tag_cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo_id, filename = os.path.split(hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename and filename.endswith((".bin", ".pth", ".pt")):
            names.insert(0, os.path.splitext(filename)[0] + ".safetensors")
        for fname in names:
            hit = try_to_load_from_cache(repo_id, fname)
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit
    url = tag_cfg.get("url", "")
    if url:
        target = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        if target.is_file():
            return str(target)
    return None


def _hub_reachable(tag_cfg: dict[str, Any], timeout: float = 3.0) -> bool:
    """A quick TCP check, so an offline machine fails in seconds instead of after minutes of client retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    if tag_cfg.get("hf_hub"):
        from huggingface_hub import constants

        host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    else:
        host = urlparse(tag_cfg.get("url", "")).hostname or ""
    if not host:
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """open_clip and the hub client log errors we turn into one line ourselves; keep them off the terminal."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch.load's weights_only notice
            yield
    finally:
        root.setLevel(level)

