"""The web UI against one real indexed database: handlers called directly, the app driven over HTTP with
gradio_client, and a real headless browser.

The database is built once per session (content, style and near-duplicate vectors with the tiny model; faces with the
fake face models, clustered, one person named) and each test gets its own copy of it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from imagesim.config import ModelSpec, Settings
from imagesim.encoders import Encoder, create_encoder
from imagesim.errors import ImagesimError
from imagesim.faces.people import People
from imagesim.images import load_image
from imagesim.indexer import run_index
from imagesim.search import Gallery, Match
from imagesim.store import Store
from tests.support.facefakes import fake_analyzer, index_with_fakes, write_face_photo
from tests.support.photos import photo, write_gallery, write_photo

gr = pytest.importorskip("gradio")

from imagesim_ui import api  # noqa: E402
from imagesim_ui.app import WORK_LIMIT, build_demo  # noqa: E402
from imagesim_ui.handlers import Handlers  # noqa: E402
from imagesim_ui.serve import launch_options  # noqa: E402
from imagesim_ui.thumbs import NotInGallery, Thumbnails, draw_boxes  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
# Who is in each photo of people/ (fake faces: one colour per person): 0 three times, 1 twice, 2 once (too few for a
# person of their own).
GROUPS = [[0], [0, 1], [1], [0], [2]]
PHOTOS = 12 + 1 + len(GROUPS)  # photo_000..011, a smaller copy of photo_011, the people photos


# ---- one real database of the whole feature set, built once -----------------------------------------------------

@dataclass(frozen=True)
class Indexed:
    photos: Path  # photo_000.jpg ... photo_011.jpg and photo_011_small.jpg, a near duplicate
    people: Path  # group_0.jpg ... one coloured square per face
    db: Path  # never opened: every test copies it
    files: list[Path]  # photo_000.jpg ... photo_011.jpg


@dataclass
class Site:
    root: Path  # the gallery folder of ordinary photos
    db: Path
    gallery: Gallery
    thumbs: Thumbnails
    handlers: Handlers
    photos: list[Path] = field(default_factory=list)


def near_duplicate(path: Path, seed: int = 11, size: tuple[int, int] = (80, 60), quality: int = 60) -> Path:
    """photo(seed) again, smaller and more compressed: what a phone's shared copy of a photo looks like."""
    photo(seed).resize(size).save(path, quality=quality)
    return path


@pytest.fixture(scope="session")
def indexed(tmp_path_factory: pytest.TempPathFactory, tiny_spec: ModelSpec, tiny_encoder: Encoder) -> Indexed:
    """What `imagesim index --faces` and a few corrections leave behind, with the tiny model and fake face models."""
    base = tmp_path_factory.mktemp("ui")
    photos, people, db = base / "photos", base / "people", base / "db"
    files = write_gallery(photos, 12)
    near_duplicate(photos / "photo_011_small.jpg")
    for i, who in enumerate(GROUPS):
        write_face_photo(people / f"group_{i}.jpg", who, seed=i)
    encoders = [tiny_encoder, create_encoder("style"), create_encoder("dup")]
    run_index(Settings.for_db(db, model=tiny_spec, threads=1), [photos, people], encoders=encoders, progress=False)
    # Faces in people/ only: the fake detector would take some of the random photos' coloured discs for faces.
    index_with_fakes(db, [people], encoders)
    store = Store.open(db)
    try:  # what a user does in the People tab or with `imagesim people`: name someone, split a person in two
        book = People(store)
        first, second = book.list()
        book.rename(first.id, "Ada")
        book.split(second.id, [book.faces(second.id)[0].face_id])
    finally:
        store.close()
    return Indexed(photos, people, db, files)


def open_copy(indexed: Indexed, folder: Path, encoder: Encoder, thumbs_dir: Path) -> Site:
    """A copy of the database (the photos stay where they are: the catalog knows them by absolute path), opened with
    the fake face models it was indexed with, injected as the page would hand over its loaded ones."""
    db = folder / "db"
    shutil.copytree(indexed.db, db)
    gallery = Gallery.open(db, encoder=encoder, face_analyzer=fake_analyzer(), threads=1)
    thumbs = Thumbnails(thumbs_dir, [str(indexed.photos), str(indexed.people)], [str(db)])
    return Site(indexed.photos, db, gallery, thumbs, Handlers(gallery, thumbs), indexed.files)


