"""`imagesim index --ray` against the local path: photos/s on this machine, same photos, same run.

`python -m bench ray [--photos N] [--quick]`. ViT-B-32 with seeded random weights (saved once as a checkpoint, so
every worker loads the same model; nothing is downloaded) plus the style and dup spaces, as `imagesim index` runs.
Flowers-17 JPEGs when present, else synthetic photos. Runs, each into a fresh database:

- local: `run_index` in this process (torch on every core, reader threads decoding);
- ray, cold: `run_index(ray=RayOptions())`, which starts a local Ray for the run and stops it (what the CLI does);
- ray, warm: a local Ray already running (`ray.init(num_cpus=cores)`), with the default pool (cores - 1 actors of
  one CPU), with one actor per core, and with one actor running torch on every core (`--ray-threads`);
- ray, 2 simulated nodes: `ray.cluster_utils.Cluster` with two 1-CPU nodes on this machine, one actor per node.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import median, write_section
from imagesim.config import ModelSpec, Settings
from imagesim.indexer import run_index
from tests.support.photos import datasets_dir


def _photos(folder: Path, n: int) -> str:
    folder.mkdir(parents=True)
    flowers = sorted((datasets_dir() / "flowers17").glob("*/*.jpg"))
    if flowers:
        for p in flowers[:: max(1, len(flowers) // n)][:n]:
            shutil.copy(p, folder / f"{p.parent.name}_{p.name}")
        return "Flowers-17 JPEGs as they are (about 500 px)"
    from tests.support.photos import write_gallery

    write_gallery(folder, n)
    return "synthetic 96x72 JPEGs (Flowers-17 not found)"


def _weights(tmp: Path) -> ModelSpec:
    import torch

    from imagesim.encoders import create_encoder

    torch.manual_seed(0)
    enc = create_encoder("clip", spec=ModelSpec("ViT-B-32", None), precision="fp32")
    path = tmp / "vit-b-32-random.pt"
    torch.save(enc.model.state_dict(), path)
    return ModelSpec("ViT-B-32", None, str(path))


def _run(tmp: Path, name: str, spec: ModelSpec, pics: Path, threads: int, ray: Any = None) -> dict[str, Any]:
    settings = Settings.for_db(tmp / name, model=spec, threads=threads, torch_threads=threads, precision="fp32")
    t = time.perf_counter()
    report = run_index(settings, [pics], ray=ray, progress=False)
    seconds = time.perf_counter() - t
    assert not report.failed and report.added, report.to_json()
    out = {"photos": report.added, "seconds": seconds, "photos_per_s": report.added / seconds}
    print(f"{name}: {out['photos_per_s']:.2f} photos/s ({seconds:.1f} s)", flush=True)
    return out


def _agreement(tmp: Path, a: str, b: str) -> float:
    """The lowest cosine between the two databases' content vectors of the same photo."""
    import numpy as np

    from imagesim.search import Gallery

    worst = 1.0
    with Gallery.open(tmp / a) as ga, Gallery.open(tmp / b) as gb:
        for path in ga.store.catalog.files_under(ga.store.catalog.roots()):
            va, vb = ga.store.stored_vector(path, "content"), gb.store.stored_vector(path, "content")
            worst = min(worst, float(np.dot(va, vb)))  # type: ignore[arg-type]
    return worst


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench ray")
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        print("bench ray: ray is not installed (pip install 'imagesim[ray]'); skipped")
        return 0
    from imagesim.indexer.cluster import RayOptions

    cores = len(os.sched_getaffinity(0))
    n = 40 if args.quick else args.photos
    args.rounds = 1 if args.quick else max(1, args.rounds)
    tmp = Path(tempfile.mkdtemp(prefix="imagesim-bench-ray-"))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent.parent),
                                                os.environ.get("PYTHONPATH", "")])  # workers import this checkout
    try:
        source = _photos(tmp / "pics", n)
        spec = _weights(tmp)
        runs: dict[str, dict[str, Any]] = {}
        runs["ray_cold"] = _run(tmp, "ray_cold", spec, tmp / "pics", cores, RayOptions(num_cpus=cores))
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            _run(tmp, "ray_warmup", spec, tmp / "pics", cores, RayOptions())  # first actors, caches: not counted
            # Rounds in turn, so the shared machine's drift hits every configuration alike; medians are reported.
            configs = {"local": None, "ray_default": RayOptions(), "ray_per_core": RayOptions(actors=cores),
                       "ray_threads": RayOptions(actors=1, threads=cores)}
            rounds: dict[str, list[dict[str, Any]]] = {key: [] for key in configs}
            for r in range(args.rounds):
                for key, options in configs.items():
                    rounds[key].append(_run(tmp, f"{key}_{r}", spec, tmp / "pics", cores, options))
            for key, got in rounds.items():
                runs[key] = {"photos": n, "photos_per_s": median([g["photos_per_s"] for g in got]),
                             "seconds": median([g["seconds"] for g in got]), "rounds": got}
            # The driver's own ceiling: the same photos again in another folder are only read, hashed and linked
            shutil.copytree(tmp / "pics", tmp / "pics2")
            linked = run_index(Settings.for_db(tmp / "ray_default_0", model=spec, threads=cores, precision="fp32"),
                               [tmp / "pics", tmp / "pics2"], ray=RayOptions(), progress=False)
            assert linked.added == n and linked.encoded == 0, linked  # every copy linked, nothing encoded
            # index_gallery's own time: scan, stat, read, hash, link, commit, save (not the model load before it)
            runs["driver_only"] = {"photos": n, "seconds": linked.seconds, "photos_per_s": n / linked.seconds}
            print(f"driver only: {runs['driver_only']['photos_per_s']:.1f} photos/s", flush=True)
        finally:
            ray.shutdown()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        cluster.add_node(num_cpus=1)
        try:
            ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
            runs["ray_2_nodes"] = _run(tmp, "ray_2_nodes", spec, tmp / "pics", cores, RayOptions(actors=2))
        finally:
            ray.shutdown()
            cluster.shutdown()
        agreement = _agreement(tmp, "local_0", "ray_default_0")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    local = runs["local"]["photos_per_s"]
    per_actor = runs["ray_default"]["photos_per_s"] / max(1, cores - 1)
    two = runs["ray_per_core"]["photos_per_s"]
    best = min(("ray_default", "ray_per_core", "ray_threads"), key=lambda k: -runs[k]["photos_per_s"])
    best_overhead = 100 * (1 - runs[best]["photos_per_s"] / local)
    verdict = (f"met by the best warm configuration ({best_overhead:.0f} %)" if best_overhead <= 15 else
               f"not met: the best warm configuration is {best_overhead:.0f} % below the local rate")

    def row(label: str, key: str) -> str:
        r = runs[key]
        overhead = 100 * (1 - r["photos_per_s"] / local)
        return f"| {label} | {r['photos_per_s']:.2f} | {r['seconds']:.1f} | {overhead:.0f} % |"

    md = "\n".join([
        "## Indexing on Ray (`python -m bench ray`)",
        "",
        f"{n} {source}; ViT-B-32 (seeded random weights, fp32) plus the style and dup spaces, as `imagesim index` "
        f"runs; `run_index` end to end into a fresh database each time, all runs in one process. Local and warm Ray "
        f"runs: median of {args.rounds} round{'s' if args.rounds != 1 else ''}, the configurations taking turns; "
        "cold and 2-node runs: one each. "
        f"Target: Ray's overhead at most 15 %; {verdict}.",
        "",
        "| run | photos/s | seconds | lower rate than local |",
        "|---|---|---|---|",
        f"| local path ({cores} threads) | {local:.2f} | {runs['local']['seconds']:.1f} | — |",
        row(f"`--ray`, a local Ray started for the run ({max(1, cores - 1)} actor)", "ray_cold"),
        row(f"`--ray`, Ray already running, default pool ({max(1, cores - 1)} actor of 1 CPU)", "ray_default"),
        row(f"`--ray`, Ray already running, `--ray-actors {cores}` (1 CPU each)", "ray_per_core"),
        row(f"`--ray`, Ray already running, `--ray-actors 1 --ray-threads {cores}` (the whole machine)", "ray_threads"),
        row("`--ray`, 2 simulated nodes of 1 CPU (`ray.cluster_utils.Cluster`), `--ray-actors 2`", "ray_2_nodes"),
        "",
        f"Content vectors from Ray and from the local path agree to cosine {agreement:.5f} or better (same model "
        "file, same fingerprints).",
        "",
        f"**Reading these figures.** On {cores} cores the default pool leaves one core to Ray and the driver, and "
        "an actor's torch runs on the one CPU Ray gives it, while the local path runs torch on every core and "
        "decodes in other threads meanwhile: on one small machine the default pool is the slow choice, and "
        "`--ray-threads` (or more actors) recovers the difference. What remains is, we think (not measured "
        "apart), fixed costs per run (Ray Data's start, each actor building the model: a few seconds, which a long "
        "run amortises: with 200 photos the best setting was 32 % below the local rate, with 1000 photos 2 %) and "
        "the actor decoding a batch before encoding it, where the local path decodes the next photos in other "
        "threads while it encodes. The cold run adds starting and stopping "
        "Ray and loading the model in the actor (a few seconds per run). The simulated nodes share the same cores, "
        "so they show the scheduling cost of two nodes, not a speed-up. The machine is shared and noisy: the same "
        "configuration has varied by tens of percent between runs of this benchmark.",
        "",
        f"**Estimate for real nodes (not measured).** One actor on one CPU encoded {per_actor:.2f} photos/s here "
        "(the default pool's rate; its core was not shared with the driver). Actors share nothing but the driver, so "
        f"a node with C free cores should give up to about (C - 1) x {per_actor:.2f} photos/s on this CPU (model, "
        "photo size and precision as above), and a cluster the sum over its nodes, as long as the actors do not "
        "compete for cores with the driver or each other: here two actors on two cores beside the driver ran "
        f"at {two:.2f} photos/s, {two / runs['ray_default']['photos_per_s']:.2f}x one actor, so put the driver "
        "on a machine of its own or count its core. The driver's own work has a ceiling: scanning, reading, "
        "hashing and committing photos it did not have to encode ran at "
        f"{runs['driver_only']['photos_per_s']:.0f} photos/s here (the "
        "same photos again in a second folder, all linked), so a cluster past that rate waits on the driver and on "
        "the shared filesystem, which serves each new photo twice (driver hash, worker decode).",
    ])
    write_section("ray", md, {"photos": n, "source": source, "cores": cores, "runs": runs,
                              "per_actor_photos_per_s": per_actor, "min_cosine_local_vs_ray": agreement})
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
