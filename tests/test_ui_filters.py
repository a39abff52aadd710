"""The page's filter bar, composed queries, "Load more" and the API's filter and paging parameters (issue 16), and
the page's offline indexing and plain status line (issue 17). Fixtures: the real database of tests/test_ui.py."""

# ruff: noqa: F811 - the fixtures of tests/test_ui.py, imported by name, are the tests' parameters
from __future__ import annotations

import os
from typing import Any

import pytest

from imagesim.indexer import IndexReport
from tests.test_ui import (  # noqa: F401 - fixtures
    Site,
    app,
    client,
    empty,
    indexed,
    served,
    server,
    site,
    upload,
)

pytest.importorskip("gradio")

from imagesim_ui import handlers as handlers_module  # noqa: E402
from imagesim_ui.app import _header  # noqa: E402
from imagesim_ui.filterbar import read, summary  # noqa: E402
from imagesim_ui.handlers import NO_FILTER_MATCH, WAITS_FOR_MODEL, Handlers  # noqa: E402

NONE = ("", "", "", "", [], "", [], "score")  # the bar as a page opens it


def bar(**fields: Any) -> tuple[Any, ...]:
    names = ["after", "before", "folder", "camera", "people", "place", "types", "sort"]
    return tuple(fields.get(n, v) for n, v in zip(names, NONE, strict=True))


def folders(out: Any) -> set[str]:
    return {os.path.basename(os.path.dirname(it["path"])) for it in out.items}


def test_an_empty_bar_filters_nothing() -> None:
    asked = read(*NONE)
    assert asked.filters is None and asked.sort == "score" and not asked.error


@pytest.mark.parametrize(("fields", "says"), [
    ({"after": "last summer"}, "cannot read 'last summer' as a date"),
    ({"before": "2019-02-30"}, "is not a real date"),
    ({"after": "2020", "before": "2019"}, "is later than"),
    ({"types": ["bmpx"]}, "unknown file type"),
    ({"place": "91,10"}, "latitude must be within"),
])
def test_bad_input_is_one_line(fields: dict[str, Any], says: str) -> None:
    asked = read(*bar(**fields))
    assert says in asked.error and "\n" not in asked.error and asked.filters is None


def test_the_folded_bar_says_which_filters_are_on() -> None:
    assert summary(*NONE) == "Filters"
    assert summary(*bar(after="2019", people=["Ada", "Ben"], sort="date")) == \
        "Filters: after 2019 · with Ada, Ben · newest first"


def test_a_place_is_a_name_or_a_position() -> None:
    assert read(*bar(place="Lisbon")).filters.place == "Lisbon"  # type: ignore[union-attr]
    near = read(*bar(place="38.72, -9.14, 5")).filters.near  # type: ignore[union-attr]
    assert near is not None and (near.lat, near.lon, near.km) == (38.72, -9.14, 5.0)


def test_filters_reach_every_search(site: Site, upload: str) -> None:
    h = site.handlers
    people = read(*bar(folder=str(site.root.parent / "people"))).filters
    photos = read(*bar(folder=str(site.root))).filters
    assert folders(h.search_photo(upload, 40, filters=photos)) == {"photos"}
    assert folders(h.search_text("a red circle", 40, filters=people)) == {"people"}
    assert folders(h.search_style(upload, 0.5, 40, filters=people)) == {"people"}
    assert folders(h.library(0, 40, people)) == {"people"} and len(h.library(0, 40, people).items) == 5
    assert h.duplicates(filters=photos).items and not h.duplicates(filters=people).items
    ada = read(*bar(people=["Ada"])).filters
    assert folders(h.search_text("a red circle", 40, filters=ada)) == {"people"}


def test_a_filter_nobody_passes_says_so(site: Site, upload: str) -> None:
    h = site.handlers
    future = read(*bar(after="2100")).filters
    for out in (h.search_photo(upload, 8, filters=future), h.search_text("sky", 8, filters=future),
                h.search_style(upload, 1.0, 8, filters=future), h.library(0, 8, future), h.duplicates(filters=future)):
        assert out.items == [] and out.message == NO_FILTER_MATCH


def test_unknown_person_or_place_is_one_line(site: Site) -> None:
    for fields in ({"people": ["Nobody"]}, {"place": "Atlantis"}):
        out = site.handlers.search_text("sky", 8, filters=read(*bar(**fields)).filters)
        assert out.items == [] and out.message and "\n" not in out.message
    assert site.handlers.people_names() == ["Ada"]