@pytest.fixture()
def site(indexed: Indexed, tiny_encoder: Encoder, tmp_path: Path) -> Iterator[Site]:
    site = open_copy(indexed, tmp_path, tiny_encoder, tmp_path / "thumbs")
    yield site
    site.gallery.close()


@pytest.fixture()
def empty(tmp_path: Path) -> Iterator[Handlers]:
    """An empty database: no photos, no style or near-duplicate vectors, faces off."""
    Store.open(tmp_path / "empty", create=True).close()
    with Gallery.open(tmp_path / "empty") as g:
        yield Handlers(g, Thumbnails(tmp_path / "t", []))


@pytest.fixture()
def upload(tmp_path: Path) -> str:
    """A photo the way Gradio hands an upload over: a temp file named like the user's file."""
    return str(write_photo(tmp_path / "holiday.jpg", 3, quality=90))


@pytest.fixture()
def faces_upload(tmp_path: Path) -> str:
    """A new photo of persons 0 and 1, side by side."""
    return str(write_face_photo(tmp_path / "friends.jpg", [0, 1], seed=99))


# ---- handlers --------------------------------------------------------------------------------------------------

def test_search_photo_shows_thumbnails_best_first(site: Site, upload: str) -> None:
    out = site.handlers.search_photo(upload, 5)
    assert not out.message
    assert [it["name"] for it in out.items][0] == "photo_003.jpg"  # the same picture, re-encoded, comes first
    scores = [it["score"] for it in out.items]
    assert scores == sorted(scores, reverse=True) and len(scores) == 5
    for thumb, caption in out.gallery:
        assert Path(thumb).is_relative_to(site.thumbs.cache_dir)  # never a raw gallery path
        assert caption.endswith(".jpg") and caption[:4].replace(".", "").isdigit()


def test_thumbnails_are_small_and_cached(site: Site) -> None:
    from PIL import Image

    big = write_photo(site.root / "big" / "wide.jpg", 99, size=(1600, 900))
    try:
        first = site.thumbs.thumbnail(big)
        assert site.thumbs.thumbnail(big) == first
        with Image.open(first) as img:
            assert max(img.size) <= 320
    finally:
        shutil.rmtree(site.root / "big")


def test_thumbnails_refuse_paths_outside_the_gallery(site: Site, tmp_path: Path) -> None:
    outside = write_photo(tmp_path / "elsewhere.jpg", 1)
    link = site.root / "link.jpg"
    link.symlink_to(outside)
    try:
        db_file = site.db / "catalog.sqlite"
        for path in (outside, link, db_file, site.root / ".." / "db" / "catalog.sqlite", "/etc/passwd"):
            with pytest.raises(NotInGallery):
                site.thumbs.check(path)
    finally:
        link.unlink()


