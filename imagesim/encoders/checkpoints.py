"""Which open_clip model a checkpoint file fits, for the one line a wrong `--weights FILE` gets.

A state dict is compared by its tensors' names and shapes with each model config's, built on torch's meta device:
shapes only, so no memory is spent, no weights are read and nothing is downloaded. Configs whose text tower comes
from Hugging Face are skipped (building one would fetch its config from the hub).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch

from ..errors import ModelError, first_line

Shapes = dict[str, tuple[int, ...]]


def checkpoint_shapes(path: str) -> Shapes:
    """Names and shapes of the tensors in a checkpoint (torch.save'd state dict or safetensors), read as open_clip
    reads it (memory-mapped where torch can: the shapes need no tensor data); ModelError when it is not one."""
    from open_clip.factory import load_state_dict

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                state: Any = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
                    state = state["state_dict"]
            except Exception:  # noqa: BLE001 - safetensors, a legacy (non-zip) file...: open_clip's own reader
                state = load_state_dict(path)
        shapes = {str(k): tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    except Exception as exc:  # noqa: BLE001 - a user's file fails torch.load in many ways; all mean "not a checkpoint"
        raise ModelError(f"cannot read {path} as a model checkpoint ({first_line(exc)}): --weights takes a state dict "
                         "saved with torch.save (e.g. by `imagesim model save`) or a .safetensors file") from None
    if shapes and all(k.startswith("module.") for k in shapes):  # saved from DataParallel, as open_clip strips it
        shapes = {k[7:]: v for k, v in shapes.items()}
    return shapes


def model_shapes(name: str) -> Shapes | None:
    """The state dict shapes of an open_clip model (a registered name), or None when it cannot be built here."""
    import open_clip

    from .clip import _quiet_logs

    try:
        with _quiet_logs(), torch.device("meta"):
            model = open_clip.create_model(name, pretrained=None, device="meta")
    except Exception:  # noqa: BLE001 - a config needing a missing package (timm variants...) fits nothing here
        return None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _tower(shapes: Shapes, prefix: str) -> dict[str, int]:
    """What a standard open_clip transformer tower in `shapes` says about its config (width, layers, ...)."""
    out: dict[str, int] = {}
    blocks = {k[len(prefix):].split(".")[2] for k in shapes if k.startswith(f"{prefix}transformer.resblocks.")}
    if blocks:
        out["layers"] = len(blocks)
    conv = shapes.get(f"{prefix}conv1.weight")
    if conv is not None and len(conv) == 4 and f"{prefix}class_embedding" in shapes:  # a ViT: (width, 3, patch, patch)
        out["width"], out["patch_size"] = conv[0], conv[2]
    tokens = shapes.get(f"{prefix}token_embedding.weight")
    if tokens is not None and len(tokens) == 2:
        out["vocab_size"], out["width"] = tokens  # (context length is not compared: CoCa adds a token to it)
    return out


# open_clip's defaults (CLIPVisionCfg, CLIPTextCfg), for configs that leave a field out
_VISION = {"layers": 12, "width": 768, "patch_size": 16}
_TEXT = {"layers": 12, "width": 512, "vocab_size": 49408}


def _plausible(cfg: dict[str, Any], shapes: Shapes) -> bool:
    """A cheap first look from the config alone: the towers' sizes read off the file's tensor names and shapes
    must be the config's (a config no standard tower describes is left to the full comparison)."""
    text, vision = cfg.get("text_cfg", {}), cfg.get("vision_cfg", {})
    if text.get("hf_model_name"):
        return False  # building it would fetch its config from the hub
    dims = {d for shape in shapes.values() for d in shape}
    if cfg.get("embed_dim") not in dims:
        return False
    seen_vision = _tower(shapes, "visual.")
    if "width" in seen_vision and (vision.get("timm_model_name") or not isinstance(vision.get("layers", 12), int)):
        return False  # the file holds an open_clip ViT, the config another kind of image tower
    seen_text = _tower(shapes, "") or _tower(shapes, "text.")
    for seen, wanted, defaults in ((seen_vision, vision, _VISION), (seen_text, text, _TEXT)):
        if any(wanted.get(key, defaults[key]) != value for key, value in seen.items()):
            return False
    return True


def fitting_models(shapes: Shapes) -> list[str]:
    """The models whose state dict has exactly these names and shapes (quick-GELU twins included): open_clip's
    names, and config files this process loaded, by their path."""
    import open_clip
    from open_clip.factory import get_model_config

    from .clip import CONFIG_SOURCES

    out = []
    for name in open_clip.list_models():
        cfg = get_model_config(name)
        if cfg and _plausible(cfg, shapes) and model_shapes(name) == shapes:
            out.append(CONFIG_SOURCES.get(name, name))
    return out


def wrong_checkpoint(path: str, model_name: str, asked: str) -> str | None:
    """The line to show when `path` does not fit `model_name` (shown to the user as `asked`): which model it fits,
    or that it fits none; None when it does fit (the load failed for another reason)."""
    import open_clip

    shapes = checkpoint_shapes(path)
    if model_shapes(model_name) == shapes:
        return None
    fits = fitting_models(shapes)
    if fits:
        return (f"{path} holds weights for {' / '.join(fits[:3])}, not for {asked}: pass --model {fits[0]} "
                f"--weights {path}")
    known = sum(not n.startswith("imagesim-") for n in open_clip.list_models())
    return (f"{path} does not fit {asked} nor any of open_clip's {known} model configs: pass --model CONFIG.json "
            f"(the config it was trained with) --weights {path}")


def describe_path(name: str) -> str:
    """A model as the user named it: a config file by its file name."""
    return os.path.basename(name) if name.endswith(".json") or os.sep in name else name
