"""The web UI: handlers called directly, the app driven over HTTP with gradio_client, and a real headless browser."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from imagesim.config import Settings
from imagesim.errors import ImagesimError
from imagesim.indexer import run_index
from imagesim.search import Gallery, Match
from tests.photos import photo, write_gallery, write_photo

gr = pytest.importorskip("gradio")

from imagesim_ui import api  # noqa: E402
from imagesim_ui.app import WORK_LIMIT, build_demo, launch_options  # noqa: E402
from imagesim_ui.handlers import Handlers  # noqa: E402
from imagesim_ui.thumbs import NotInGallery, Thumbnails, draw_boxes  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


# ---- a small indexed gallery, built once ---------------------------------------------------------------------------

@dataclass
class Site:
    root: Path  # the gallery folder
    db: Path
    gallery: Gallery
    thumbs: Thumbnails
    handlers: Handlers
    photos: list[Path] = field(default_factory=list)


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory, tiny_spec, tiny_encoder) -> Iterator[Site]:
    base = tmp_path_factory.mktemp("ui")
    before = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(base / "gradio")  # the app's private served folder, as `serve` does
    root = base / "gallery"
    photos = write_gallery(root, 12)
    db = base / "db"
    run_index(Settings.for_db(db, model=tiny_spec, threads=1), [root], encoders=[tiny_encoder], progress=False)
    gallery = Gallery.open(db, encoder=tiny_encoder, threads=1)
    thumbs = Thumbnails(base / "gradio" / "thumbs", [str(root)], [str(db)])
    yield Site(root, db, gallery, thumbs, Handlers(gallery, thumbs), photos)
    gallery.close()
    if before is None:
        os.environ.pop("GRADIO_TEMP_DIR", None)
    else:
        os.environ["GRADIO_TEMP_DIR"] = before


@pytest.fixture()
def upload(tmp_path: Path) -> str:
    """A photo the way Gradio hands an upload over: a temp file named like the user's file."""
    return str(write_photo(tmp_path / "holiday.jpg", 3, quality=90))


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


def test_unexpected_errors_are_one_line(site: Site, upload: str) -> None:
    class Broken:
        encoder = site.gallery.encoder

        def search(self, *a: object, **kw: object) -> list[Match]:
            raise RuntimeError("disk on fire")

    out = Handlers(Broken(), site.thumbs).search_photo(upload)  # type: ignore[arg-type]
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
    md = site.handlers.status_markdown()
    assert "**12** photos" in md and "model `config:" in md and "last indexed just now" in md


def test_status_of_an_empty_database(tmp_path: Path) -> None:
    from imagesim.store import Store

    Store.open(tmp_path / "empty", create=True).close()
    with Gallery.open(tmp_path / "empty") as g:
        h = Handlers(g, Thumbnails(tmp_path / "t", []))
        assert h.status_markdown().startswith("**No photos indexed yet.**")
        assert h.search_text("x").message.startswith("no photos indexed yet")
        assert "nothing to index" in h.index_now()


def test_index_now_adds_new_photos_and_queries_keep_working(site: Site, tiny_encoder) -> None:
    new = write_photo(site.root / "new" / "fresh.jpg", 500)
    try:
        seen: list[list[str]] = []

        def indexer(roots: list[str]) -> Any:
            seen.append(roots)
            return run_index(Settings.for_db(site.db, threads=1), roots, encoders=[tiny_encoder], progress=False)

        h = Handlers(site.gallery, site.thumbs, indexer=indexer)
        msg = h.index_now()
        assert msg.startswith("indexed: 1 added") and seen == [[str(site.root)]]
        assert site.gallery.search(str(new), 1)[0].path == str(new)
        # While another process holds the writer lock, indexing says so and searching still works.
        with site.gallery.store.writer():
            assert "another imagesim process is writing" in h.index_now()
            assert site.handlers.search_text("fresh", 2).items
    finally:
        shutil.rmtree(site.root / "new")
        run_index(Settings.for_db(site.db, threads=1), [site.root], encoders=[tiny_encoder], progress=False)


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


