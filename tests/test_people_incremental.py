"""People that update incrementally: work bounded by the new faces, corrections kept, agreement with a full
re-cluster."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imagesim.faces.catalog as face_catalog
from imagesim.cli.main import main
from imagesim.encoders import Encoder
from imagesim.faces.analyze import Face
from imagesim.faces.catalog import face_rows
from imagesim.faces.incremental import K_UPDATE, people_state
from imagesim.faces.people import People
from imagesim.store import Store
from tests.support.facefakes import fake_analyzer, index_with_fakes, write_face_photo
from tests.support.facevectors import add_faces, identities, open_face_store, pairwise


class Spy:
    """Counts graph queries (rows of query vectors) and face rows read (rows and descriptors)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, store: Store) -> None:
        self.queries = self.rows = self.descriptors = 0
        search, rows, descs = store.search, face_catalog.face_rows, face_catalog.descriptors

        def counted_search(space: str, queries: np.ndarray, k: int, **kwargs: Any) -> Any:
            self.queries += len(np.atleast_2d(queries))
            return search(space, queries, k, **kwargs)

        def counted_rows(*args: Any, **kwargs: Any) -> Any:
            out = rows(*args, **kwargs)
            self.rows += len(out)
            return out

        def counted_descs(*args: Any, **kwargs: Any) -> Any:
            out = descs(*args, **kwargs)
            self.descriptors += len(out)
            return out

        monkeypatch.setattr(store, "search", counted_search)
        monkeypatch.setattr(face_catalog, "face_rows", counted_rows)
        monkeypatch.setattr(face_catalog, "descriptors", counted_descs)


@pytest.fixture()
def synthetic(tmp_path: Path) -> Iterator[tuple[Store, Any, Any]]:
    store, stage = open_face_store(str(tmp_path / "db"), fake_analyzer())
    try:
        yield store, stage, identities(400, seed=3, family=1)  # no relatives: every mistake is the update's
    finally:
        store.close()


