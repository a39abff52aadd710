"""`imagesim model save`: prepare the content model's weights on a machine that is online, for one that is not."""

from __future__ import annotations

import argparse
import shlex

from ..config import DEFAULT_MODEL, DEFAULT_PRETRAINED, ModelSpec
from .options import add_model_source, model_spec


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="prepare the content model's weights for a machine without internet")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = actions.add_parser("save", help="fetch the model's weights (once, through the Hugging Face hub) and save them "
                                         "as one file that `imagesim index --weights FILE` loads offline",
                           description=f"Default model: {DEFAULT_MODEL} / {DEFAULT_PRETRAINED}. Copy the file to "
                                       "the offline machine and run `imagesim index DIR --weights FILE` there (the "
                                       "line printed here says the exact flags).")
    s.add_argument("--out", required=True, metavar="FILE", help="where to write the weights (a torch.save state dict)")
    add_model_source(s)


def load_flags(spec: ModelSpec, out: str) -> str:
    """The flags that load the saved file as the same model: --pretrained too when the tag sets how photos are fed
    (mean, std, quick GELU) unless it is the default model's default tag, whose settings are open_clip's defaults."""
    flags = []
    if spec.name != DEFAULT_MODEL or (spec.pretrained or DEFAULT_PRETRAINED) != DEFAULT_PRETRAINED:
        flags += ["--model", spec.name]
        if spec.pretrained and not spec.weights:
            flags += ["--pretrained", spec.pretrained]
    return shlex.join([*flags, "--weights", out])


def cmd_model(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..encoders import create_encoder
    from ..errors import ImagesimError, WeightsUnavailable

    spec = model_spec(args) or ModelSpec()
    out = str(Path(args.out).expanduser().resolve())
    # fp32: the file holds the weights exactly as published (a bf16 image tower would hold rounded ones)
    try:
        encoder = create_encoder("clip", spec=spec, precision="fp32")
    except WeightsUnavailable as exc:
        raise ImagesimError(f"cannot fetch the weights of {exc.model}: this machine cannot reach the hub"
                            f"{exc.detail}; run `imagesim model save` on one that can and copy the file here") from None
    size = encoder.save_weights(out)  # type: ignore[attr-defined]
    print(f"imagesim: saved {spec.describe()} to {out} ({size / 1e6:.0f} MB); on the offline machine: "
          f"imagesim index DIR {load_flags(spec, out)}")
    return 0
