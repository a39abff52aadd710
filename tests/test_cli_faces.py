"""The `imagesim faces` and `imagesim people` commands: JSON shapes, one-line errors, corrections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagesim.cli import main
from imagesim.encoders import Encoder
from tests.support.facefakes import index_with_fakes, write_face_photo
from tests.support.photos import write_gallery


@pytest.fixture()
def db(tmp_path: Path, tiny_encoder: Encoder) -> Path:
    photos = tmp_path / "photos"
    for i, people in enumerate([[0], [0, 1], [1], [0], [2]]):
        write_face_photo(photos / f"p{i}.jpg", people, seed=i)
    index_with_fakes(tmp_path / "db", [photos], [tiny_encoder])
    return tmp_path / "db"


def test_faces_json_shape(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["faces", str(tmp_path / "photos" / "p1.jpg"), "--db", str(db), "-k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["faces"] and len(out["faces"]) == 2
    first = out["faces"][0]
    assert list(first) == ["box", "people", "matches", "quality", "note"]  # the fields after "matches": added later
    assert len(first["box"]) == 4 and len(first["matches"]) == 3
    [person] = [p for p in first["people"] if p["same_person"]]  # person 0, in three photos
    assert person["photos"] == 3 and person["path"] in {str(tmp_path / "photos" / f"p{i}.jpg") for i in (0, 1, 3)}
    match = first["matches"][0]
    assert list(match) == ["path", "box", "distance", "same_person", "confidence", "quality", "low_band", "note"]
    same = {str(tmp_path / "photos" / f"p{i}.jpg") for i in (0, 1, 3)}  # person 0's photos
    assert {m["path"] for m in first["matches"]} == same and match["same_person"] is True
    assert match["confidence"] in ("high", "medium", "low")


def test_faces_plain_output_names_the_person_first(db: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["faces", str(tmp_path / "photos" / "p1.jpg"), "--db", str(db), "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("face 1 at ")
    assert " is person " in lines[1] and "(3 photos; high confidence, over 3 of their faces)" in lines[1]
    assert "same person" in lines[2]  # then the single faces


def test_no_face_is_one_line(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    [empty] = write_gallery(tmp_path / "other", 1)
    assert main(["faces", str(empty), "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("imagesim: error: no face found") and err.count("\n") == 1


def test_people_list_name_show_forget(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["people", "--db", str(db), "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [p["face_count"] for p in listed["people"]] == [3, 2] and listed["unassigned_faces"] == 1
    top = listed["people"][0]["id"]
    assert main(["people", "--db", str(db), "name", str(top), "Ada"]) == 0
    capsys.readouterr()
    assert main(["people", "--db", str(db), "show", "ada", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["person"]["name"] == "Ada" and len(shown["faces"]) == 3
    assert main(["people", "--db", str(db), "forget", "Ada"]) == 0
    assert "deleted 3 faces" in capsys.readouterr().out
    assert main(["people", "--db", str(db), "show", "Ada"]) == 1
    assert "no person called 'Ada'" in capsys.readouterr().err


def test_people_errors_are_one_line(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["people", "--db", str(db), "forget"]) == 1
    assert main(["people", "--db", str(db), "merge", "1", "1"]) == 1
    assert main(["people", "--db", str(db), "move", "999", "--not"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("imagesim: error: ") for line in err)


def test_a_poor_face_says_so_plain_and_json(tmp_path: Path, tiny_encoder: Encoder,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Faces stored with a poor quality: the plain output flags the face, the JSON carries the quality and the
    wider low band (the verdict itself keeps the 0.6 line)."""
    from imagesim.faces.analyze import FaceAnalyzer
    from imagesim.faces.detect import FaceDetector
    from imagesim.faces.quality import score_quality
    from imagesim.faces.verdicts import LOW_BAND, low_band
    from tests.support.facefakes import FakeEmbedder, FakeHog, FakeQuality

    class Blurred(FakeQuality):
        def assess(self, arr, box, detector_score):  # type: ignore[no-untyped-def]
            return score_quality(120, 40.0, 0.0, 2.0)  # large and frontal, but soft: quality 0.2

    photos = tmp_path / "photos"
    for i, people in enumerate([[0], [0]]):
        write_face_photo(photos / f"p{i}.jpg", people, seed=i)
    index_with_fakes(tmp_path / "db", [photos], [tiny_encoder],
                     FaceAnalyzer(FaceDetector(detector=FakeHog()), FakeEmbedder(), Blurred()))
    query = str(photos / "p0.jpg")
    assert main(["faces", query, "--db", str(tmp_path / "db"), "--json"]) == 0
    [face] = json.loads(capsys.readouterr().out)["faces"]
    assert face["quality"] == pytest.approx(0.2) and face["note"].startswith("low quality face")
    match = face["matches"][0]
    assert match["quality"] == pytest.approx(0.2) and match["low_band"] == low_band(0.2) > LOW_BAND
    [person] = face["people"]  # the person of both photos: judged with the poor faces' quality too
    assert person["quality"] == pytest.approx(0.2) and person["note"] == face["note"]
    assert main(["faces", query, "--db", str(tmp_path / "db")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("face 1 at ") and "low quality face" in first and "quality 0.20" in first
