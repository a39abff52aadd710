"""`imagesim index --ray`: decode and encode on a Ray cluster; this process scans, hashes and commits.

The photos that need vectors go to Ray Data as rows of paths (`from_items`, not `read_images`: decoding stays in
imagesim's guarded loader), `map_batches` runs `PhotoWorker` on an actor pool (the models load once per actor),
and the results stream back to the one writer, which commits them through the same code as a local run. Ray is
imported only here, and only when `--ray` is used.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import default_threads
from ..errors import ImagesimError, first_line
from .pipeline import Item
from .worker import ModelRecipe, PhotoWorker, unpack_faces, vector_column

MAX_BLOCKS = 4096


@dataclass(frozen=True)
class RayOptions:
    """Where to run: `address` None starts a local Ray for this run (`num_cpus`, default all cores); "auto" joins
    the cluster named by RAY_ADDRESS (or the one running on this machine); anything else is a cluster address.
    `actors`: how many model actors (default: one per GPU when the cluster has GPUs, else the cluster's CPUs minus
    one, over `threads`, at least one); `threads`: CPUs each actor reserves and runs torch on (default 1)."""

    address: str | None = None
    actors: int | None = None
    num_cpus: int | None = None
    threads: int = 1


def pool_size(cpus: float, actors: int | None, threads: int = 1) -> int:
    """Actors for a cluster with `cpus` CPUs: leave one CPU for Ray Data's own tasks (a pool that takes every CPU
    can stall the pipeline, ray-project/ray#44687), unless the user says otherwise."""
    if actors is not None:
        if actors < 1:
            raise ImagesimError("--ray-actors must be at least 1")
        return actors
    return max(1, (int(cpus) - 1) // max(1, threads))


def gpu_pool(gpus: float, actors: int | None, can_use: bool) -> int:
    """Actors that each get one GPU: one per GPU in the cluster (or --ray-actors, capped at the GPUs); 0 when the
    cluster has none or the run's models are shipped as they are (already loaded on the CPU here)."""
    whole = int(gpus)
    if not can_use or whole < 1:
        return 0
    return min(whole, actors) if actors is not None else whole


class RayEncode:
    """The pipeline's `RemoteEncode` over Ray Data."""

    def __init__(self, options: RayOptions, recipe: ModelRecipe, batch_size: int, progress: bool = False) -> None:
        self.options = options
        # torch in an actor runs on the CPUs Ray reserved for it (Ray sets OMP_NUM_THREADS to them; asked explicitly
        # here so it holds whatever the worker's environment says)
        self.recipe = dataclasses.replace(recipe, torch_threads=max(1, options.threads))
        self.batch_size = max(1, batch_size)
        self.progress = progress

    def results(self, items: list[Item]) -> Iterator[list[Item]]:
        import ray

        started = _connect(self.options)
        try:
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = self.progress
            threads = max(1, self.options.threads)
            resources = ray.cluster_resources()
            on_gpus = gpu_pool(resources.get("GPU", 0), self.options.actors, can_use=not self.recipe.encoders)
            actors = on_gpus or pool_size(resources.get("CPU", 1), self.options.actors, threads)
            recipe = dataclasses.replace(self.recipe, device="cuda") if on_gpus else self.recipe
            gpu: dict[str, Any] = {"num_gpus": 1} if on_gpus else {}  # the content model on the actor's GPU
            by_sha = {it.sha256: it for it in items}
            rows = [{"path": it.path, "sha256": it.sha256, "spaces": ",".join(it.spaces), "faces": it.want_faces}
                    for it in items]
            # A block per batch, so results stream back (and are committed) batch by batch; capped so a huge run
            # does not become a huge number of tiny objects.
            blocks = min(MAX_BLOCKS, max(1, math.ceil(len(rows) / self.batch_size)))
            source = ray.data.from_items(rows, override_num_blocks=blocks)
            ds = source.map_batches(PhotoWorker, fn_constructor_args=(recipe,), batch_size=self.batch_size,
                                    batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
                                    num_cpus=threads, **gpu)
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                yield _to_items(batch, by_sha)
        except ray.exceptions.RayError as exc:
            raise ImagesimError(f"the Ray cluster failed: {str(exc).strip().splitlines()[-1][:300]}") from exc
        finally:
            if started:
                ray.shutdown()  # also stops this run's actors and tasks (Ctrl-C, errors)


def _connect(options: RayOptions) -> bool:
    """Connect to (or start) Ray; True when this call did it, so the run shuts it down again."""
    import ray

    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if options.address is None:
            ray.init(num_cpus=options.num_cpus or default_threads(), **quiet)
        else:
            ray.init(address=options.address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = options.address if options.address != "auto" else os.environ.get("RAY_ADDRESS", "auto")
        raise ImagesimError(f"cannot reach the Ray cluster at {where}: {first_line(exc, 300)} "
                            "(start one with `ray start --head`, or drop the address to use a local Ray)") from None
    return True


def _to_items(batch: dict[str, np.ndarray], by_sha: dict[str, Item]) -> list[Item]:
    """A result batch back into the pipeline's items (vectors, faces, size or error filled in)."""
    from ..faces.embed import DIM

    out = []
    for row, sha in enumerate(batch["sha256"]):
        it = by_sha[str(sha)]
        error = str(batch["error"][row])
        if error:
            it.error = error
        else:
            it.original_size = (int(batch["width"][row]), int(batch["height"][row]))
            it.vectors = {space: np.asarray(batch[vector_column(space)][row], dtype=np.float32)
                          for space in it.spaces}
            it.faces = unpack_faces(bytes(batch["faces"][row]), DIM) if it.want_faces else None
        out.append(it)
    return out
