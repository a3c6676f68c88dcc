"""Tests for medrefine.data.datalist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medrefine.data.datalist import (
    case_id,
    datalist_from_folders,
    drop_channel_suffix,
    list_cases,
    load_datalist,
    match_cases,
    write_datalist,
)
from medrefine.errors import InputError


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("case_000.nii.gz", "case_000"),
        ("images/s0001.nii", "s0001"),
        ("a.b.nrrd", "a.b"),
        ("x.mha", "x"),
        ("y.npy", "y"),
        ("CT.NII.GZ", "CT"),
        ("notes.txt", "notes"),
    ],
)
def test_case_id(name, expected):
    assert case_id(name) == expected


def test_list_cases_ignores_other_files(tmp_path):
    _touch(tmp_path, "b.nii.gz", "a.nrrd", "a.json", ".hidden.nii.gz", "readme.txt")
    (tmp_path / "sub").mkdir()
    cases = list_cases(tmp_path)
    assert list(cases) == ["a", "b"]
    assert cases["a"].is_absolute()


def test_list_cases_empty_folder(tmp_path):
    with pytest.raises(InputError, match=r"image folder .* is empty"):
        list_cases(tmp_path)


def test_list_cases_missing_folder(tmp_path):
    with pytest.raises(InputError, match="folder not found"):
        list_cases(tmp_path / "nope")


def test_list_cases_duplicate_case(tmp_path):
    _touch(tmp_path, "a.nii", "a.nii.gz")
    with pytest.raises(InputError, match="two image files for case 'a'"):
        list_cases(tmp_path)


def test_match_cases_unmatched_lists_files(tmp_path):
    _touch(tmp_path / "img", "a.nii.gz", "b.nii.gz", "c.nii.gz")
    _touch(tmp_path / "lab", "a.nii.gz", "c.nii.gz", "d.nii.gz")
    with pytest.raises(InputError, match=r"2 unmatched") as info:
        match_cases({"image": tmp_path / "img", "label": tmp_path / "lab"})
    message = str(info.value)
    assert "case 'b' has no label" in message and "case 'd' has no image" in message


def test_datalist_from_folders_and_round_trip(tmp_path):
    _touch(tmp_path / "ds" / "images", "c1.nii.gz", "c0.nii.gz")
    _touch(tmp_path / "ds" / "labels", "c0.nii.gz", "c1.nii.gz")
    _touch(tmp_path / "ds" / "clean", "c0.nii.gz", "c1.nii.gz")
    dl = datalist_from_folders(
        tmp_path / "ds" / "images", tmp_path / "ds" / "labels", extra={"label_clean": tmp_path / "ds" / "clean"},
        name="demo", labels={0: "background", 1: "liver"},
    )
    assert dl["numTraining"] == 2 and [e["case"] for e in dl["training"]] == ["c0", "c1"]
    assert dl["labels"] == {"0": "background", "1": "liver"}
    path = write_datalist(dl, tmp_path / "ds" / "datalist.json")
    stored = json.loads(path.read_text())
    assert stored["training"][0] == {
        "case": "c0", "image": "images/c0.nii.gz", "label": "labels/c0.nii.gz", "label_clean": "clean/c0.nii.gz"
    }
    entries = load_datalist(path)
    assert entries[1]["label"] == str((tmp_path / "ds" / "labels" / "c1.nii.gz").resolve())
    assert entries == [{k: v for k, v in e.items()} for e in dl["training"]]


def test_write_datalist_relative_outside_folder(tmp_path):
    _touch(tmp_path / "data", "a.nii.gz")
    dl = {"training": [{"case": "a", "image": str(tmp_path / "data" / "a.nii.gz")}]}
    path = write_datalist(dl, tmp_path / "lists" / "dl.json")
    assert json.loads(path.read_text())["training"][0]["image"] == "../data/a.nii.gz"
    assert load_datalist(path)[0]["image"] == str((tmp_path / "data" / "a.nii.gz").resolve())


def test_write_datalist_needs_a_list(tmp_path):
    with pytest.raises(InputError, match="no list under training"):
        write_datalist({"name": "x"}, tmp_path / "d.json")


def test_extra_reserved_key(tmp_path):
    _touch(tmp_path / "i", "a.nii.gz")
    with pytest.raises(InputError, match="reserved"):
        datalist_from_folders(tmp_path / "i", extra={"case": tmp_path / "i"})


def test_load_datalist_missing_file_names_everything(tmp_path):
    _touch(tmp_path, "a.nii.gz")
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": [{"image": "a.nii.gz", "label": "labels/a.nii.gz"}]}))
    with pytest.raises(InputError, match=r"datalist\.json: file not found: .*labels/a\.nii\.gz \(entry 0 of 'training', case 'a', key 'label'"):
        load_datalist(path)
    assert load_datalist(path, check_files=False)[0]["case"] == "a"


def test_load_datalist_bad_key_did_you_mean(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"training": []}))
    with pytest.raises(InputError, match="Did you mean 'training'"):
        load_datalist(path, "trainig")


@pytest.mark.parametrize(
    "content, match",
    [("{not json", "not a valid datalist JSON"), ("[1, 2]", "must be a JSON object"), ('{"training": 3}', "must be a list")],
)
def test_load_datalist_bad_json(tmp_path, content, match):
    path = tmp_path / "d.json"
    path.write_text(content)
    with pytest.raises(InputError, match=match):
        load_datalist(path)


def test_load_datalist_missing_json(tmp_path):
    with pytest.raises(InputError, match="datalist not found"):
        load_datalist(tmp_path / "nope.json")


def test_load_datalist_string_entries_and_duplicates(tmp_path):
    _touch(tmp_path, "a.nii.gz")
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"test": ["a.nii.gz"], "training": [{"case": "x", "image": "a.nii.gz"}] * 2}))
    assert load_datalist(path, "test") == [{"image": str((tmp_path / "a.nii.gz").resolve()), "case": "a"}]
    with pytest.raises(InputError, match=r"case ids must be unique .* \['x'\]"):
        load_datalist(path)


def test_drop_channel_suffix_only_where_the_case_is_named_so():
    images = {"a_0000": Path("a_0000.nii.gz"), "b_0000": Path("b_0000.nii.gz"), "c_0001": Path("c_0001.nii.gz"),
              "d": Path("d.nii.gz"), "d_0000": Path("d_0000.nii.gz")}
    out = drop_channel_suffix(images, {"a", "b_0000", "c", "d"})
    # a: renamed; b: the labels use the full name; c: not channel 0; d: a plain image is already d
    assert sorted(out) == ["a", "b_0000", "c_0001", "d", "d_0000"]
    assert out["a"] == Path("a_0000.nii.gz") and out["d"] == Path("d.nii.gz")


def test_match_cases_nnunet_image_names(tmp_path):
    _touch(tmp_path / "imagesTr", "la_003_0000.nii.gz", "la_004_0000.nii.gz")
    _touch(tmp_path / "labelsTr", "la_003.nii.gz", "la_004.nii.gz")
    entries = match_cases({"image": tmp_path / "imagesTr", "label": tmp_path / "labelsTr"})
    assert [e["case"] for e in entries] == ["la_003", "la_004"]
    assert entries[0]["image"].endswith("la_003_0000.nii.gz")


def test_match_cases_message_is_one_line(tmp_path):
    _touch(tmp_path / "img", "a.nii.gz", "b.nii.gz")
    _touch(tmp_path / "lab", "a.nii.gz")
    with pytest.raises(InputError) as info:
        match_cases({"image": tmp_path / "img", "label": tmp_path / "lab"})
    assert "\n" not in str(info.value) and "b.nii.gz" in str(info.value)