def test_sorted_by_date_newest_first(site: Site) -> None:
    out = site.handlers.search_text("sky", 8, sort="date")
    taken = [it["taken"] for it in out.items]
    assert len(taken) == 8 and all(taken) and taken == sorted(taken, reverse=True)


def test_load_more_pages_through_the_results(site: Site, upload: str) -> None:
    h = site.handlers
    whole = [it["path"] for it in h.search_text("sky", 8).items]
    pages = [it["path"] for off in (0, 4) for it in h.search_text("sky", 4, offset=off).items]
    assert pages == whole and len(set(whole)) == 8
    assert h.search_photo(upload, 4, offset=200).message == "no more results"


def test_composed_query_says_which_term_pulled_each_in(site: Site, upload: str) -> None:
    out = site.handlers.search_photo(upload, 6, plus="a red circle", minus="a blue square")
    assert len(out.items) == 6
    for it in out.items:
        assert it["why"].startswith("pulled in by ") and "a blue square" in it["why"]
        assert it["caption"].count(" · ") == 2  # score · the term that pulled it in · name
    facts = site.handlers.details(out.items[0])[1]
    assert "similarity to each term: the photo " in facts and "&#x27;a blue square&#x27; " in facts
    words = site.handlers.search_text("sky", 4, minus="grass")
    assert words.items and all("pulled in by 'sky'" in it["why"] for it in words.items)


def test_index_now_reuses_only_a_loaded_model_and_says_what_waits(site: Site,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    given: list[Any] = []

    def fake_run(settings: Any, roots: Any, **kw: Any) -> IndexReport:
        given.append(kw["content_encoder"])
        return IndexReport(waiting_for_model="content search waits for the model weights: run imagesim model save")

    monkeypatch.setattr(handlers_module, "run_index", fake_run)
    monkeypatch.setattr(site.gallery, "_encoder", None)  # nothing loaded yet: the page must not build it
    message = site.handlers.index_now()
    assert given == [None] and message.endswith("waits for the model weights: run imagesim model save")


def test_status_without_content_vectors_and_model_names_as_text(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    status = site.gallery.status()
    monkeypatch.setattr(site.gallery, "status", lambda: {**status, "model": None})
    assert WAITS_FOR_MODEL in site.handlers.status_line() and "?" not in site.handlers.status_line()
    header = _header("12 photos · model **bold** `code` <i>x</i>.json")
    assert "<b>" not in header and "<code>" not in header and "<i>" not in header
    assert "**bold** `code` &lt;i&gt;x&lt;/i&gt;.json" in header


def test_api_takes_filters_offset_and_sort(client: Any, served: Site) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    people = str(served.root.parent / "people")
    got = client.predict(text="a red circle", k=20, folder=people, api_name="/search_text")
    assert len(got) == 5 and all(r["file"].startswith(people + os.sep) for r in got)
    whole = client.predict(text="sky", k=6, api_name="/search_text")
    pages = [r for off in (0, 3) for r in client.predict(text="sky", k=3, offset=off, api_name="/search_text")]
    assert [r["file"] for r in pages] == [r["file"] for r in whole]
    dated = client.predict(image=handle_file(str(served.photos[0])), k=5, sort="date", api_name="/search")
    assert [r["taken"] for r in dated] == sorted((r["taken"] for r in dated), reverse=True)
    assert client.predict(text="sky", after="2100", api_name="/search_text") == []
    ada = client.predict(text="sky", person="Ada", api_name="/search_text")
    assert ada and all(r["file"].startswith(people + os.sep) for r in ada)
    with pytest.raises(AppError, match="cannot read 'soon' as a date"):
        client.predict(text="sky", before="soon", api_name="/search_text")
    with pytest.raises(AppError, match="Nobody"):
        client.predict(text="sky", person="Nobody", api_name="/search_text")
    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    filters = ["after", "before", "folder", "camera", "near", "place", "person", "type"]
    assert [p["parameter_name"] for p in info["/search"]["parameters"]] == ["image", "k", *filters, "offset", "sort"]
    assert all(p["parameter_has_default"] for p in info["/search_text"]["parameters"][1:])
    assert [p["parameter_name"] for p in info["/faces"]["parameters"]] == ["image", "k", *filters]


def test_an_empty_database_is_not_a_filter_that_matches_nothing(empty: Handlers) -> None:
    assert empty.library(0, 8, None).message.startswith("no photos indexed yet")