# ---- features from other branches, through the API contract, with small fakes ----------------------------------

@dataclass
class FakeFaceMatch:
    path: str
    box: tuple[int, int, int, int]
    distance: float
    same_person: bool
    confidence: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "box": list(self.box), "distance": self.distance,
                "same_person": self.same_person, "confidence": self.confidence}


@dataclass
class FakeFace:
    box: tuple[int, int, int, int]
    matches: list[FakeFaceMatch]

    def to_json(self) -> dict[str, Any]:
        return {"box": list(self.box), "matches": [m.to_json() for m in self.matches]}


@dataclass(frozen=True)
class StyleMatch(Match):
    content_score: float | None = None
    style_score: float | None = None
    why: str | None = None


class FeatureGallery(Gallery):
    """The real gallery plus fakes of the style, faces and duplicates API (as the contract in common.md says)."""

    calls: list[tuple[Any, ...]]
    no_faces = False

    def has_space(self, name: str) -> bool:
        return name in ("style", "dup")

    def search(self, query: Any, k: int = 10, mode: str = "content", style_weight: float = 0.5) -> list[Match]:
        self.calls.append(("search", mode, style_weight))
        base = super().search(query, k)
        if mode == "content":
            return base
        return [StyleMatch(m.path, m.score, m.score, m.score * 0.9, why=f"same palette ({mode})") for m in base]

    def faces_enabled(self) -> bool:
        return True

    def faces(self, query: Any, k: int = 10) -> list[FakeFace]:
        if self.no_faces:
            raise ImagesimError("no face found in the upload: try a photo where a face is clearly visible")
        paths = self.store.catalog.paths_for(range(1, 4))
        files = [p for ps in paths.values() for p in ps]
        return [FakeFace((5, 5, 40, 40), [FakeFaceMatch(files[0], (2, 2, 30, 30), 0.31, True, "high"),
                                         FakeFaceMatch(files[1], (10, 8, 50, 40), 0.72, False, "low")]),
                FakeFace((50, 10, 90, 60), [FakeFaceMatch(files[2], (0, 0, 20, 20), 0.45, True, "medium")])]

    def duplicates(self) -> list[list[str]]:
        return [[str(p) for p in sorted(self.store.catalog.paths_for([1, 2]).values())[0]] + ["/gone/missing.jpg"]]


@pytest.fixture()
def features(site: Site, tiny_encoder, monkeypatch: pytest.MonkeyPatch) -> Handlers:
    g = FeatureGallery(site.gallery.store, site.gallery.settings, tiny_encoder)
    g.calls = []

    @dataclass
    class Person:
        id: int
        name: str | None
        face_count: int
        cover_face_id: int

    class People:
        names: dict[int, str | None] = {1: "Ada", 2: None}

        def __init__(self, store: Any) -> None:
            assert store is site.gallery.store

        def list(self) -> list[Person]:
            return [Person(i, n, 3 - i, 10 + i) for i, n in self.names.items()]

        def rename(self, person: int, name: str) -> None:
            self.names[person] = name

        def face_thumbnail(self, face_id: int) -> Any:
            return photo(face_id, (64, 64))

    module = types.ModuleType("imagesim.people")
    module.People = People  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "imagesim.people", module)
    return Handlers(g, site.thumbs)


def test_features_are_detected_through_the_contract(site: Site, features: Handlers) -> None:
    assert (site.handlers.has_style(), site.handlers.has_faces(), site.handlers.has_duplicates()) == (False,) * 3
    assert (features.has_style(), features.has_faces(), features.has_people(), features.has_duplicates()) == (True,) * 4


def test_tabs_appear_only_for_features_that_exist(site: Site, features: Handlers) -> None:
    def tabs(demo: gr.Blocks) -> list[str]:
        return [b["props"].get("label") for b in demo.config["components"] if b["type"] == "tabitem"]

    assert tabs(build_demo(site.gallery, handlers=site.handlers)) == ["Similar"]
    assert tabs(build_demo(features.gallery, handlers=features)) == ["Similar", "Same look", "Faces", "People",
                                                                     "Duplicates"]


