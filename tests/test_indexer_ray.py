"""`imagesim index --ray`: the same database as a local run, with the same guarantees (vectors, summary, failures,
faces, a dying worker, a killed driver). One local Ray serves the session (`ray_cluster` in conftest)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from imagesim.config import ModelSpec, Settings
from imagesim.encoders.dup import DupEncoder
from imagesim.indexer import run_index
from imagesim.search import Gallery
from tests.support.catalog import committed_paths
from tests.support.hostile import hostile_bytes
from tests.support.photos import ROOT, write_gallery

# imagesim.images makes this warning an error; pytest's own warning capture would undo that in this process only
pytestmark = pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")

HOSTILE = ("truncated.jpg", "text.jpg", "bomb-100mpx.png", "exif-orientation-6.jpg", "photo.heic", "cmyk.jpg")


def _gallery(folder: Path, n: int) -> None:
    write_gallery(folder, n)
    shutil.copy(folder / "photo_000.jpg", folder / "copy_of_000.jpg")  # byte-identical: encoded once
    data = hostile_bytes()
    for name in HOSTILE:
        (folder / "odd" / name).parent.mkdir(exist_ok=True)
        (folder / "odd" / name).write_bytes(data[name])


def _same_database(local: Path, remote: Path) -> None:
    """Every file, every space, every vector (cosine >= 0.9999) and every fingerprint the same."""
    with Gallery.open(local) as a, Gallery.open(remote) as b:
        ca, cb = a.store.catalog, b.store.catalog
        assert sorted(ca.files_under(ca.roots())) == sorted(cb.files_under(cb.roots()))
        assert ca.failed_files() == cb.failed_files()
        assert ca.counts() == cb.counts()
        assert {(s.name, s.fingerprint, s.dim) for s in ca.spaces()} == {(s.name, s.fingerprint, s.dim)
                                                                          for s in cb.spaces()}
        checked = 0
        for space in [s.name for s in ca.spaces() if s.name != "faces"]:
            parts = DupEncoder.parts if space == "dup" else 1  # dup: 21 region codes a photo
            assert len(a.store.index(space)) == len(b.store.index(space)) == ca.counts()["contents"] * parts
            for path in ca.files_under(ca.roots()):
                va, vb = a.store.stored_vector(path, space), b.store.stored_vector(path, space)
                assert (va is None) == (vb is None), (space, path)
                if va is not None and vb is not None:
                    # cosine (not the dot product: a dup vector of a flat photo is shorter than 1)
                    cos = float(va @ vb) / max(float(np.linalg.norm(va) * np.linalg.norm(vb)), 1e-12)
                    assert cos >= 0.9999 or np.array_equal(va, vb), (space, path)
                    checked += 1
        assert checked > 0


def test_importing_imagesim_never_imports_ray() -> None:
    code = ("import sys, imagesim, imagesim.cli, imagesim.indexer, imagesim.search, imagesim_ui.handlers\n"
            "from imagesim.cli.main import build_parser\n"
            "build_parser().parse_args(['index', 'x', '--ray'])\n"
            "assert 'ray' not in sys.modules, sorted(m for m in sys.modules if m.startswith('ray'))")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_pool_leaves_a_cpu_for_ray() -> None:
    from imagesim.errors import ImagesimError
    from imagesim.indexer.cluster import pool_size

    assert [pool_size(cpus, None) for cpus in (1, 2, 8, 64.0)] == [1, 1, 7, 63]
    assert pool_size(8, None, threads=2) == 3 and pool_size(2, None, threads=4) == 1
    assert pool_size(2, 2) == 2  # the user's word goes
    from imagesim.indexer.cluster import gpu_pool

    assert [gpu_pool(g, None, True) for g in (0, 0.5, 1, 4)] == [0, 0, 1, 4]  # one actor per whole GPU
    assert gpu_pool(4, 2, True) == 2 and gpu_pool(2, 8, True) == 2  # --ray-actors, never more actors than GPUs
    assert gpu_pool(4, None, False) == 0  # models shipped from here (already on the CPU) stay on CPUs
    with pytest.raises(ImagesimError, match="at least 1"):
        pool_size(8, 0)


def test_the_worker_checks_its_bytes_and_models(tmp_path: Path) -> None:
    """What each actor runs, without Ray: models rebuilt from a pickled recipe, bytes checked against the driver's
    hash, only the spaces asked for, faces packed for the trip back."""
    import hashlib
    import pickle

    from imagesim.encoders import create_encoder
    from imagesim.errors import ModelError
    from imagesim.faces.embed import DIM
    from imagesim.images import load_image
    from imagesim.indexer.worker import CHANGED, ModelRecipe, PhotoWorker, unpack_faces
    from tests.support.facefakes import fake_analyzer, write_face_photo
    from tests.support.photos import write_photo

    encoders = (create_encoder("style"), create_encoder("dup"))
    recipe = ModelRecipe(fingerprints=tuple((e.space, e.fingerprint()) for e in encoders), encoders=encoders,
                         analyzer=fake_analyzer())
    worker = PhotoWorker(pickle.loads(pickle.dumps(recipe)))  # as Ray sends it to an actor
    a, b = write_face_photo(tmp_path / "a.jpg", [0, 1]), write_photo(tmp_path / "b.jpg", 3)
    c = write_photo(tmp_path / "c.jpg", 4)
    shas = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b)] + ["0" * 64]
    out = worker({"path": np.array([str(a), str(b), str(c)], dtype=object), "sha256": np.array(shas),
                  "spaces": np.array(["style,dup", "dup", "style,dup"]), "faces": np.array([True, False, True])})
    assert list(out["error"]) == ["", "", CHANGED]
    assert out["vec_style"][0].any() and not out["vec_style"][1].any() and out["vec_dup"][1].any()
    assert np.allclose(out["vec_style"][0], encoders[0].embed_images([load_image(a, draft_size=worker.draft)])[0])
    found = unpack_faces(out["faces"][0], DIM)
    expected = fake_analyzer().faces([load_image(a, draft_size=worker.draft)])[0]
    assert len(found) == 2 and [(f.box, f.score) for f in found] == [(f.box, f.score) for f in expected]
    assert all(np.array_equal(f.encoding, e.encoding) for f, e in zip(found, expected, strict=True))
    assert out["faces"][1] == b"" and (out["width"][0], out["height"][0]) == (400, 300)
    wrong = ModelRecipe(fingerprints=(("style", "0"), ("dup", "0")), encoders=encoders)
    with pytest.raises(ModelError, match="same imagesim version"):
        PhotoWorker(wrong)


def test_ray_run_is_the_local_run(tmp_path: Path, tiny_spec: ModelSpec, ray_cluster: str) -> None:
    """The one fast Ray test: same summary, failures per file, vectors and fingerprints; a rerun has nothing to do."""
    from imagesim.indexer.cluster import RayOptions

    _gallery(tmp_path / "pics", 10)
    local = run_index(Settings.for_db(tmp_path / "local", model=tiny_spec, batch_size=4), [tmp_path / "pics"])
    remote = run_index(Settings.for_db(tmp_path / "ray", model=tiny_spec, batch_size=4), [tmp_path / "pics"],
                       ray=RayOptions(address=ray_cluster))
    assert remote.to_json() == local.to_json()
    assert remote.added == 10 + 1 + 3 and len(remote.failed) == 3  # the copy is a file of its own; 3 refusals
    assert {Path(p).name for p, _ in remote.failed} == {"truncated.jpg", "text.jpg", "bomb-100mpx.png"}
    _same_database(tmp_path / "local", tmp_path / "ray")
    again = run_index(Settings.for_db(tmp_path / "ray", model=tiny_spec, batch_size=4), [tmp_path / "pics"],
                      ray=RayOptions(address=ray_cluster))
    assert (again.unchanged, again.still_failing, again.added, again.encoded) == (14, 3, 0, 0)


@pytest.mark.slow
def test_cli_ray_is_the_local_cli(tmp_path: Path, tiny_spec: ModelSpec) -> None:
    """`imagesim index --ray` starts a Ray of its own for the run and prints the same JSON as a local run."""
    _gallery(tmp_path / "pics", 8)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = ["imagesim", "index", str(tmp_path / "pics"), "--model", tiny_spec.name, "--weights",
            str(tiny_spec.weights), "--batch-size", "4", "--json"]
    local = subprocess.run([*base, "--db", str(tmp_path / "local")], env=env, capture_output=True, text=True,
                           check=True)
    remote = subprocess.run([*base, "--db", str(tmp_path / "ray"), "--ray", "--ray-actors", "1"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert remote.returncode == 0, remote.stderr[-2000:]
    assert json.loads(remote.stdout) == json.loads(local.stdout)
    assert len(json.loads(remote.stdout)["failed"]) == 3
    _same_database(tmp_path / "local", tmp_path / "ray")


@pytest.mark.slow
def test_offline_on_ray(tmp_path: Path, ray_cluster: str) -> None:
    """No content weights here: the workers get the weight-free encoders and build no model; same database as a
    local offline run, and the same line saying content waits."""
    from imagesim.indexer.cluster import RayOptions

    write_gallery(tmp_path / "pics", 5)
    reports = {name: run_index(Settings.for_db(tmp_path / name, batch_size=2), [tmp_path / "pics"], ray=ray)
               for name, ray in (("local", None), ("ray", RayOptions(address=ray_cluster)))}
    assert reports["ray"].to_json() == reports["local"].to_json() and reports["ray"].added == 5
    assert reports["ray"].waiting_for_model
    with Gallery.open(tmp_path / "ray") as g:
        assert g.status()["spaces"] == ["dup", "style"]
    _same_database(tmp_path / "local", tmp_path / "ray")


@pytest.mark.slow
def test_faces_on_ray(tmp_path: Path, tiny_spec: ModelSpec, ray_cluster: str) -> None:
    """Faces on: the workers run the run's face models (here the fakes, pickled to them); same faces, same people."""
    from imagesim.faces.catalog import FaceCatalog
    from imagesim.indexer.cluster import RayOptions
    from tests.support.facefakes import fake_analyzer, write_face_photo

    for i, people in enumerate([[0], [0, 1], [1, 2], [2], [], [3, 0]]):
        write_face_photo(tmp_path / "pics" / f"f{i}.jpg", people, seed=i)
    write_gallery(tmp_path / "pics" / "plain", 3)
    reports = {}
    for name, ray in (("local", None), ("ray", RayOptions(address=ray_cluster))):
        reports[name] = run_index(Settings.for_db(tmp_path / name, model=tiny_spec, batch_size=2),
                                  [tmp_path / "pics"], faces=True, face_analyzer=fake_analyzer(), ray=ray)
    assert reports["ray"].to_json() == reports["local"].to_json() and (reports["ray"].faces or 0) >= 8
    _same_database(tmp_path / "local", tmp_path / "ray")

    def faces(db: Path) -> dict[str, list[tuple]]:
        with Gallery.open(db) as g:
            fc, cat = FaceCatalog(g.store.catalog), g.store.catalog
            paths = cat.paths_for(cat.content_hashes())
            descriptors = fc.descriptors(f.id for f in fc.all_faces())
            return {paths[f.content_id][0]: sorted((f.box, round(f.score, 4), descriptors[f.id].round(5).tobytes())
                                                   for f in fc.faces_of_content(f.content_id))
                    for f in fc.all_faces()}

    assert faces(tmp_path / "ray") == faces(tmp_path / "local")


