"""Metadata at index time and the filters, composed queries, sorting and paging of every search mode, on photos
with real EXIF written here (dates with and without offsets, cameras, GPS) and on photos with none."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from imagesim.cli import main
from imagesim.config import ModelSpec, Settings
from imagesim.encoders import WEIGHT_FREE, create_encoder
from imagesim.errors import ImagesimError
from imagesim.indexer import run_index
from imagesim.metadata import read_info
from imagesim.search import Gallery
from imagesim.search.compose import Text
from imagesim.search.filters import Filters, parse_date
from imagesim.store import CATALOG_NAME, Catalog, Store
from imagesim.store.photos import PhotoTable
from imagesim.store.schema import register_checksums
from imagesim.store.vectors import VectorIndex
from tests.support.counting import Counting
from tests.support.exif import exif_photo

LISBON, PORTO, TOKYO = (38.7223, -9.1393), (41.1496, -8.6110), (35.6762, 139.6503)
Y2015, Y2018 = time.mktime((2015, 5, 5, 12, 0, 0, 0, 0, -1)), time.mktime((2018, 2, 2, 12, 0, 0, 0, 0, -1))


def _write(root: Path) -> dict[str, Path]:
    p = {
        "lisbon": exif_photo(root / "trips/lisbon/a.jpg", taken="2019:07:14 18:03:00", offset="+01:00", make="Canon",
                             model="Canon EOS R5", gps=LISBON, seed=1),
        "porto": exif_photo(root / "trips/porto/b.jpg", taken="2019:12:31 23:30:00", make="Apple",
                            model="iPhone 12", gps=PORTO, seed=2, orientation=6),
        "tokyo": exif_photo(root / "trips/tokyo/c.jpg", taken="2021:03:01 10:00:00", offset="+09:00",
                            make="FUJIFILM", model="X-T3", gps=TOKYO, seed=3),
        "plain_png": exif_photo(root / "home/d.png", fmt="PNG", seed=4, mtime=Y2015),
        "plain_jpg": exif_photo(root / "home/e.jpg", seed=5, mtime=Y2018),
    }
    p["copy"] = root / "home/copy-of-a.jpg"
    shutil.copy(p["lisbon"], p["copy"])  # byte-identical: one content, two files
    return p


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory, tiny_spec: ModelSpec) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("filters")
    photos = _write(root / "pics")
    run_index(Settings.for_db(root / "db", model=tiny_spec), [root / "pics"], progress=False)
    return root / "db", photos


def _names(matches: list, photos: dict[str, Path]) -> set[str]:
    by_path = {str(p): k for k, p in photos.items()}
    return {by_path[m.path] for m in matches}


def _search(db: Path, photos: dict[str, Path], **flags: object) -> set[str]:
    with Gallery.open(db) as g:
        return _names(g.search(photos["plain_jpg"], k=20, filters=Filters.parse(**flags)), photos)  # type: ignore[arg-type]


# ---- metadata ------------------------------------------------------------------------------------------------------

def test_metadata_is_read_from_exif_and_from_the_file_without_it(gallery) -> None:
    db, photos = gallery
    with Gallery.open(db) as g:
        info = g.photo_info([str(p) for p in photos.values()])
    a, b, d, e = (info[str(photos[k])] for k in ("lisbon", "porto", "plain_png", "plain_jpg"))
    assert (a.taken_source, a.taken_local, a.taken_utc) == ("exif", "2019-07-14 18:03:00", 1563123780.0)
    assert (a.make, a.model, a.camera, a.format) == ("Canon", "Canon EOS R5", "Canon EOS R5", "jpeg")
    assert a.lat == pytest.approx(LISBON[0], abs=1e-5) and a.lon == pytest.approx(LISBON[1], abs=1e-5)
    assert a.country == "Portugal" and "Lisbon" in (a.city, a.county, a.state)
    assert b.taken_source == "exif-local" and b.taken_local == "2019-12-31 23:30:00"
    assert (b.width, b.height, b.orientation) == (64, 96, 6)  # upright size of a photo stored sideways
    assert d.taken_source == "mtime" and d.taken_local.startswith("2015-05-05") and d.format == "png"
    assert d.make is None and d.lat is None and d.country is None
    assert e.taken_source == "mtime" and e.taken_local.startswith("2018-02-02")
    assert info[str(photos["copy"])] == a  # metadata belongs to the bytes


def test_garbled_exif_never_fails_a_photo(tmp_path: Path) -> None:
    bad = exif_photo(tmp_path / "x.jpg", taken="0000:00:00 00:00:00", offset="+99:00", gps=(0.0, 0.0))
    info = read_info(bad.read_bytes(), 10**18)
    assert info.taken_source == "mtime" and info.lat is None
    assert read_info(b"not a photo", None).taken_source == "none"


# ---- filters, one at a time and together ----------------------------------------------------------------------------

def test_dates(gallery) -> None:
    db, photos = gallery
    assert _search(db, photos, after="2019", before="2019") == {"lisbon", "copy", "porto"}
    assert _search(db, photos, after="2019-12-31 23:00") == {"porto", "tokyo"}
    assert _search(db, photos, before="2018-12") == {"plain_png", "plain_jpg"}  # dated by their files
    assert _search(db, photos, after="2022") == set()


def test_camera_type_and_folders(gallery) -> None:
    db, photos = gallery
    assert _search(db, photos, camera="canon") == {"lisbon", "copy"}
    assert _search(db, photos, camera="iphone 12") == {"porto"}
    assert _search(db, photos, types=["png"]) == {"plain_png"}
    assert _search(db, photos, types=["JPG", "heic"]) == {"lisbon", "copy", "porto", "tokyo", "plain_jpg"}
    trips = str(photos["lisbon"].parents[1])
    assert _search(db, photos, folders=[trips]) == {"lisbon", "porto", "tokyo"}  # not the copy at home
    assert _search(db, photos, folders=["*/home/*.png", str(photos["tokyo"].parent)]) == {"plain_png", "tokyo"}
    assert _search(db, photos, folders=["*/lisbon"]) == {"lisbon"}


def test_near_and_place(gallery) -> None:
    db, photos = gallery
    assert _search(db, photos, near="38.72,-9.14,5") == {"lisbon", "copy"}
    assert _search(db, photos, near="38.72,-9.14,400") == {"lisbon", "copy", "porto"}  # Porto is ~275 km away
    assert _search(db, photos, place="portugal") == {"lisbon", "copy", "porto"}
    assert _search(db, photos, place="Japan") == {"tokyo"}
    assert _search(db, photos, place="JP") == {"tokyo"}
    assert _search(db, photos, place="Paris") == set()  # a real place with no photo: an honest empty answer
    with pytest.raises(ImagesimError, match="Atlantisz"):
        _search(db, photos, place="Atlantisz")


def test_filters_combine(gallery) -> None:
    db, photos = gallery
    assert _search(db, photos, after="2019", place="Portugal", camera="apple") == {"porto"}
    assert _search(db, photos, place="Portugal", folders=[str(photos["copy"].parent)]) == {"copy"}


@pytest.mark.parametrize(("flags", "message"), [
    ({"after": "yesterday"}, "--after: cannot read 'yesterday'"),
    ({"before": "2019-02-30"}, "not a real date"),
    ({"after": "2020", "before": "2019"}, "later than"),
    ({"near": "38.7"}, "--near"),
    ({"near": "95,0"}, "within ±90"),
    ({"types": ["psd"]}, "unknown file type"),
])
def test_bad_input_is_one_line(flags: dict, message: str) -> None:
    with pytest.raises(ImagesimError, match=message) as exc:
        Filters.parse(**flags)
    assert "\n" not in str(exc.value)


def test_dates_widen_to_the_period() -> None:
    assert parse_date("2019", end=False) == "2019-01-01 00:00:00"
    assert parse_date("2019", end=True) == "2019-12-31 23:59:59"
    assert parse_date("2020-02", end=True) == "2020-02-29 23:59:59"
    assert parse_date("2019-07-14 18:03", end=True) == "2019-07-14 18:03:59"


def test_every_mode_honours_filters(gallery) -> None:
    db, photos = gallery
    portugal = Filters.parse(place="Portugal")
    with Gallery.open(db) as g:
        for mode in ("content", "style", "blend"):
            assert _names(g.search(photos["tokyo"], 10, mode=mode, filters=portugal), photos) == \
                {"lisbon", "copy", "porto"}
        assert _names(g.search_text("a photo", 10, filters=portugal), photos) == {"lisbon", "copy", "porto"}
        assert [sorted(grp) for grp in g.duplicates()] == [sorted([str(photos["copy"]), str(photos["lisbon"])])]
        assert g.duplicates(filters=Filters.parse(folders=[str(photos["lisbon"].parents[1])])) == []
        assert _names(g.find_duplicates(photos["lisbon"]), photos) == {"copy"}
        assert g.find_duplicates(photos["lisbon"], filters=Filters.parse(types=["png"])) == []
        assert g.select(Filters.parse(after="2030")) is not None and len(g.select(Filters.parse(after="2030"))) == 0


# ---- composed queries, sorting, paging ------------------------------------------------------------------------------

def test_composed_queries_explain_each_term(gallery) -> None:
    db, photos = gallery
    with Gallery.open(db) as g:
        plain = g.search(photos["lisbon"], 6)
        doubled = g.compose([(photos["lisbon"], 2.0)], 6)
        assert [m.path for m in doubled] == [m.path for m in plain]  # one term: its weight changes nothing
        mixed = g.compose([(photos["lisbon"], 1.0), (Text("at sunset"), 1.0), (Text("people"), -1.0)], 6)
        assert mixed and all(m.terms is not None and [t for t, _ in m.terms] == ["a.jpg", "'at sunset'", "'people'"]
                             for m in mixed)
        assert all(m.why and m.why.startswith("pulled in by") and "of 'people'" in m.why for m in mixed)
        assert [m.score for m in mixed] == sorted((m.score for m in mixed), reverse=True)
        only_home = g.compose([(photos["lisbon"], 1.0), (Text("a dog"), 0.5)], 6,
                              filters=Filters.parse(folders=[str(photos["copy"].parent)]))
        assert _names(only_home, photos) == {"copy", "plain_png", "plain_jpg"}
        with pytest.raises(ImagesimError, match="positive"):
            g.compose([(Text("people"), -1.0)], 5)
        assert mixed[0].to_json()["terms"] == dict(mixed[0].terms or ())


def test_sort_by_date_and_pages(gallery) -> None:
    db, photos = gallery
    with Gallery.open(db) as g:
        by_date = g.search(photos["plain_jpg"], 10, sort="date")
        assert [_names([m], photos).pop() for m in by_date][:2] == ["tokyo", "porto"]
        assert [m.taken for m in by_date] == sorted((m.taken for m in by_date), reverse=True)
        whole = g.search(photos["plain_jpg"], 6)
        pages = g.search(photos["plain_jpg"], 2) + g.search(photos["plain_jpg"], 2, offset=2) + \
            g.search(photos["plain_jpg"], 2, offset=4)
        assert [m.path for m in pages] == [m.path for m in whole]
        assert g.search(photos["plain_jpg"], 5, offset=100) == []
        with pytest.raises(ImagesimError, match="offset"):
            g.search(photos["plain_jpg"], 5, offset=-1)


# ---- the command line -------------------------------------------------------------------------------------------

def test_cli_filters_compose_and_page(gallery, capsys: pytest.CaptureFixture[str]) -> None:
    db, photos = gallery
    assert main(["search", str(photos["tokyo"]), "--db", str(db), "--place", "Portugal", "--after", "2019",
                 "--sort", "date", "--offset", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sort"] == "date" and out["offset"] == 1 and out["filters"] == {"after": "2019-01-01 00:00:00",
                                                                               "place": "Portugal"}
    assert [r["path"] for r in out["results"]] == [str(photos["lisbon"])] or \
        {r["path"] for r in out["results"]} <= {str(photos["lisbon"]), str(photos["copy"])}
    assert main(["search", str(photos["lisbon"]), "--db", str(db), "--text", "2:at sunset", "--minus-text",
                 "people", "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("pulled in by" in line and "'at sunset'" in line for line in lines)
    assert main(["search", "--text", "a photo", "--db", str(db), "--after", "2030"]) == 0
    assert capsys.readouterr().out.strip() == "no photo matches these filters"
    assert main(["search", "--text", "a photo", "--db", str(db), "--after", "13/45"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("imagesim: error: --after: cannot read") and "\n" not in err
    assert main(["duplicates", "--db", str(db), "--type", "png", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"groups": []}


# ---- existing databases, moves, the schema upgrade ------------------------------------------------------------------

def _encoders(tiny_encoder) -> list[Counting]:  # type: ignore[no-untyped-def]
    return [Counting(tiny_encoder)] + [Counting(create_encoder(k)) for k in WEIGHT_FREE]


def _downgrade_to_schema_2(db: Path) -> None:
    """Make the catalog what imagesim with schema 2 left: no photo_info table, version 2 (checksums kept right)."""
    conn = sqlite3.connect(db / CATALOG_NAME, isolation_level=None)
    register_checksums(conn)
    conn.execute("DROP TABLE photo_info")
    conn.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    conn.close()


def test_an_existing_database_gets_metadata_without_encoding(tmp_path: Path, tiny_encoder) -> None:
    photos = _write(tmp_path / "pics")
    db = tmp_path / "db"
    run_index(Settings.for_db(db), [tmp_path / "pics"], encoders=_encoders(tiny_encoder), progress=False)
    _downgrade_to_schema_2(db)
    catalog = Catalog(db / CATALOG_NAME, create=False)  # upgraded in place at open
    try:
        assert catalog.meta("schema_version") == "3" and list(catalog.problems()) == []
        assert len(PhotoTable(catalog).missing()) == len(photos) - 1  # one content is two files
    finally:
        catalog.close()
    counted = _encoders(tiny_encoder)
    report = run_index(Settings.for_db(db), [tmp_path / "pics"], encoders=counted, progress=False)
    assert sum(e.calls for e in counted) == 0 and report.unchanged == len(photos)
    with Gallery.open(db) as g:
        assert not PhotoTable(g.store.catalog).missing()
        assert _names(g.search(photos["plain_jpg"], 10, filters=Filters.parse(place="Japan")), photos) == {"tokyo"}
        assert _names(g.search(photos["plain_jpg"], 10, filters=Filters.parse(before="2015-12")), photos) == \
            {"plain_png"}


def test_a_moved_photo_keeps_its_metadata_and_is_not_read_again(tmp_path: Path, tiny_encoder) -> None:
    photos = _write(tmp_path / "pics")
    db = tmp_path / "db"
    run_index(Settings.for_db(db), [tmp_path / "pics"], encoders=_encoders(tiny_encoder), progress=False)
    moved = tmp_path / "pics/elsewhere/c-renamed.jpg"
    moved.parent.mkdir()
    photos["tokyo"].rename(moved)
    counted = _encoders(tiny_encoder)
    report = run_index(Settings.for_db(db), [tmp_path / "pics"], encoders=counted, progress=False)
    assert report.moved == 1 and sum(e.calls for e in counted) == 0
    with Gallery.open(db) as g:
        hits = g.search(photos["plain_jpg"], 10, filters=Filters.parse(place="Japan", camera="fujifilm"))
        assert [m.path for m in hits] == [str(moved)]
        assert g.photo_info([str(moved)])[str(moved)].taken_local == "2021-03-01 10:00:00"


def test_repair_keeps_metadata_and_drops_only_a_damaged_row(tmp_path: Path, tiny_encoder) -> None:
    photos = _write(tmp_path / "pics")
    db = tmp_path / "db"
    run_index(Settings.for_db(db), [tmp_path / "pics"], encoders=_encoders(tiny_encoder), progress=False)
    conn = sqlite3.connect(db / CATALOG_NAME)  # no checksum function: the trigger cannot fix the row's _crc
    conn.execute("DROP TRIGGER photo_info_crc_update")
    conn.execute("UPDATE photo_info SET city='Elsewhere' WHERE country='Japan'")
    conn.commit()
    conn.close()
    assert main(["repair", "--db", str(db)]) == 0
    with Gallery.open(db) as g:
        assert len(PhotoTable(g.store.catalog).missing()) == 1  # the damaged row went, the others stayed
    run_index(Settings.for_db(db), [tmp_path / "pics"], encoders=_encoders(tiny_encoder), progress=False)
    with Gallery.open(db) as g:
        assert _names(g.search(photos["plain_jpg"], 10, filters=Filters.parse(place="Japan")), photos) == {"tokyo"}


# ---- exact filtered k-NN ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("share", [0.002, 0.02, 0.2, 0.6])
def test_filtered_knn_returns_only_allowed_labels_and_the_exact_top(share: float) -> None:
    rng = np.random.default_rng(7)
    n, dim = 4000, 32
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    labels = np.arange(1, n + 1)
    vi = VectorIndex(dim, exact_max=100, filter_exact_max=200)  # both paths: exact below 200 allowed, graph above
    vi.add(labels, vecs)
    vi.remove([5, 6, 7])
    allowed = np.sort(rng.choice(labels, max(1, int(n * share)), replace=False))
    hits = 0
    for q in rng.standard_normal((20, dim)).astype(np.float32):
        got, scores = vi.search(q[None, :], 10, allowed=allowed)
        ok = allowed[~np.isin(allowed, [5, 6, 7])]
        truth = ok[np.argsort(-(vecs[ok - 1] @ (q / np.linalg.norm(q))))[:10]]
        assert set(got[0].tolist()) <= set(ok.tolist()) and len(got[0]) == min(10, len(ok))
        hits += len(set(got[0].tolist()) & set(truth.tolist()))
    assert hits / (20 * min(10, len(ok))) >= 0.97


def test_people_filter(tmp_path: Path, tiny_encoder) -> None:
    from imagesim.faces.people import People
    from tests.support.facefakes import index_with_fakes, write_face_photo

    pics = tmp_path / "photos"
    for i, people in enumerate([[0], [0, 1], [1], [0, 1], [2]]):
        write_face_photo(pics / f"p{i}.jpg", people, seed=i)
    db = tmp_path / "db"
    index_with_fakes(db, [pics], [tiny_encoder])
    store = Store.open(db)
    try:
        people = People(store)
        with_faces = {p.id: {Path(x).name for f in people.faces(p.id) for x in f.paths} for p in people.list()}
        ada = next(pid for pid, names in with_faces.items() if names == {"p0.jpg", "p1.jpg", "p3.jpg"})
        bob = next(pid for pid, names in with_faces.items() if names == {"p1.jpg", "p2.jpg", "p3.jpg"})
        people.rename(ada, "Ada")
        people.rename(bob, "Bob")
    finally:
        store.close()
    with Gallery.open(db, encoder=tiny_encoder) as g:
        def names(**flags: object) -> set[str]:
            return {Path(m.path).name for m in g.search(pics / "p4.jpg", 10, filters=Filters.parse(**flags))}  # type: ignore[arg-type]

        assert names(people=["ada"]) == {"p0.jpg", "p1.jpg", "p3.jpg"}
        assert names(people=["Ada", "Bob"]) == {"p1.jpg", "p3.jpg"}
        assert names(people=[f"person {bob}"], folders=[str(pics / "p2.jpg")]) == {"p2.jpg"}
        with pytest.raises(ImagesimError, match="nobody is called 'Eve'"):
            names(people=["Eve"])
        results = g.faces(pics / "p1.jpg", 10, filters=Filters.parse(people=["Bob"], types=["jpeg"]))
        assert {Path(m.path).name for r in results for m in r.matches} <= {"p1.jpg", "p2.jpg", "p3.jpg"}


def test_exact_filtered_search_reads_a_saved_graph_in_place_and_sees_later_changes(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((300, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    vi = VectorIndex(16, exact_max=10, filter_exact_max=1000)
    vi.add(np.arange(1, 301), vecs)
    state = vi.save(tmp_path, "content", 1, "fp")
    loaded = VectorIndex.load(tmp_path, state, 16, exact_max=10)
    loaded.filter_exact_max = 1000
    loaded.add(np.array([7, 301]), np.stack([vecs[99], vecs[99]]))  # label 7 now holds photo 100's vector
    got, scores = loaded.search(vecs[99][None, :], 3, allowed=np.array([7, 100, 200, 301]))
    assert set(got[0].tolist()) == {7, 100, 301} and np.allclose(scores[0], 1.0, atol=1e-5)
    got, scores = loaded.search(vecs[49][None, :], 1, allowed=np.arange(40, 60))
    assert got[0].tolist() == [50] and scores[0][0] == pytest.approx(1.0, abs=1e-5)


def test_heic_photos_give_their_exif_too(tmp_path: Path) -> None:
    import imagesim.images  # noqa: F401 - registers the HEIF opener

    heic = exif_photo(tmp_path / "phone.heic", fmt="HEIF", taken="2020:01:02 03:04:05", offset="-05:00", make="Apple",
                      model="iPhone 15", gps=(40.7128, -74.006))
    info = read_info(heic.read_bytes(), 0)
    assert (info.format, info.taken_local, info.taken_utc, info.camera) == (
        "heic", "2020-01-02 03:04:05", 1577952245.0, "Apple iPhone 15")
    assert info.lat == pytest.approx(40.7128, abs=1e-5) and info.lon == pytest.approx(-74.006, abs=1e-5)