def test_style_blend_slider_picks_the_mode(features: Handlers, upload: str) -> None:
    g = features.gallery
    out = features.search_style(upload, 0.3, 4)
    assert len(out.items) == 4 and out.items[0]["why"] == "same palette (blend)"
    features.search_style(upload, 1.0, 4)
    features.search_style(upload, 0.0, 4)
    assert [c[1:] for c in g.calls] == [("blend", 0.3), ("style", 1.0), ("content", 0.0)]  # type: ignore[attr-defined]


def test_faces_are_numbered_with_verdicts(features: Handlers, upload: str) -> None:
    out = features.search_faces(upload)
    annotated, per_face = out.extra
    assert Path(annotated).is_file() and len(per_face) == 2
    first = per_face[0]
    assert [it["same_person"] for it in first] == [True, False]
    assert first[0]["caption"].startswith("✓ high") and first[1]["caption"].startswith("✗ low")
    assert "same person, high confidence" in first[0]["why"]
    features.gallery.no_faces = True  # type: ignore[attr-defined]
    out = features.search_faces(upload)
    assert out.items == [] and out.message.startswith("no face found")


def test_people_listed_and_renamed(features: Handlers) -> None:
    out = features.people()
    assert [it["caption"] for it in out.items] == ["Ada · 2 photos", "Person 2 · 1 photo"]
    assert all(Path(it["thumb"]).is_file() for it in out.items)
    renamed = features.rename_person(out.items[1], "  Grace ")
    assert renamed.items[1]["name"] == "Grace" and renamed.message == "renamed to Grace"
    assert features.rename_person(None, "x").message == "pick a person first"
    assert features.rename_person(out.items[0], " ").message == "type a name"


def test_duplicates_grouped_and_missing_files_skipped(features: Handlers) -> None:
    out = features.duplicates()
    assert out.extra == 1 and [it["group"] for it in out.items] == [1]
    assert "group 1" in out.items[0]["caption"]


def test_api_functions_return_json(site: Site, upload: str, features: Handlers) -> None:
    results = api.search(site.gallery, upload, 3)
    assert json.loads(json.dumps(results)) == results and len(results) == 3
    assert all(os.path.isabs(r["path"]) and set(r) == {"path", "score"} for r in results)
    assert api.search(site.gallery, {"path": upload}, None)[0]["path"].endswith("photo_003.jpg")
    with pytest.raises(ImagesimError, match="k must be at least 1"):
        api.search(site.gallery, upload, 0)
    with pytest.raises(ImagesimError, match="face search is not enabled"):
        api.faces(site.gallery, upload)
    faces = api.faces(features.gallery, upload)
    assert [f["face"] for f in faces] == [1, 2] and faces[0]["matches"][0]["same_person"] is True
    json.dumps(faces)


# ---- the running app ---------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app(site: Site) -> Iterator[gr.Blocks]:
    demo = build_demo(site.gallery, thumbs=site.thumbs)
    opts = launch_options(site.gallery, port=_free_port(), max_file_size="200kb")
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


def test_api_search_with_gradio_client(client: Any, site: Site) -> None:
    from gradio_client import handle_file

    results = client.predict(handle_file(str(site.photos[4])), 3, api_name="/search")
    assert results[0] == {"path": str(site.photos[4]), "score": 1.0} and len(results) == 3
    results = client.predict(handle_file(str(site.photos[4])), api_name="/search")
    assert len(results) == 10  # k is optional
    results = client.predict("a blue square", 2, api_name="/search_text")
    assert len(results) == 2 and all(os.path.isabs(r["path"]) for r in results)


def test_api_errors_are_messages(client: Any, tmp_path: Path) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    bad = tmp_path / "fake.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(AppError, match="fake.png: "):
        client.predict(handle_file(str(bad)), api_name="/search")
    with pytest.raises(AppError, match="the text query is empty"):
        client.predict(" ", api_name="/search_text")


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


