"""Names are never markup: a gallery of hostile file names (and a person named like one), served, opened in every tab
of headless Chromium; no injected element appears and no request leaves 127.0.0.1. Also the API's default client over
the same names, including one whose bytes are not UTF-8, and screenshots of every tab at 1366 and 390 px wide.

Screenshots go to $IMAGESIM_UI_SHOTS when set (e.g. to look at them, or refresh docs/img/page.png), else pytest's
temp folder.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from imagesim.config import ModelSpec, Settings
from imagesim.encoders import Encoder, create_encoder
from imagesim.faces.people import People
from imagesim.indexer import run_index
from imagesim.search import Gallery
from tests.support.facefakes import fake_analyzer, index_with_fakes, write_face_photo
from tests.support.photos import photo, write_photo

gr = pytest.importorskip("gradio")

from imagesim_ui.app import build_demo  # noqa: E402
from imagesim_ui.serve import launch_options  # noqa: E402
from imagesim_ui.thumbs import Thumbnails  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# What a shared folder may hold: each tries to become an element (or a request to another host) when shown.
HOSTILE = ["<img src=x onerror=alert(1)>.jpg", "<b id=pwn>bold<b>.jpg", '"><marquee>x<marquee>.jpg',
           "<img src=\\\\127.0.0.2:9\\x.png>.jpg", "![m](http:\\\\127.0.0.2:9\\m.png) *em* `code`.jpg"]
NOT_UTF8 = os.fsdecode(b"bad\xff\xfename.jpg")  # a name copied from an old NAS: its bytes are not UTF-8
PERSON = "<img src=\\\\127.0.0.2:9\\p.png id=pwn2>"  # a person's name is user text too
INJECTED = "#pwn, #pwn2, marquee, img[src='x'], img[src*='127.0.0.2'], a[href*='127.0.0.2']"
WIDTHS = (1366, 390)


@dataclass(frozen=True)
class Hostile:
    root: Path  # photos under hostile names (one of them not UTF-8) and a near duplicate of one
    faces: Path  # face photos (fake faces) under hostile names
    db: Path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, tiny_spec: ModelSpec, tiny_encoder: Encoder) -> Hostile:
    base = tmp_path_factory.mktemp("hostile")
    root, faces, db = base / "photos", base / "faces", base / "db"
    for seed, name in enumerate([*HOSTILE, NOT_UTF8, "plain.jpg"]):
        write_photo(root / name, seed, size=(480, 360), quality=90)
    photo(0, (480, 360)).resize((160, 120)).save(root / "<b id=pwn>copy<b>.jpg", quality=60)  # a near duplicate
    for seed, (name, who) in enumerate([(HOSTILE[0], [0, 1]), (HOSTILE[1], [0]), (HOSTILE[3], [1]),
                                         (HOSTILE[2], [0])]):
        write_face_photo(faces / name, who, seed=seed)
    encoders = [tiny_encoder, create_encoder("style"), create_encoder("dup")]
    run_index(Settings.for_db(db, model=tiny_spec, threads=1), [root, faces], encoders=encoders, progress=False)
    index_with_fakes(db, [faces], encoders)
    from imagesim.store import Store

    store = Store.open(db)
    try:
        People(store).rename(People(store).list()[0].id, PERSON)
    finally:
        store.close()
    return Hostile(root, faces, db)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(hostile: Hostile, tiny_encoder: Encoder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("hostile-served")
    before = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(base / "gradio")
    gallery = Gallery.open(hostile.db, encoder=tiny_encoder, face_analyzer=fake_analyzer(), threads=1)
    thumbs = Thumbnails(base / "gradio" / "thumbs", [str(hostile.root), str(hostile.faces)], [str(hostile.db)])
    demo = build_demo(gallery, thumbs=thumbs)
    demo.launch(prevent_thread_lock=True, **launch_options(gallery, port=_free_port()))
    try:
        yield demo.local_url
    finally:
        demo.close()
        gallery.close()
        if before is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = before


def test_default_client_gets_every_name_as_readable_text(server: str, hostile: Hostile) -> None:
    """gradio_client with its defaults: plain results, hostile names as they are, a non-UTF-8 name escaped."""
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    results = client.predict(image=handle_file(str(hostile.root / "plain.jpg")), k=20, api_name="/search")
    files = {r["file"]: r for r in results}
    for name in HOSTILE:
        assert str(hostile.root / name) in files and "escaped" not in files[str(hostile.root / name)]
    shown = str(hostile.root / "bad\\udcff\\udcfename.jpg")  # what `imagesim search --json` writes for it
    assert files[shown]["escaped"] is True
    faces = client.predict(image=handle_file(str(hostile.faces / HOSTILE[0])), k=5, api_name="/faces")
    assert {m["file"] for f in faces for m in f["matches"]} <= {str(p) for p in hostile.faces.iterdir()}


def _outside(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme not in ("data", "blob", "about") and parsed.hostname != "127.0.0.1"


def _tab(page: Any, name: str) -> None:
    """Open a tab; on a narrow page Gradio folds some tabs into a "more" menu."""
    tab = page.get_by_role("tab", name=name)
    if tab.is_visible():
        tab.click()
        return
    page.get_by_role("button", name="More tabs").click()
    page.locator(".overflow-dropdown button", has_text=name).first.click()


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed (.ci/install-browser.sh)")
def test_hostile_names_stay_text_in_every_tab(server: str, hostile: Hostile, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    shots = Path(os.environ.get("IMAGESIM_UI_SHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    requests: list[str] = []
    dialogs: list[str] = []
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                       args=CHROMIUM_ARGS, headless=True)
        try:
            context.on("request", lambda r: requests.append(r.url))
            for width in WIDTHS:
                page = context.new_page()
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.set_viewport_size({"width": width, "height": 900})
                _walk(page, expect, server, hostile, shots, width)
                page.close()
        finally:
            context.close()
    assert not dialogs
    assert requests and not [u for u in requests if _outside(u)]
    assert len(list(shots.glob("*.png"))) >= 10
    print(f"screenshots: {shots}")


def _clean(page: Any) -> None:
    assert page.locator(INJECTED).count() == 0, page.locator(INJECTED).first.evaluate("e => e.outerHTML")


def _walk(page: Any, expect: Any, server: str, hostile: Hostile, shots: Path, width: int) -> None:
    def shot(name: str) -> None:
        # lazy thumbnails below the fold load once scrolled to
        page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)

    page.goto(server)
    # Before any query: the library, newest first; every hostile name is a caption, as text.
    results = page.locator("#results-col .results").first
    expect(results).to_contain_text("bold<b>.jpg", timeout=30_000)
    for name in [*HOSTILE, "bad\\udcff\\udcfename.jpg"]:
        expect(results).to_contain_text(name.removesuffix(".jpg")[-12:], timeout=10_000)
    _clean(page)
    shot("library")
    # Open every photo: its name and path in the detail view stay text.
    tiles = results.locator(".thumbnail-item")
    for i in range(tiles.count()):
        tiles.nth(i).click()
        expect(page.locator(".facts").first).to_contain_text(tiles.nth(i).inner_text(), timeout=30_000)
        _clean(page)
    expect(page.locator(".facts").first).to_contain_text(".jpg")
    page.keyboard.press("ArrowLeft")  # arrow keys step through the results
    expect(page.locator(".facts").first).to_contain_text(tiles.nth(tiles.count() - 2).inner_text(), timeout=30_000)
    shot("detail")
    page.keyboard.press("Escape")
    expect(page.locator(".detail").first).to_be_hidden(timeout=30_000)
    # A text query made of markup: shown in "why" as text; Same look then says it needs a photo.
    page.locator("#text-query textarea, #text-query input").first.fill(HOSTILE[0])
    page.keyboard.press("Enter")
    tiles.first.click()
    expect(page.locator(".facts").first).to_contain_text("matches the words", timeout=30_000)
    _clean(page)
    _tab(page, "Same look")
    expect(page.get_by_text("Same look compares photos, not words")).to_be_visible(timeout=30_000)
    # An upload named like markup that is no photo: the one-line error names it, as text.
    fake = hostile.root.parent / "upload" / HOSTILE[1]
    fake.parent.mkdir(exist_ok=True)
    fake.write_text("not a photo")
    _tab(page, "Similar")
    page.locator("#upload input[type=file]").set_input_files(str(fake))
    expect(page.locator("#message")).to_contain_text("not a supported image", timeout=30_000)
    _clean(page)
    # A photo: Similar, Same look and Faces follow it.
    page.locator("#upload button[aria-label='Remove Image']").first.click()
    page.locator("#upload input[type=file]").set_input_files(str(hostile.faces / HOSTILE[0]))
    expect(results).to_contain_text("1.00 · ", timeout=30_000)
    expect(results).to_have_class(re.compile(r"\bno-pick\b"))  # new results: the old highlight is gone
    shot("similar")
    _tab(page, "Same look")
    expect(page.locator("#results-col .results:visible").first).to_contain_text(" · ", timeout=30_000)
    _clean(page)
    shot("same-look")
    # Typing into the content ⟷ style box re-runs the search: at 0 it compares content, the photo itself scores 1.00.
    style_results = page.locator("#results-col .results:visible").first
    expect(style_results).not_to_contain_text("1.00 · ")
    page.locator("#blend input[type=number]").fill("0")
    page.locator("#blend input[type=number]").press("Enter")
    expect(style_results).to_contain_text("1.00 · ", timeout=30_000)
    _tab(page, "Faces")
    expect(page.locator("#face-choice")).to_contain_text("Face 2", timeout=30_000)
    _clean(page)
    shot("faces")
    # People: the hostile person's name, their page, a refused merge keeps the grid.
    _tab(page, "People")
    people = page.locator(".people")
    expect(people).to_contain_text("127.0.0.2", timeout=30_000)
    people.locator(".thumbnail-item").first.click()
    expect(page.locator(".person-page")).to_contain_text("face", timeout=30_000)
    _clean(page)
    shot("people")
    page.get_by_role("button", name="Merge").click()  # no one chosen to merge with: refused, the grid stays
    expect(page.locator(".confirm")).to_contain_text("choose who this person is the same as", timeout=30_000)
    expect(people.locator(".thumbnail-item")).to_have_count(2)
    page.get_by_role("button", name="Cancel").click()
    # Split one face off, confirmed: three people.
    page.locator(".person-page .results .thumbnail-item").first.click()
    expect(page.locator(".tab-note:visible").first).to_contain_text("chosen: the face in", timeout=30_000)
    page.get_by_role("button", name="Split off the chosen face").click()
    expect(page.locator(".confirm")).to_contain_text("a person of their own?", timeout=30_000)
    _clean(page)
    page.get_by_role("button", name="Yes, do it").click()
    expect(people.locator(".thumbnail-item")).to_have_count(3, timeout=30_000)
    # ... and merged back, confirmed: two.
    people.locator(".thumbnail-item").first.click()
    page.get_by_label("The same person as").click()
    page.get_by_role("option").last.click()
    page.get_by_role("button", name="Merge").click()
    expect(page.locator(".confirm")).to_contain_text("The two become one person", timeout=30_000)
    _clean(page)
    page.get_by_role("button", name="Yes, do it").click()
    expect(people.locator(".thumbnail-item")).to_have_count(2, timeout=30_000)
    _tab(page, "Duplicates")
    expect(page.locator("#results-col .results:visible").first).to_contain_text("copy<b>.jpg", timeout=30_000)
    _clean(page)
    shot("duplicates")
    # More like this: the chosen photo becomes "Your photo" and is highlighted first among its own results.
    _tab(page, "Similar")
    chosen = "plain.jpg"
    tiles.filter(has_text=chosen).first.click()
    expect(page.locator(".facts").first).to_contain_text(chosen, timeout=30_000)
    before = page.locator("#upload img").first.get_attribute("src")
    page.get_by_role("button", name="More like this").first.click()
    expect(page.locator("#upload img").first).not_to_have_attribute("src", before or "", timeout=30_000)
    expect(results.locator(".thumbnail-item.selected")).to_contain_text(f"1.00 · {chosen}", timeout=30_000)
    expect(results.locator(".thumbnail-item.selected")).to_have_count(1)
    expect(results).not_to_have_class(re.compile(r"\bno-pick\b"))
    # Results: a new count re-runs the current query.
    page.locator("#count input[type=number]").fill("8")
    page.locator("#count input[type=number]").press("Enter")
    expect(tiles).to_have_count(8, timeout=30_000)
    _clean(page)
    # Load more: the next page of the same query (12 photos in all, 8 shown), then no more.
    page.locator("#show-more").click()
    expect(tiles).to_have_count(12, timeout=30_000)
    expect(page.locator("#show-more")).to_be_hidden(timeout=30_000)
    _filters(page, expect, tiles, width, shot)
    if width == WIDTHS[0] and os.environ.get("IMAGESIM_UI_SCREENSHOT"):  # the README's picture
        shutil.copy(shots / f"similar-{width}.png", os.environ["IMAGESIM_UI_SCREENSHOT"])





def _filters(page: Any, expect: Any, tiles: Any, width: int, shot: Any) -> None:
    """The filter bar: bad input is one line of text, a filter nobody passes says so, choices are text; "and" /
    "but not" texts compose the query and the detail says which term pulled a result in."""
    message = page.locator("#message")

    def field(name: str, value: str) -> None:
        box = page.locator(f"#{name} input, #{name} textarea").first
        box.fill(value)
        box.press("Enter")

    page.locator("#filter-fold .label-wrap").first.click()  # the fold opens
    field("f-after", "<b id=pwn>soon")
    expect(message).to_contain_text("cannot read '<b id=pwn>soon' as a date", timeout=30_000)
    _clean(page)
    field("f-after", "2100")
    expect(message).to_contain_text("no photo matches these filters", timeout=30_000)
    expect(tiles).to_have_count(0, timeout=30_000)
    expect(page.locator("#filter-fold")).to_contain_text("Filters: after 2100", timeout=30_000)
    shot("filters")
    field("f-after", "")
    field("f-place", HOSTILE[3])
    expect(message).to_contain_text("127.0.0.2:9", timeout=30_000)
    expect(page.locator("#filter-fold")).to_contain_text("place <img", timeout=30_000)  # the title is text too
    _clean(page)
    field("f-place", "")
    expect(tiles).to_have_count(8, timeout=30_000)
    page.locator("#f-people input").first.click()
    expect(page.get_by_role("option").first).to_contain_text("127.0.0.2", timeout=30_000)
    _clean(page)
    page.keyboard.press("Escape")
    field("plus-text", "<i id=pwn>sunset</i>")
    tiles.first.click()
    expect(page.locator(".facts").first).to_contain_text("pulled in by", timeout=30_000)
    _clean(page)
