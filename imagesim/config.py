"""Settings: frozen dataclasses built from CLI flags and the environment; no global instance."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# ViT-B-32 trained on DataComp-XL: 69.2 % ImageNet zero-shot at 4.4 image GFLOPs (open_clip's results table),
# the best ViT-B/32 at 224 px; 224 px keeps it as cheap as the original OpenAI ViT-B-32 (63.3 %).
DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "datacomp_xl_s13b_b90k"
PRECISIONS = ("auto", "fp32", "bf16")  # arithmetic of the image model (Settings.precision)
# Every default is declared here once; the modules that use one take it as an argument.
BATCH_SIZE = 32
# Collections up to this size are searched exactly: up to ~5k vectors brute force is as fast as HNSW with recall
# 1.0; above it HNSW pulls ahead (20k: exact 0.64 ms vs HNSW 0.28 ms p50). See docs/speed.md.
EXACT_SEARCH_MAX = 5_000
# Commit to the catalog at least this often (seconds) so an interrupted run loses little work.
COMMIT_EVERY_S = 10.0


def default_threads() -> int:
    """Threads for torch and decoding: IMAGESIM_THREADS, else every core the process may use."""
    env = os.environ.get("IMAGESIM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ModelSpec:
    """Which open_clip model makes the content vectors.

    `name` is an open_clip model name or a path to a model config JSON; `pretrained` an open_clip pretrained
    tag (downloaded once into the hub cache); `weights` a local checkpoint that takes precedence over the tag.
    """

    name: str = DEFAULT_MODEL
    pretrained: str | None = DEFAULT_PRETRAINED
    weights: str | None = None

    def describe(self) -> str:
        source = self.weights or self.pretrained or "random weights"
        return f"{self.name} ({source})"


@dataclass(frozen=True)
class Settings:
    """Everything a run needs besides its inputs."""

    db: Path
    model: ModelSpec | None = None  # None: use the model the database was built with
    threads: int = field(default_factory=default_threads)
    batch_size: int = BATCH_SIZE
    # "auto": bf16 image tower where the CPU has AVX512-BF16/AMX (about 3x faster, cosine >= 0.999 to fp32), else fp32
    precision: str = "auto"
    exact_search_max: int = EXACT_SEARCH_MAX
    commit_every_s: float = COMMIT_EVERY_S
    # torch's thread pool is process-wide: the application sizes it (the `imagesim` command and `serve` pass their
    # --threads here, applied when the model loads); None, the library default, leaves it as the process set it.
    torch_threads: int | None = None

    @staticmethod
    def for_db(db: str | os.PathLike[str], **kwargs: object) -> Settings:
        return Settings(db=Path(db).expanduser().resolve(), **kwargs)  # type: ignore[arg-type]