@pytest.mark.parametrize("gallery", [600, 2400])
def test_update_work_is_bounded_by_the_new_faces(synthetic: tuple[Store, Any, Any], gallery: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    store, stage, ids = synthetic
    rng = np.random.default_rng(gallery)
    who = rng.integers(0, 300, gallery)  # identities 300.. appear only among the new faces
    add_faces(store, stage, ids.faces(who), who.tolist(), rng)
    people = People(store)
    assert people.update().mode == "full"  # nothing clustered yet: the incremental state asks for a full pass
    new_who = np.concatenate([rng.integers(0, 300, 30), np.repeat([300, 301], 5)])
    rng.shuffle(new_who)
    added = add_faces(store, stage, ids.faces(new_who), new_who.tolist(), rng)
    spy = Spy(monkeypatch, store)
    done = people.update()
    assert done.mode == "incremental" and done.faces == len(added) == 40
    assert spy.queries == len(added)  # one graph query per new face, whatever the gallery's size
    assert spy.rows <= len(added) * (K_UPDATE + 1) and spy.descriptors <= len(added) * (K_UPDATE + 1)
    rows = {r.id: r.person_id for r in face_rows(store.catalog)}
    truth = who.tolist() + new_who.tolist()
    precision, recall = pairwise(truth, [rows[i] for i in sorted(rows)])
    assert precision == 1.0 and recall > 0.95
    by_person: dict[int | None, set[int]] = {}
    for fid, w in zip(added, new_who.tolist(), strict=True):
        by_person.setdefault(rows[fid], set()).add(w)
    assert all(len(v) == 1 for p, v in by_person.items() if p is not None)  # no new face joined a stranger
    assert {300} in by_person.values() and {301} in by_person.values()  # new people formed among new faces
    assert people_state(people.tables) == {"max_id": max(added), "faces": gallery + 40}
    spy.rows = 0
    assert people.recluster().mode == "full" and spy.rows == gallery + 40  # the full pass reads them all (as counted)


def test_update_never_joins_two_faces_of_one_photo_or_a_refused_person(synthetic: tuple[Store, Any, Any]) -> None:
    store, stage, ids = synthetic
    rng = np.random.default_rng(1)
    add_faces(store, stage, ids.faces([0] * 6), [0] * 6, rng)  # six photos of one person
    people = People(store)
    people.cluster()
    [ada] = people.list()
    # a new photo with two faces both close to Ada (a look-alike): only one may join her
    twin = ids.faces([0, 0])
    catalog = store.catalog
    with catalog.transaction():
        cid = catalog.add_content("f" * 64, 100, 100)
        fids, vecs = stage.put(catalog, cid, [Face((0, 0, 10, 10), 1.0, twin[0]), Face((20, 0, 30, 10), 1.0, twin[1])])
    store.index(stage.space).add(np.asarray(fids), vecs)
    people.update()
    assert sorted(r.person_id is not None for r in people.tables.faces(fids)) == [False, True]
    [joined] = [f for f in fids if people.tables.faces([f])[0].person_id is not None]
    people.move([joined], None)  # "not Ada"
    people.recluster()
    after = {r.id: r.person_id for r in people.tables.faces(fids)}
    assert after[joined] != ada.id and sum(p == ada.id for p in after.values()) <= 1


def _index(db: Path, photos: Path, encoder: Encoder) -> None:
    index_with_fakes(db, [photos], [encoder])  # index + People.update(), as `imagesim index` does


def _face_of(people: People, store: Store, photo: Path, index: int = 0) -> int:
    row = store.catalog.file(str(photo))
    assert row is not None
    return sorted(people.tables.faces_of_content(row.content_id), key=lambda f: f.box[0])[index].id


def test_incremental_people_keep_every_correction(tmp_path: Path, tiny_encoder: Encoder) -> None:
    photos, db = tmp_path / "photos", tmp_path / "db"
    for i, who in enumerate([[0], [0, 1], [1], [0], [1], [2], [2], [3], [3]]):
        write_face_photo(photos / f"p{i}.jpg", who, seed=i)
    _index(db, photos, tiny_encoder)
    store = Store.open(db)
    try:
        people = People(store)
        face = {n: _face_of(people, store, photos / f"p{n}.jpg") for n in range(9)}
        ada = people.rename(people.tables.faces([face[0]])[0].person_id, "Ada")
        bob = people.tables.faces([face[2]])[0].person_id
        people.move([face[4]], None)  # not Bob
        people.move([face[5]], "Ada")  # that colour-2 face is Ada, says the user
        cy = people.tables.faces([face[6]])[0].person_id
        dee = people.tables.faces([face[7]])[0].person_id
        people.merge(cy, [dee])  # persons 2 and 3 are one, says the user
        split = people.split(ada.id, [face[3]])  # and p3's face is someone else
        before = {r.id: r.person_id for r in face_rows(store.catalog)}
    finally:
        store.close()
    for i, who in enumerate([[0], [1], [2], [3], [1]]):  # new photos of everyone
        write_face_photo(photos / f"new{i}.jpg", who, seed=100 + i)
    _index(db, photos, tiny_encoder)
    store = Store.open(db)
    try:
        people = People(store)
        assert people_state(people.tables) is not None
        after = {r.id: r.person_id for r in face_rows(store.catalog)}
        assert {f: after[f] for f in before} == before  # no old face moved: every correction holds
        assert after[face[4]] is None and after[face[5]] == ada.id and after[face[3]] == split.id
        new = {n: _face_of(people, store, photos / f"new{n}.jpg") for n in range(5)}
        assert after[new[1]] == after[new[4]] == bob
        assert after[new[3]] == cy  # the merged person takes new faces of either side
        assert after[new[0]] in (ada.id, split.id)
        assert people.person("Ada").name == "Ada"
        people.recluster()
        again = {r.id: r.person_id for r in face_rows(store.catalog)}
        assert again[face[4]] != bob and again[face[5]] == ada.id and again[face[3]] == split.id
        assert again[face[6]] == again[face[7]] == cy
    finally:
        store.close()


def test_people_recluster_command(tmp_path: Path, tiny_encoder: Encoder, capsys: pytest.CaptureFixture[str]) -> None:
    photos, db = tmp_path / "photos", tmp_path / "db"
    for i, who in enumerate([[0], [0, 1], [1]]):
        write_face_photo(photos / f"p{i}.jpg", who, seed=i)
    _index(db, photos, tiny_encoder)
    capsys.readouterr()
    assert main(["people", "--db", str(db), "recluster", "--json"]) == 0
    assert '"people": 2' in capsys.readouterr().out


@pytest.mark.slow
def test_incremental_agrees_with_a_full_recluster_on_faces_small(datasets: Path, tmp_path: Path,
                                                                 tiny_encoder: Encoder) -> None:
    """Half of faces-small indexed, then the rest: the incremental people against one full re-cluster."""
    folder = datasets / "faces-small"
    if not (folder / "labels.csv").is_file():
        pytest.skip("faces-small is not here")
    from imagesim.faces.stage import configure_faces
    from imagesim.indexer import index_gallery

    with open(folder / "labels.csv", newline="") as fh:
        paths = [folder / r["path"] for r in csv.DictReader(fh)]
    first, second = tmp_path / "first", tmp_path / "second"
    for n, p in enumerate(sorted(paths)):
        dest = (first if n % 2 else second) / p.relative_to(folder)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dest)  # into the test's own temporary folder
    store = Store.open(tmp_path / "db", create=True)
    try:
        stage = configure_faces(store, True)
        assert stage is not None
        index_gallery(store, [first], [tiny_encoder], faces=stage, progress=False, threads=1)
        People(store).update()
        index_gallery(store, [first, second], [tiny_encoder], faces=stage, progress=False, threads=1)
        people = People(store)
        assert people.update().mode == "incremental"
        rows = face_rows(store.catalog)
        incremental = [r.person_id for r in rows]
        people.recluster()
        full = [r.person_id for r in face_rows(store.catalog)]
    finally:
        store.close()
    # one partition against the other
    assert len(rows) >= 20 and len({p for p in full if p is not None}) >= 3
    precision, recall = pairwise([-1 - i if p is None else p for i, p in enumerate(full)], incremental)
    print(f"faces-small: {len(rows)} faces, incremental vs full pairwise precision {precision:.4f} recall {recall:.4f}")
    agreement = _pair_agreement(full, incremental)
    print(f"faces-small: pairwise agreement {agreement:.4f}")
    assert agreement >= 0.99


def _pair_agreement(a: list[int | None], b: list[int | None]) -> float:
    """Share of face pairs on which two partitions agree (together in both, or apart in both); None: alone."""
    n = len(a)
    x = np.asarray([-1 - i if p is None else p for i, p in enumerate(a)])
    y = np.asarray([-1 - i if p is None else p for i, p in enumerate(b)])
    same_x, same_y = x[:, None] == x[None], y[:, None] == y[None]
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    return float((same_x == same_y)[upper].mean()) if n > 1 else 1.0


def test_forgetting_all_faces_forgets_the_incremental_state(synthetic: tuple[Store, Any, Any]) -> None:
    from imagesim.faces.schema import set_faces

    store, stage, ids = synthetic
    rng = np.random.default_rng(2)
    add_faces(store, stage, ids.faces([0, 0, 1, 1]), [0, 0, 1, 1], rng)
    people = People(store)
    people.update()
    assert people_state(people.tables) is not None
    set_faces(store, None)
    assert store.catalog.meta("people_state") is None  # faces turned on again start with a full clustering
