"""Shared fixtures: a tiny random-weight open_clip model saved as a user's checkpoint file, offline settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagesim.config import ModelSpec
from tests.support.photos import TINY_CONFIG, datasets_dir


@pytest.fixture(autouse=True)
def _offline_and_isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test touches the network, the user's database or the user's caches."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("IMAGESIM_DB", str(tmp_path / "default-db"))
    monkeypatch.setenv("IMAGESIM_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the tiny config with seeded random weights, saved the way a user would (torch.save)."""
    import torch

    from imagesim.encoders import create_encoder

    torch.manual_seed(0)
    # fp32: a bf16 encoder's image tower holds bf16 weights, and the checkpoint must be the same on every CPU
    enc = create_encoder("clip", spec=ModelSpec(name=str(TINY_CONFIG), pretrained=None), precision="fp32")
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    torch.save(enc.model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_spec(tiny_weights: Path) -> ModelSpec:
    return ModelSpec(name=str(TINY_CONFIG), pretrained=None, weights=str(tiny_weights))


@pytest.fixture(scope="session")
def tiny_encoder(tiny_spec: ModelSpec):
    from imagesim.encoders import create_encoder

    return create_encoder("clip", spec=tiny_spec)


@pytest.fixture(scope="session")
def datasets() -> Path:
    path = datasets_dir()
    if not path.is_dir():
        pytest.skip(f"evaluation photos not found at {path} (set IMAGESIM_DATASETS)")
    return path


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for the whole session (2 CPUs); its workers import this checkout. Yields its address."""
    import os

    ray = pytest.importorskip("ray")
    from tests.support.photos import ROOT

    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}})
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