@pytest.mark.slow
def test_a_worker_that_dies_is_retried(tmp_path: Path, ray_cluster: str) -> None:
    """A worker process killed mid-batch: its actor restarts, the batch runs again, no photo lost or doubled."""
    from imagesim.encoders import create_encoder
    from imagesim.indexer.cluster import RayOptions
    from tests.support.remote import ExitOnce

    _gallery(tmp_path / "pics", 12)
    flag = tmp_path / "died"
    local = run_index(Settings.for_db(tmp_path / "local", batch_size=3), [tmp_path / "pics"],
                      encoders=[create_encoder("style"), create_encoder("dup")])
    remote = run_index(Settings.for_db(tmp_path / "ray", batch_size=3), [tmp_path / "pics"],
                       encoders=[ExitOnce(create_encoder("style"), flag), create_encoder("dup")],
                       ray=RayOptions(address=ray_cluster))
    assert flag.exists() and int(flag.read_text()) != os.getpid()  # a worker did die
    assert remote.to_json() == local.to_json()
    _same_database(tmp_path / "local", tmp_path / "ray")


_DRIVER = """
import sys
from imagesim.config import Settings
from imagesim.encoders import create_encoder
from imagesim.indexer import run_index
from imagesim.indexer.cluster import RayOptions
from tests.support.remote import Slow
db, pics, address = sys.argv[1:]
try:
    encoders = [Slow(create_encoder("style")), create_encoder("dup")]
    run_index(Settings.for_db(db, batch_size=2), [pics], encoders=encoders, ray=RayOptions(address=address),
              progress=False)
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_driver_killed_then_resumed(tmp_path: Path, ray_cluster: str, sig: signal.Signals) -> None:
    """kill -9 (or Ctrl-C) of the driver mid-run: the cluster's work for it stops, what was committed stays, and
    the next run does the rest; the result is a clean run's database (no photo lost, none doubled)."""
    import ray

    from imagesim.encoders import create_encoder
    from imagesim.indexer.cluster import RayOptions

    photos = write_gallery(tmp_path / "pics", 40)
    db = tmp_path / "db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _DRIVER, str(db), str(tmp_path / "pics"), ray_cluster], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while len(committed_paths(db)) < 6 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    before = committed_paths(db)
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    assert 6 <= len(before) < 40, "the signal did not land in the middle of the run"
    if sig == signal.SIGINT:
        assert proc.returncode == 130
    deadline = time.monotonic() + 60  # the driver's actors are gone: the cluster's CPUs are free again
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ray.available_resources().get("CPU", 0) == 2
    before = committed_paths(db)
    encoders = [create_encoder("style"), create_encoder("dup")]
    report = run_index(Settings.for_db(db, batch_size=2), [tmp_path / "pics"], encoders=encoders,
                       ray=RayOptions(address=ray_cluster))
    assert report.added == 40 - len(before) and report.unchanged == len(before) and report.failed == []
    assert committed_paths(db) == {str(p) for p in photos}
    run_index(Settings.for_db(tmp_path / "clean", batch_size=2), [tmp_path / "pics"], encoders=encoders)
    _same_database(tmp_path / "clean", db)
