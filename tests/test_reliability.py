"""Crash safety, damaged stores, hostile files and decode fuzzing. Quick versions here; `-m slow` runs the full ones
that docs/reliability.md reports (python -m bench reliability)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.reliability import crash_trials, decode_fuzz, store_fuzz
from imagesim.config import ModelSpec, Settings
from imagesim.errors import ImageError
from imagesim.images import load_image
from imagesim.indexer import run_index
from tests.support.hostile import EXPECTED, hostile_bytes, write_hostile_files

# Refused at open or by the query that read the damage; or answered exactly as the undamaged database, with the full
# verification then finding the damage (or nothing changed at all: damage in free space).
CATALOG_OUTCOMES = {"refused", "opened (nothing changed)", "answered right (damage not read), verify refused",
                    "opened (file unchanged)"}
SEEDS = [v for k, v in hostile_bytes().items() if EXPECTED[k] == "ok"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hostile_and_odd_files_are_accepted_or_refused_in_one_line(name: str) -> None:
    data = hostile_bytes()[name]
    if EXPECTED[name] == "ok":
        img = load_image(data, draft_size=224)
        assert img.mode == "RGB" and min(img.size) > 0
    else:
        with pytest.raises(ImageError) as info:
            load_image(data, draft_size=224)
        assert EXPECTED[name] in info.value.reason and "\n" not in info.value.reason


def test_hostile_files_never_stop_an_index_run(tmp_path: Path, tiny_spec: ModelSpec) -> None:
    files = write_hostile_files(tmp_path / "pics")
    report = run_index(Settings.for_db(tmp_path / "db", model=tiny_spec), [tmp_path / "pics"])
    refused = {Path(p).name for p, _ in report.failed}
    assert refused == {n for n, want in EXPECTED.items() if want != "ok"}
    assert report.added == len(files) - len(refused)


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(seed=st.sampled_from(SEEDS), cuts=st.lists(st.tuples(st.integers(0, 10**6), st.binary(max_size=16)),
                                                  max_size=6), cut_at=st.integers(0, 10**6))
def test_mutated_images_only_ever_raise_image_error(seed: bytes, cuts: list[tuple[int, bytes]], cut_at: int) -> None:
    data = bytearray(seed)
    for pos, patch in cuts:
        at = pos % max(len(data), 1)
        data[at:at + len(patch)] = patch
    data = data[: max(1, cut_at % (len(data) + 1))] if cut_at % 3 == 0 else data
    try:
        load_image(bytes(data), draft_size=224)
    except ImageError:
        pass


@given(st.binary(max_size=4096))
@settings(max_examples=200, deadline=2000, derandomize=True)
def test_random_bytes_only_ever_raise_image_error(data: bytes) -> None:
    try:
        load_image(data)
    except ImageError:
        pass


def test_kill_9_at_each_kind_of_moment_quick() -> None:
    result = crash_trials(trials=3, photos=60)
    assert result["trials"] == 3
    assert (result["inconsistencies"], result["lost"], result["resume_failures"]) == (0, 0, 0), result["notes"]


def test_damaged_stores_are_refused_never_crash_quick() -> None:
    result = store_fuzz(trials=16)
    assert result["crashes"] == 0 and result["missed"] == 0, result
    assert result["by_kind"]["old-row"], result  # damage to a row written before the last verification
    for kind, outcomes in result["by_kind"].items():
        assert set(outcomes) <= CATALOG_OUTCOMES, (kind, outcomes)
        if kind not in ("catalog", "old-row"):  # every damage to a graph file is caught before hnswlib reads it
            assert set(outcomes) <= {"refused", "opened (file unchanged)"}, (kind, outcomes)


@pytest.mark.slow
def test_kill_9_fifty_times() -> None:
    result = crash_trials(trials=51, photos=300)
    assert (result["inconsistencies"], result["lost"], result["resume_failures"]) == (0, 0, 0), result["notes"]


@pytest.mark.slow
def test_damaged_stores_350_trials() -> None:
    result = store_fuzz(trials=350, repair=True)
    assert result["crashes"] == 0
    # every refused catalog: `imagesim repair` + `imagesim index` brings every photo back, or repair says in one
    # line that the file cannot be opened at all (its first page is gone)
    repaired = result["repair"]
    assert set(repaired) <= {"repaired, every photo back", "repair refused"}, repaired
    assert repaired.get("repaired, every photo back", 0) >= 0.8 * sum(repaired.values()), repaired
    assert result["missed"] == 0
    for kind, outcomes in result["by_kind"].items():
        assert set(outcomes) <= CATALOG_OUTCOMES, (kind, outcomes)
        if kind not in ("catalog", "old-row"):
            assert set(outcomes) <= {"refused", "opened (file unchanged)"}, (kind, outcomes)


@pytest.mark.slow
def test_decode_fuzz_100k_inputs() -> None:
    pytest.importorskip("atheris")
    result = decode_fuzz(100_000)
    assert result["exit"] == 0 and result["executed"] >= 100_000 and not result["findings"], result


def test_clients_query_while_the_indexer_adds_photos_quick() -> None:
    from bench.concurrency import concurrency_trial

    r = concurrency_trial(initial=20, added=80, clients=2)
    assert r["index_exit"] == 0 and r["requests"] >= 8
    assert (r["errors"], r["torn"]) == ([], [])
    assert r["final_rows"] == 100


@pytest.mark.slow
def test_eight_clients_while_2000_photos_are_indexed() -> None:
    from bench.concurrency import concurrency_trial

    r = concurrency_trial(initial=200, added=2000, clients=8)
    assert r["index_exit"] == 0 and (r["errors"], r["torn"]) == ([], [])
    assert r["final_rows"] == 200  # k is capped at 200; the gallery holds 2200