def test_readable_errors_never_tracebacks(site: Site, tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a photo")
    out = site.handlers.search_photo(str(text))
    assert out.items == [] and "notes.jpg" in out.message and "not a supported image" in out.message
    assert "Traceback" not in out.message and "\n" not in out.message
    assert site.handlers.search_photo(None).message == ""  # cleared upload: nothing to say
    assert "type what the photo shows" in site.handlers.search_text("   ").message
    assert site.handlers.more_like(None).message == "pick a photo in the results first"


def test_unexpected_errors_are_one_line(site: Site, upload: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def on_fire(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(site.gallery, "search", on_fire)
    out = site.handlers.search_photo(upload)
    assert out.message.startswith("something went wrong (RuntimeError: disk on fire)")


def test_text_search_and_more_like_this(site: Site) -> None:
    out = site.handlers.search_text("a red circle", 4)
    assert len(out.items) == 4 and "a red circle" in out.items[0]["why"]
    chosen = out.items[1]
    more = site.handlers.more_like(chosen, 3)
    assert more.items[0]["path"] == chosen["path"] and more.items[0]["score"] == pytest.approx(1.0)


def test_more_like_this_refuses_a_forged_path(site: Site) -> None:
    out = site.handlers.more_like({"path": str(site.db / "catalog.sqlite")})
    assert out.items == [] and "not in the gallery" in out.message


def test_details_show_path_size_date_and_why(site: Site, upload: str) -> None:
    item = site.handlers.search_photo(upload, 3).items[0]
    preview, facts = site.handlers.details(item)
    assert preview and Path(preview).is_relative_to(site.thumbs.cache_dir)
    assert item["path"] in facts and "96 × 72 px" in facts and ("KB" in facts or "bytes" in facts)
    assert "(file date)" in facts and "Score 1.000" in facts and "near-identical" in facts
    assert site.handlers.details(None) == (None, "")


def test_details_read_the_exif_date(site: Site) -> None:
    from PIL import Image

    path = site.root / "exif" / "taken.jpg"
    path.parent.mkdir()
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2019:07:14 18:30:05"
    photo(5).save(path, exif=exif)
    try:
        _, facts = site.handlers.details({"path": str(path), "score": 0.5, "why": "x"})
        assert "14 Jul 2019, 18:30 (taken)" in facts
    finally:
        shutil.rmtree(path.parent)


def test_status_line(site: Site) -> None:
    line = site.handlers.status_line()
    assert f"{PHOTOS} photos" in line and f"{sum(map(len, GROUPS))} faces" in line
    assert "model tiny_clip.json (config:" in line and "last indexed just now" in line


def test_status_of_an_empty_database(empty: Handlers) -> None:
    assert empty.status_line().startswith("No photos indexed yet.")
    assert empty.search_text("x").message.startswith("no photos indexed yet")
    assert "nothing to index" in empty.index_now()


def test_index_now_adds_new_photos_and_queries_keep_working(site: Site) -> None:
    new = write_photo(site.root / "new" / "fresh.jpg", 500)
    try:
        # The page's own indexer over the roots the catalog records (photos/ and people/), with the page's model.
        msg = site.handlers.index_now()
        assert msg.startswith("indexed: 1 added") and site.gallery.status()["photos"] == PHOTOS + 1
        assert site.gallery.search(str(new), 1)[0].path == str(new)
        assert site.gallery.has_space("style") and site.gallery.search(str(new), 1, mode="style")[0].path == str(new)
        # While another process holds the writer lock, indexing says so and searching still works.
        with site.gallery.store.writer():
            assert "another imagesim process is writing" in site.handlers.index_now()
            assert site.handlers.search_text("fresh", 2).items
    finally:
        shutil.rmtree(site.root / "new")


def test_upload_that_pillow_cannot_open_reaches_the_handler(tmp_path: Path) -> None:
    from gradio.data_classes import ImageData
    from imagesim_ui.app import photo_input

    fake = tmp_path / "notes.jpg"
    fake.write_text("not a photo")
    comp = photo_input(type="filepath", render=False)
    assert comp.preprocess(ImageData(path=str(fake), orig_name="notes.jpg")) == str(fake)
    with pytest.raises(Exception, match="cannot identify"):
        gr.Image(type="filepath", render=False).preprocess(ImageData(path=str(fake), orig_name="notes.jpg"))


def test_draw_boxes_numbers_each_face() -> None:
    img = photo(1, (200, 150))
    out = draw_boxes(img, [(10, 40, 60, 100), (120, 30, 180, 90)])
    assert out.size == img.size and out is not img
    assert out.getpixel((10, 70)) != img.getpixel((10, 70))  # outline drawn on the left edge of box 1


# ---- what the database holds: Same look, Faces, People, Duplicates ------------------------------------------------

def test_tabs_follow_what_the_database_holds(site: Site, empty: Handlers) -> None:
    def tabs(demo: gr.Blocks) -> list[str]:
        return [b["props"].get("label") for b in demo.config["components"] if b["type"] == "tabitem"]

    assert (empty.has_style(), empty.has_faces(), empty.has_duplicates()) == (False,) * 3
    assert (site.handlers.has_style(), site.handlers.has_faces(), site.handlers.has_duplicates()) == (True,) * 3
    assert tabs(build_demo(empty.gallery, handlers=empty)) == ["Similar"]
    assert tabs(build_demo(site.gallery, handlers=site.handlers)) == ["Similar", "Same look", "Faces", "People",
                                                                      "Duplicates"]


def test_style_blend_slider_picks_the_mode(site: Site, upload: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, float]] = []
    search = site.gallery.search

    def spy(query: Any, k: int = 10, mode: str = "content", style_weight: float = 0.5, **ask: Any) -> list[Match]:
        calls.append((mode, style_weight))
        return search(query, k, mode=mode, style_weight=style_weight, **ask)

    monkeypatch.setattr(site.gallery, "search", spy)
    out = site.handlers.search_style(upload, 0.3, 4)
    [expected, *_] = search(load_image(upload), 4, mode="blend", style_weight=0.3)
    assert len(out.items) == 4 and out.items[0]["path"] == expected.path
    assert expected.why and out.items[0]["why"] == expected.why  # the gallery's own words: which look matched
    site.handlers.search_style(upload, 1.0, 4)
    site.handlers.search_style(upload, 0.0, 4)
    assert calls == [("blend", 0.3), ("style", 1.0), ("content", 0.0)]


def test_faces_are_numbered_with_verdicts(site: Site, faces_upload: str, tmp_path: Path) -> None:
    out = site.handlers.search_faces(faces_upload)
    annotated, per_face = out.extra
    assert Path(annotated).is_file() and len(per_face) == 2
    first = per_face[0]  # person 0, the left face: who they are, then three photos of them, then everyone else's
    assert [it.get("person") is not None for it in first] == [True] + [False] * 6 and out.items == first
    assert first[0]["caption"] == "✓ high · Ada (3 photos)" and first[0]["person"] == "Ada"
    assert [it["same_person"] for it in first[1:]] == [True] * 3 + [False] * 3
    assert first[1]["caption"].startswith("✓ high") and first[-1]["caption"].startswith("✗ high")
    assert "same person, high confidence" in first[1]["why"]
    assert {Path(it["path"]).parent for it in first} == {site.root.parent / "people"}
    nobody = write_face_photo(tmp_path / "wall.jpg", [])
    out = site.handlers.search_faces(str(nobody))
    assert out.items == [] and out.message.startswith("no face found")


def test_people_listed_and_renamed(site: Site) -> None:
    out = site.handlers.people()
    assert [it["caption"] for it in out.items] == ["Ada · 3 faces", "Person 2 · 1 face", "Person 3 · 1 face"]
    assert all(Path(it["thumb"]).is_file() for it in out.items)
    renamed = site.handlers.rename_person(out.items[1], "  Grace ")
    assert renamed.items[1]["name"] == "Grace" and renamed.message == "renamed to Grace"
    assert People(site.gallery.store).person("grace").id == out.items[1]["id"]  # in the database, not just the page
    for refused, why in [(site.handlers.rename_person(None, "x"), "pick a person first"),
                         (site.handlers.rename_person(out.items[0], " "), "type a name"),
                         (site.handlers.rename_person(out.items[0], "grace"), "already person")]:
        assert refused.failed and why in refused.message  # the page keeps its People grid (see PeopleTab._result)


def test_person_page_merge_split_and_forget(site: Site) -> None:
    ada, second, third = site.handlers.people().items
    page = site.handlers.person_faces(ada)
    assert len(page.items) == 3 and page.message == "Ada: 3 faces" and not page.failed
    assert {it["name"] for it in page.items} <= {f"group_{i}.jpg" for i in range(len(GROUPS))}
    assert all(Path(it["thumb"]).is_relative_to(site.thumbs.cache_dir) for it in page.items)
    split = site.handlers.split_face(ada, page.items[0])
    assert not split.failed and [it["count"] for it in split.items] == [2, 1, 1, 1]
    new = next(it for it in split.items if it["id"] not in {ada["id"], second["id"], third["id"]})
    merged = site.handlers.merge_people(ada, new["id"])
    assert not merged.failed and merged.message == "merged into Ada" and merged.items[0]["count"] == 3
    assert site.handlers.merge_people(ada, ada["id"]).failed  # with themselves: refused, one line
    forgot = site.handlers.forget_person(third)
    assert forgot.message == "forgot Person 3" and third["id"] not in [it["id"] for it in forgot.items]
    assert site.handlers.forget_person(None).failed and site.handlers.split_face(ada, None).failed


def test_faces_tab_crops_around_the_face(site: Site, faces_upload: str) -> None:
    from PIL import Image

    first = site.handlers.search_faces(faces_upload).items[0]
    with Image.open(first["thumb"]) as thumb:
        assert thumb.width < 200 and thumb.height < 200  # the face and its surroundings, not the 400 x 300 photo
        colours = thumb.convert("RGB").getcolors(1 << 16) or []
    assert max(colours)[0] > 0.2 * thumb.width * thumb.height  # mostly the face's own colour


def test_duplicates_grouped_and_missing_files_skipped(site: Site) -> None:
    out = site.handlers.duplicates()
    assert out.extra == 1 and [it["name"] for it in out.items] == ["photo_011.jpg", "photo_011_small.jpg"]
    assert [it["group"] for it in out.items] == [1, 1] and "group 1" in out.items[0]["caption"]
    gone = near_duplicate(site.root / "photo_011_gone.jpg", size=(96, 72), quality=40)
    try:
        assert site.handlers.index_now().startswith("indexed: 1 added")
    finally:
        gone.unlink()  # deleted since the last index run: still in the catalog, no longer on disk
    # a file gone from disk cannot be verified as a copy: it joins no group (and the pass goes on)
    assert [len(g) for g in site.gallery.duplicates()] == [2]
    out = site.handlers.duplicates()
    assert out.extra == 1 and [it["name"] for it in out.items] == ["photo_011.jpg", "photo_011_small.jpg"]


def test_api_functions_return_json(site: Site, upload: str, faces_upload: str, empty: Handlers) -> None:
    results = api.search(site.gallery, upload, 3)
    assert json.loads(json.dumps(results)) == results and len(results) == 3
    assert all(os.path.isabs(r["file"]) and set(r) == {"file", "score"} for r in results)
    assert api.search(site.gallery, {"path": upload}, None)[0]["file"].endswith("photo_003.jpg")
    for k in (0, -5, 201, 2.5, "many"):
        with pytest.raises(ImagesimError, match="k must be"):
            api.search(site.gallery, upload, k)
    assert len(api.search_text(site.gallery, "x", api.MAX_K)) == PHOTOS  # the limit itself is allowed
    with pytest.raises(ImagesimError, match="face search is not enabled"):
        api.faces(empty.gallery, upload)
    faces = api.faces(site.gallery, faces_upload)
    assert [f["face"] for f in faces] == [1, 2] and faces[0]["matches"][0]["same_person"] is True
    assert all("path" not in m and os.path.isabs(m["file"]) for f in faces for m in f["matches"])
    json.dumps(faces)


# ---- the running app ---------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory, indexed: Indexed, tiny_encoder: Encoder) -> Iterator[Site]:
    """The running app's own copy of the database; its thumbnails go into Gradio's private folder, as `serve` does."""
    base = tmp_path_factory.mktemp("served")
    before = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(base / "gradio")
    site = open_copy(indexed, base, tiny_encoder, base / "gradio" / "thumbs")
    yield site
    site.gallery.close()
    if before is None:
        os.environ.pop("GRADIO_TEMP_DIR", None)
    else:
        os.environ["GRADIO_TEMP_DIR"] = before


@pytest.fixture(scope="session")
def app(served: Site) -> Iterator[gr.Blocks]:
    demo = build_demo(served.gallery, thumbs=served.thumbs)
    opts = launch_options(served.gallery, port=_free_port(), max_file_size="200kb")
    demo.launch(prevent_thread_lock=True, **opts)
    yield demo
    demo.close()


@pytest.fixture(scope="session")
def server(app: gr.Blocks) -> str:
    return app.local_url


@pytest.fixture(scope="session")
def client(server: str) -> Any:
    from gradio_client import Client

    return Client(server, verbose=False, download_files=False)


def test_api_search_with_gradio_client(server: str, served: Site, faces_upload: str) -> None:
    """The client as a user makes it, with every default (it downloads whatever looks like a file)."""
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    results = client.predict(handle_file(str(served.photos[4])), 3, api_name="/search")
    assert results[0] == {"file": str(served.photos[4]), "score": 1.0} and len(results) == 3
    results = client.predict(image=handle_file(str(served.photos[4])), api_name="/search")
    assert len(results) == 10  # k is optional
    results = client.predict(text="a blue square", k=2, api_name="/search_text")
    assert len(results) == 2 and all(os.path.isabs(r["file"]) for r in results)
    faces = client.predict(image=handle_file(faces_upload), k=3, api_name="/faces")
    assert len(faces) == 2 and faces[0]["matches"][0]["file"].startswith(str(served.root.parent))
    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    # then the optional filters and paging (tests/test_ui_filters.py)
    assert [p["parameter_name"] for p in info["/search"]["parameters"]][:2] == ["image", "k"]
    assert [p["parameter_name"] for p in info["/search_text"]["parameters"]][:2] == ["text", "k"]
    assert [p["parameter_name"] for p in info["/faces"]["parameters"]][:2] == ["image", "k"]


def test_api_errors_are_messages(client: Any, tmp_path: Path) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    bad = tmp_path / "fake.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(AppError, match="fake.png: "):
        client.predict(handle_file(str(bad)), api_name="/search")
    with pytest.raises(AppError, match="the text query is empty"):
        client.predict(" ", api_name="/search_text")
    with pytest.raises(AppError, match="k must be between 1 and 200"):
        client.predict("a cat", 500, api_name="/search_text")


def test_only_the_api_endpoints_are_public(client: Any, app: gr.Blocks) -> None:
    info = client.view_api(return_format="dict", print_info=False)
    assert sorted(info["named_endpoints"]) == ["/faces", "/search", "/search_text"]
    assert info["unnamed_endpoints"] == {}
    private = {i: fn for i, fn in app.fns.items() if fn.api_visibility == "private" and fn.fn is not None}
    names = {getattr(fn.fn, "__name__", "") for fn in private.values()}
    assert {"index_now", "_on_select"} <= names  # UI events, indexing among them, are all private
    index_id = next(i for i, fn in private.items() if fn.fn.__name__ == "index_now")
    with pytest.raises(ValueError, match="Invalid function index"):
        client.predict(fn_index=index_id)  # gradio_client cannot trigger indexing


def test_searches_share_two_slots_and_indexing_has_one(app: gr.Blocks) -> None:
    limits = {(fn.concurrency_id, fn.concurrency_limit) for fn in app.fns.values() if fn.queue and fn.fn}
    assert ("imagesim-index", 1) in limits
    assert {lim for cid, lim in limits if cid == "imagesim-work"} == {WORK_LIMIT}


def test_file_route_serves_thumbnails_and_nothing_else(server: str, served: Site, upload: str) -> None:
    import httpx


    thumb = served.handlers.search_photo(upload, 1).items[0]["thumb"]
    ok = httpx.get(f"{server}gradio_api/file={thumb}")
    assert ok.status_code == 200 and ok.content[:2] == b"\xff\xd8"  # a JPEG
    probes = [str(served.photos[0]), str(served.db / "catalog.sqlite"), "/etc/passwd",
              f"{served.thumbs.cache_dir}/../../db/catalog.sqlite", "../../../../etc/passwd",
              "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd", f"{served.thumbs.cache_dir}/%2e%2e/%2e%2e/db/catalog.sqlite",
              str(served.db), str(Path.cwd() / "pyproject.toml")]
    for probe in probes:
        r = httpx.get(f"{server}gradio_api/file={probe}")
        assert r.status_code in (403, 404), probe
        assert r.headers["content-type"].startswith("application/json"), probe  # an error, never the file
        assert b"SQLite format" not in r.content and b"root:x:" not in r.content, probe


def test_uploads_over_the_limit_are_refused(server: str) -> None:
    import httpx

    big = b"\xff\xd8" + os.urandom(300_000)
    r = httpx.post(f"{server}gradio_api/upload", files={"files": ("big.jpg", big, "image/jpeg")})
    assert r.status_code == 413


def test_launch_options_are_locked_down(site: Site) -> None:
    opts = launch_options(site.gallery)
    assert opts["server_name"] == "127.0.0.1" and opts["allowed_paths"] == []
    assert opts["blocked_paths"] == [str(site.db)] and opts["max_file_size"]


# ---- the command ------------------------------------------------------------------------------------------------

def test_serve_rejects_a_malformed_auth(capsys: pytest.CaptureFixture[str], site: Site) -> None:
    from imagesim.cli import main

    assert main(["serve", "--db", str(site.db), "--auth", "alice"]) == 1
    assert "--auth takes USER:PASS" in capsys.readouterr().err


def test_serve_without_a_database_says_what_to_do(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from imagesim.cli import main

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "g"))
    assert main(["serve", "--db", str(tmp_path / "nothing")]) == 1
    assert "run `imagesim index PHOTO_DIR" in capsys.readouterr().err


# ---- a real browser ---------------------------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed (.ci/install-browser.sh)")
def test_browser_upload_shows_results(server: str, served: Site, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect, sync_playwright = sync_api.expect, sync_api.sync_playwright

    shot = tmp_path / "ui.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server)
            expect(page.locator("#status")).to_contain_text(f"{PHOTOS} photos", timeout=30_000)
            page.locator("#upload input[type=file]").set_input_files(str(served.photos[6]))
            thumbs = page.locator(".results img")
            expect(thumbs.first).to_be_visible(timeout=30_000)
            expect(page.locator(".results").first).to_contain_text("1.00 · photo_006.jpg", timeout=30_000)
            assert thumbs.count() >= 10
            assert all("/gradio_api/file=" in (thumbs.nth(i).get_attribute("src") or "") for i in range(3))
            gallery = served.root.parent  # photos/ and people/
            assert str(gallery) not in page.content()  # the page never links a raw gallery path
            thumbs.nth(1).click()
            expect(page.locator(".facts").first).to_contain_text(str(gallery), timeout=30_000)
            page.wait_for_function("() => [...document.querySelectorAll('.results img')].every(i => i.complete)")
            page.screenshot(path=str(shot), full_page=True)
            # The tabs that load when opened: People (named, from the database) and Duplicates.
            page.get_by_role("tab", name="People").click()
            expect(page.locator(".people")).to_contain_text("Ada · 3 faces", timeout=30_000)
            page.get_by_role("tab", name="Duplicates").click()
            expect(page.get_by_text("group 1 · photo_011_small.jpg")).to_be_visible(timeout=30_000)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    if os.environ.get("IMAGESIM_UI_SCREENSHOT"):  # keep a copy outside pytest's temp dir, e.g. for docs
        shutil.copy(shot, os.environ["IMAGESIM_UI_SCREENSHOT"])


def test_api_payloads_naming_server_files_are_refused(server: str, served: Site) -> None:
    """A client can only send photos it uploads: a payload naming a file on the server reads nothing."""
    import httpx

    secret = b"imagesim-secret-marker"
    outside = served.db.parent / "outside-secret.jpg"
    outside.write_bytes(secret)
    answered = 0
    for target in (str(outside), str(served.db / "catalog.sqlite"), "/etc/passwd", str(served.photos[0])):
        for endpoint in ("search", "faces"):
            call = httpx.post(f"{server}gradio_api/call/{endpoint}",
                              json={"data": [{"path": target, "meta": {"_type": "gradio.FileData"}}, 5]}, timeout=30)
            assert call.status_code in (200, 403, 404, 422), call.status_code
            if call.status_code != 200:
                continue
            answered += 1
            events = httpx.get(f"{server}gradio_api/call/{endpoint}/{call.json()['event_id']}", timeout=60).text
            assert "event: error" in events and "complete" not in events, (target, events[:200])
            assert secret.decode() not in events and "root:" not in events and served.photos[0].name not in events
    assert answered  # the calls were taken and then refused, not merely rejected at the door


def test_hostile_uploads_get_one_line_or_results(site: Site, tmp_path: Path) -> None:
    """Every hostile or odd file through the upload handler and the /search API: results or one readable line."""
    from imagesim_ui import api

    from imagesim.errors import ImagesimError
    from tests.support.hostile import EXPECTED, write_hostile_files

    for name, path in write_hostile_files(tmp_path / "up").items():
        out = site.handlers.search_photo(str(path))
        if EXPECTED[name] == "ok":
            assert out.items and not out.message, name
            assert api.search(site.gallery, {"path": str(path)}, 3)[0]["score"] <= 1.0
        else:
            assert out.items == [] and EXPECTED[name] in out.message and "\n" not in out.message, (name, out.message)
            with pytest.raises(ImagesimError, match=EXPECTED[name] or "."):
                api.search(site.gallery, {"path": str(path)}, 3)


# ---- the page's behaviour (issue 17) -------------------------------------------------------------------------------

def test_names_are_escaped_text(site: Site) -> None:
    from imagesim_ui.present import shown_path, text_html

    raw = os.fsdecode(b"/g/bad\xff\xfe\\name.jpg")
    assert shown_path(raw) == "/g/bad\\udcff\\udcfe\\\\name.jpg"  # lossless: backslashes doubled
    assert shown_path("/g/é\\x.jpg") == "/g/é\\x.jpg"  # valid UTF-8 stays as it is
    assert text_html('<b id=pwn>"x"\n.jpg') == "&lt;b id=pwn&gt;&quot;x&quot;<br>.jpg"
    _, facts = site.handlers.details({"path": str(site.photos[0]), "score": 0.5, "why": "<img src=x>"})
    assert "<img" not in facts and "&lt;img src=x&gt;" in facts


def test_more_like_this_sets_the_query_and_highlights_it(site: Site) -> None:
    chosen = site.handlers.search_text("x", 6).items[3]
    query = site.handlers.query_photo(chosen)
    assert query and Path(query).is_relative_to(site.thumbs.cache_dir)  # "Your photo" shows its preview
    copy = Path(site.thumbs.cache_dir).parent / "gradio-cache" / "0123" / Path(query).name  # as Gradio hands it back
    copy.parent.mkdir(parents=True)
    shutil.copy(query, copy)
    out = site.handlers.search_photo(str(copy), 5)
    assert out.items[0]["path"] == chosen["path"] and out.items[0]["score"] == pytest.approx(1.0)  # stored vector
    assert out.selected == 0 and site.handlers.search_photo(str(site.photos[2]), 5).selected is None


def test_same_look_and_faces_say_what_to_do_without_a_photo(site: Site) -> None:
    assert "Same look compares photos, not words" in site.handlers.search_style(None).message
    assert site.handlers.search_faces(None).message.startswith("drop a photo with faces")


def test_library_newest_first_in_pages(site: Site) -> None:
    newest = site.photos[5]
    os.utime(newest, (2_000_000_000, 2_000_000_000))
    assert site.handlers.index_now().startswith("indexed: ")
    first = site.handlers.library(0, per_page=4)
    assert [it["path"] for it in first.items][0] == str(newest) and len(first.items) == 4 and first.extra is True
    every = site.handlers.library(10, per_page=4)
    assert len(every.items) == PHOTOS and every.extra is False
    assert site.handlers.original(first.items[0]) and Path(site.handlers.original(first.items[0]) or "").read_bytes() \
        == newest.read_bytes()  # "Download" gives the photo itself


def test_faces_without_a_match_say_so(site: Site, tmp_path: Path) -> None:
    from imagesim_ui.tabs import NO_MATCH, FacesTab

    lonely = write_face_photo(tmp_path / "stranger.jpg", [3], seed=7)  # a colour no gallery face has
    out = site.handlers.search_faces(str(lonely))
    annotated, per_face = out.extra
    assert per_face and not any(it["same_person"] for it in per_face[0])
    tab = FacesTab.__new__(FacesTab)
    *_, fold, note = tab.pick(per_face, "Face 1")
    assert NO_MATCH in note and fold["open"] is False and "Closest faces" in fold["label"]


def test_the_detail_view_opens_the_photo_at_full_size(site: Site, upload: str, tmp_path: Path) -> None:
    """The detail image is the original's copy (its fullscreen button shows every pixel) when a browser can show
    it; other formats fall back to the preview. Download gives the original either way."""
    item = site.handlers.search_photo(upload, 3).items[0]
    preview, _ = site.handlers.details(item)
    original = site.handlers.original(item)
    assert original and Path(original).read_bytes() == Path(item["path"]).read_bytes()
    shown = site.handlers.full_size(original, preview)
    assert shown and Path(shown).read_bytes() == Path(item["path"]).read_bytes()
    assert Path(shown).name == "photo" + Path(item["path"]).suffix.lower()  # no part of the file name in its URL
    heic = tmp_path / "photo.heic"
    heic.write_bytes(b"x")
    assert site.handlers.full_size(str(heic), preview) == preview
    assert site.handlers.full_size(None, preview) == preview
