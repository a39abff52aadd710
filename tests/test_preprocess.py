"""The batch preprocess must give open_clip's own transform's pixels, on any photo shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from imagesim.encoders.preprocess import FastPreprocess
from tests.support.photos import photo


def _open_clip_transform(size: int = 224, interpolation: str = "bicubic"):
    from open_clip.transform import image_transform

    return image_transform(size, is_train=False, interpolation=interpolation)


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (225, 900), (224, 224), (300, 300), (97, 61), (4000, 230)])
def test_batch_matches_open_clip_pixels(size: tuple[int, int]) -> None:
    transform = _open_clip_transform()
    fast = FastPreprocess.from_transform(transform)
    assert fast is not None
    imgs = [photo(seed, size) for seed in range(3)]
    ref = torch.stack([transform(im) for im in imgs])
    got = fast.batch(imgs)
    assert got.shape == ref.shape and got.dtype == torch.float32
    assert float((got - ref).abs().max()) < 1e-4


def test_bilinear_and_modes_other_than_rgb() -> None:
    transform = _open_clip_transform(64, "bilinear")
    fast = FastPreprocess.from_transform(transform)
    assert fast is not None and fast.resample == Image.Resampling.BILINEAR
    grey = photo(5, (120, 90)).convert("L")
    assert float((fast.batch([grey])[0] - transform(grey)).abs().max()) < 1e-4


def test_bf16_output_is_the_float_batch_rounded() -> None:
    fast = FastPreprocess.from_transform(_open_clip_transform(32))
    imgs = [photo(1, (50, 40))]
    assert torch.equal(fast.batch(imgs, torch.bfloat16), fast.batch(imgs).to(torch.bfloat16))


def test_unknown_transforms_fall_back_to_open_clip() -> None:
    import torchvision.transforms as T

    assert FastPreprocess.from_transform(T.Compose([T.Resize((224, 224)), T.ToTensor()])) is None
    assert FastPreprocess.from_transform(lambda im: im) is None
    squash = T.Compose([T.Resize((224, 224)), T.CenterCrop(224), T.ToTensor(), T.Normalize((0, 0, 0), (1, 1, 1))])
    assert FastPreprocess.from_transform(squash) is None  # a (h, w) resize squashes instead of keeping the aspect


@pytest.mark.slow
def test_fast_preprocess_embeds_real_photos_like_open_clip(datasets, tiny_encoder) -> None:
    from imagesim.images import load_image

    files = sorted((datasets / "flowers17").glob("*/*.jpg"))[::40]
    images = [load_image(f, draft_size=224) for f in files]
    fast = tiny_encoder.fast_preprocess
    assert fast is not None
    ref = torch.stack([tiny_encoder.preprocess(im) for im in images])
    assert float((fast.batch(images) - ref).abs().max()) < 1e-4
    assert np.isfinite(ref.numpy()).all()