def test_file_route_serves_thumbnails_and_nothing_else(server: str, site: Site, upload: str) -> None:
    import httpx

    thumb = site.handlers.search_photo(upload, 1).items[0]["thumb"]
    ok = httpx.get(f"{server}gradio_api/file={thumb}")
    assert ok.status_code == 200 and ok.content[:2] == b"\xff\xd8"  # a JPEG
    probes = [str(site.photos[0]), str(site.db / "catalog.sqlite"), "/etc/passwd",
              f"{site.thumbs.cache_dir}/../../db/catalog.sqlite", "../../../../etc/passwd",
              "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd", f"{site.thumbs.cache_dir}/%2e%2e/%2e%2e/db/catalog.sqlite",
              str(site.db), str(Path.cwd() / "pyproject.toml")]
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
def test_browser_upload_shows_results(server: str, site: Site, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect, sync_playwright = sync_api.expect, sync_api.sync_playwright

    shot = tmp_path / "ui.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server)
            expect(page.locator("#status")).to_contain_text("12 photos", timeout=30_000)
            page.locator("#upload input[type=file]").set_input_files(str(site.photos[6]))
            thumbs = page.locator(".results img")
            expect(thumbs.first).to_be_visible(timeout=30_000)
            expect(page.locator(".results")).to_contain_text("1.00 · photo_006.jpg", timeout=30_000)
            assert thumbs.count() >= 10
            assert all("/gradio_api/file=" in (thumbs.nth(i).get_attribute("src") or "") for i in range(3))
            assert str(site.root) not in page.content()  # the page never links a raw gallery path
            thumbs.nth(1).click()
            expect(page.locator(".facts").first).to_contain_text(str(site.root), timeout=30_000)
            page.wait_for_function("() => [...document.querySelectorAll('.results img')].every(i => i.complete)")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    if os.environ.get("IMAGESIM_UI_SCREENSHOT"):  # keep a copy outside pytest's temp dir, e.g. for docs
        shutil.copy(shot, os.environ["IMAGESIM_UI_SCREENSHOT"])


def test_api_payloads_naming_server_files_are_refused(server: str, site: Site) -> None:
    """A client can only send photos it uploads: a payload naming a file on the server reads nothing."""
    import httpx

    secret = b"imagesim-secret-marker"
    outside = site.db.parent / "outside-secret.jpg"
    outside.write_bytes(secret)
    answered = 0
    for target in (str(outside), str(site.db / "catalog.sqlite"), "/etc/passwd", str(site.photos[0])):
        for endpoint in ("search", "faces"):
            call = httpx.post(f"{server}gradio_api/call/{endpoint}",
                              json={"data": [{"path": target, "meta": {"_type": "gradio.FileData"}}, 5]}, timeout=30)
            assert call.status_code in (200, 403, 404, 422), call.status_code
            if call.status_code != 200:
                continue
            answered += 1
            events = httpx.get(f"{server}gradio_api/call/{endpoint}/{call.json()['event_id']}", timeout=60).text
            assert "event: error" in events and "complete" not in events, (target, events[:200])
            assert secret.decode() not in events and "root:" not in events and site.photos[0].name not in events
    assert answered  # the calls were taken and then refused, not merely rejected at the door


def test_hostile_uploads_get_one_line_or_results(site: Site, tmp_path: Path) -> None:
    """Every hostile or odd file through the upload handler and the /search API: results or one readable line."""
    from imagesim_ui import api

    from imagesim.errors import ImagesimError
    from tests.hostile import EXPECTED, write_hostile_files

    for name, path in write_hostile_files(tmp_path / "up").items():
        out = site.handlers.search_photo(str(path))
        if EXPECTED[name] == "ok":
            assert out.items and not out.message, name
            assert api.search(site.gallery, {"path": str(path)}, 3)[0]["score"] <= 1.0
        else:
            assert out.items == [] and EXPECTED[name] in out.message and "\n" not in out.message, (name, out.message)
            with pytest.raises(ImagesimError, match=EXPECTED[name] or "."):
                api.search(site.gallery, {"path": str(path)}, 3)
