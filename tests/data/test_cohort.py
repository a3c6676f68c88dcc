"""Tests for medrefine.data.cohort: every layout, the class table, and the errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medrefine.data.cohort import LAYOUTS, cohort_classes, load_cohort
from medrefine.data.layouts import write_multinear
from medrefine.errors import InputError

AFFINE = np.diag([1.5, 1.5, 2.0, 1.0])
SHAPE = (10, 9, 8)


def _save(array, path, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def _label(value=1):
    label = np.zeros(SHAPE, np.uint8)
    label[2:6, 2:6, 2:5] = value
    return label


def _pairs(root, images="images", labels="labels", cases=("a", "b")):
    for i, cid in enumerate(cases):
        _save(np.random.default_rng(i).normal(size=SHAPE).astype(np.float32), root / images / f"{cid}.nii.gz")
        _save(_label(), root / labels / f"{cid}.nii.gz")
    return root


def _totalseg(root, cases=("s1", "s0")):
    for cid in cases:
        _save(np.zeros(SHAPE, np.float32), root / cid / "ct.nii.gz")
        for name in ("spleen", "liver", "aorta"):
            mask = np.zeros(SHAPE, np.uint8)
            mask[{"liver": slice(0, 3), "spleen": slice(4, 6), "aorta": slice(7, 9)}[name]] = 1
            _save(mask, root / cid / "segmentations" / f"{name}.nii.gz")
    return root


# ------------------------------------------------------------------------------------ layouts


def test_datalist_file_relative_paths_resolve_against_its_folder(tmp_path, monkeypatch):
    root = _pairs(tmp_path / "ds")
    (root / "lists").mkdir()
    entries = [{"case": c, "image": f"../images/{c}.nii.gz", "label": f"../labels/{c}.nii.gz", "fold": 0}
               for c in ("a", "b")]
    (root / "lists" / "dl.json").write_text(json.dumps({"training": entries}))
    monkeypatch.chdir(tmp_path)  # relative to the datalist, not to the working directory
    cohort = load_cohort(Path("ds/lists/dl.json"))
    assert cohort.layout == "datalist" and cohort.case_ids == ["a", "b"]
    assert cohort.cases[1]["label"] == str((root / "labels" / "b.nii.gz").resolve())
    assert cohort.cases[0]["fold"] == 0 and cohort.root == (root / "lists").resolve()
    assert cohort.classes is None and cohort.num_classes is None


def test_folder_with_datalist_keeps_other_keys_and_maps_label_key(tmp_path):
    root = _pairs(tmp_path / "ds")
    _save(_label(2), root / "clean" / "a.nii.gz")
    entry = {"case": "a", "image": "images/a.nii.gz", "label": "labels/a.nii.gz", "label_clean": "clean/a.nii.gz",
             "points": "images/b.nii.gz"}
    (root / "datalist.json").write_text(json.dumps({"training": [entry], "test": ["images/b.nii.gz"]}))
    cohort = load_cohort(root)
    assert cohort.layout == "datalist" and cohort.source == root / "datalist.json"
    assert set(cohort.layouts) == {"datalist", "image_label_folders"}
    assert cohort.cases[0]["label_clean"].endswith("clean/a.nii.gz") and cohort.cases[0]["points"].endswith("b.nii.gz")
    clean = load_cohort(root, label_key="label_clean")
    assert clean.cases[0]["label"].endswith("clean/a.nii.gz") and "label_clean" not in clean.cases[0]
    test = load_cohort(root, key="test", require=("image",))
    assert test.cases == [{"case": "b", "image": str((root / "images" / "b.nii.gz").resolve())}]


@pytest.mark.parametrize("images, labels", [("images", "labels"), ("imagesTr", "labelsTr")])
def test_image_label_folders_paired_by_case_id(tmp_path, images, labels):
    root = _pairs(tmp_path / "ds", images, labels, cases=("c2", "c10", "c1"))
    (root / images / "notes.txt").write_text("ignored")
    cohort = load_cohort(root)
    assert cohort.layout == "image_label_folders"
    assert cohort.case_ids == ["c1", "c10", "c2"]
    assert cohort.cases[0]["label"] == str((root / labels / "c1.nii.gz").resolve())


def test_unmatched_files_are_listed(tmp_path):
    root = _pairs(tmp_path / "ds")
    _save(_label(), root / "labels" / "orphan.nii.gz")
    _save(np.zeros(SHAPE, np.float32), root / "images" / "lonely.nii.gz")
    with pytest.raises(InputError, match=r"(?s)ds: 2 problems:\n  image has no label.*lonely\.nii\.gz.*\n  label has no image.*orphan"):
        load_cohort(root)
    lenient = load_cohort(root, strict=False)
    assert sorted(p.case for p in lenient.problems) == ["lonely", "orphan"]


def test_multinear(tmp_path):
    shape = np.zeros((6, 6, 6), np.uint8)
    shape[1:4, 1:4, 1:4] = 2
    root = write_multinear(tmp_path / "near", [{"case": c, "appearance": np.zeros((6, 6, 6)), "shape": shape,
                                                 "info": {"age": 50}} for c in ("p1", "p0")])
    cohort = load_cohort(root)
    assert cohort.layout == "multinear" and cohort.case_ids == ["p1", "p0"]  # info.csv order
    assert cohort.cases[0]["image"].endswith("appearance/p1.npy") and cohort.cases[0]["label"].endswith("shape/p1.npy")
    assert cohort.cases[0]["info"] == {"age": 50}
    (root / "shape" / "p0.npy").unlink()
    with pytest.raises(InputError, match=r"file not found: .*shape/p0\.npy \(case 'p0', key 'label'\)"):
        load_cohort(root)


def test_totalsegmentator_cases_and_merged_labels(tmp_path):
    root = _totalseg(tmp_path / "ts")
    cohort = load_cohort(root, structures=["spleen", "liver"])
    assert cohort.layout == "totalsegmentator" and cohort.case_ids == ["s0", "s1"]
    assert cohort.classes == {0: "background", 1: "spleen", 2: "liver"}
    assert cohort.cases[0]["segmentations"] == str((root / "s0" / "segmentations").resolve())
    label = Path(cohort.cases[1]["label"])
    assert label == (root / ".multilabel" / "labels" / "s1.nii.gz").resolve() and not label.exists()
    cohort.materialize_labels()
    merged = np.asarray(nib.load(str(label)).dataobj)
    assert merged[0, 0, 0] == 2 and merged[4, 0, 0] == 1 and merged[7, 0, 0] == 0  # aorta left out
    assert json.loads((root / ".multilabel" / "classes.json").read_text()) == {"0": "background", "1": "spleen",
                                                                              "2": "liver"}
    assert load_cohort(root).classes == {0: "background", 1: "aorta", 2: "liver", 3: "spleen"}  # alphabetical


def test_dicom_series_folder_is_one_image(shared_data):
    cohort = load_cohort(shared_data / "ct_dicom", require=("image",))
    assert cohort.layout == "dicom_series"
    assert cohort.cases == [{"case": "ct_dicom", "image": str((shared_data / "ct_dicom").resolve())}]
    with pytest.raises(InputError, match=r"ct_dicom: case 'ct_dicom': has no 'label'; it has \['case', 'image'\]"):
        load_cohort(shared_data / "ct_dicom")


def test_dicom_series_folders_as_images(shared_data, tmp_path):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "images" / "ct").symlink_to(shared_data / "ct_dicom", target_is_directory=True)
    (root / "labels").mkdir()
    (root / "labels" / "ct.nii.gz").symlink_to(shared_data / "ct_dicom_seg.nii.gz")
    cohort = load_cohort(root)
    assert cohort.layout == "image_label_folders" and cohort.case_ids == ["ct"]
    assert cohort.cases[0]["image"].endswith("ct_dicom")


def test_image_folder_for_inference(tmp_path):
    root = tmp_path / "imgs"
    for cid in ("x", "y"):
        _save(np.zeros(SHAPE, np.float32), root / f"{cid}.nii.gz")
    assert load_cohort(root, require=("image",)).case_ids == ["x", "y"]
    with pytest.raises(InputError, match=r"2 problems:\n  case 'x': has no 'label'"):
        load_cohort(root)


# ------------------------------------------------------------------------------ class table


def test_class_table_sources(tmp_path):
    root = _pairs(tmp_path / "ds")
    assert load_cohort(root).classes is None
    (root / "classes.json").write_text(json.dumps({"1": "liver", "3": "spleen"}))
    assert load_cohort(root).classes == {0: "background", 1: "liver", 3: "spleen"}
    entries = [{"case": "a", "image": "images/a.nii.gz", "label": "labels/a.nii.gz"}]
    (root / "datalist.json").write_text(json.dumps({"labels": {"0": "background", "1": "kidney"}, "training": entries}))
    assert load_cohort(root).classes == {0: "background", 1: "kidney"}  # the datalist's own table wins
    (root / "datalist.json").write_text(json.dumps({"training": entries}))
    assert load_cohort(root / "datalist.json").classes[3] == "spleen"  # classes.json beside the datalist
    assert load_cohort(root).num_classes == 4


def test_cohort_classes_default_and_task(tmp_path):
    root = _pairs(tmp_path / "ds")
    assert cohort_classes(root, default=3) == {0: "background", 1: "class_1", 2: "class_2"}
    with pytest.raises(InputError, match=r"no class table .*set `num_classes`"):
        cohort_classes(root)
    (root / "classes.json").write_text(json.dumps({"total": {"1": "spleen"}, "total_mr": {"1": "liver"}}))
    with pytest.raises(InputError, match="choose one with `task`"):
        cohort_classes(root)
    assert cohort_classes(root, task="total_mr", default=5) == {0: "background", 1: "liver"}


def test_cohort_classes_does_not_depend_on_the_path_given(tmp_path):
    """The refinement config's old `$` logic fell back to numbers for a datalist file; this does not."""
    root = _pairs(tmp_path / "ds")
    (root / "classes.json").write_text(json.dumps({"1": "myocardium"}))
    entries = [{"case": "a", "image": "images/a.nii.gz", "label": "labels/a.nii.gz"}]
    (root / "datalist.json").write_text(json.dumps({"training": entries}))
    assert cohort_classes(root, default=11) == cohort_classes(root / "datalist.json", default=11) == {
        0: "background", 1: "myocardium"}


# ---------------------------------------------------------------------------------- errors


def test_unrecognised_folder_names_the_path_and_what_was_looked_for(tmp_path):
    (tmp_path / "misc" / "sub").mkdir(parents=True)
    (tmp_path / "misc" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"misc: not a dataset: looked for datalist\.json, images/ \+ labels/, "
                                         r"imagesTr/ \+ labelsTr/, MultiNeAR .*TotalSegmentator") as info:
        load_cohort(tmp_path / "misc")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("make, match", [
    (lambda p: None, "found no such file or folder"),
    (lambda p: p.mkdir(), "found an empty folder"),
    (lambda p: [(p / "images").mkdir(parents=True), (p / "labels").mkdir()], "are empty"),
])
def test_missing_and_empty(tmp_path, make, match):
    make(tmp_path / "ds")
    with pytest.raises(InputError, match=match):
        load_cohort(tmp_path / "ds")


def test_duplicate_case_ids_are_refused(tmp_path):
    root = _pairs(tmp_path / "ds")
    entry = {"case": "a", "image": "images/a.nii.gz", "label": "labels/a.nii.gz"}
    (root / "datalist.json").write_text(json.dumps({"training": [entry, dict(entry, image="images/b.nii.gz")]}))
    with pytest.raises(InputError, match=r"datalist\.json: case id listed 2 times .* \(case 'a'\)"):
        load_cohort(root)
    assert [p.case for p in load_cohort(root, strict=False).problems] == ["a"]


def test_missing_file_names_datalist_case_and_key(tmp_path):
    root = _pairs(tmp_path / "ds")
    entries = [{"case": c, "image": f"images/{c}.nii.gz", "label": f"labels/{c}.nii.gz"} for c in ("a", "b")]
    (root / "datalist.json").write_text(json.dumps({"training": entries}))
    (root / "labels" / "b.nii.gz").unlink()
    with pytest.raises(InputError, match=r"datalist\.json: file not found: .*labels/b\.nii\.gz \(case 'b', key 'label'\)"):
        load_cohort(root)


def test_unknown_list_and_layout_suggest(tmp_path):
    root = _pairs(tmp_path / "ds")
    (root / "datalist.json").write_text(json.dumps({"training": []}))
    with pytest.raises(InputError, match="Did you mean 'training'"):
        load_cohort(root, key="trainig")
    with pytest.raises(InputError, match=r"not in the 'multinear' layout; found \['datalist', 'image_label_folders'\]"):
        load_cohort(root, layout="multinear")
    assert set(LAYOUTS) >= {"datalist", "multinear", "totalsegmentator"}


def test_fill_from_a_folder_by_case_id(tmp_path):
    root = _pairs(tmp_path / "ds")
    (root / "pts").mkdir()
    (root / "pts" / "a.json").write_text("{}")
    cohort = load_cohort(root, require=("image", "points"), fill_from={"points": root / "pts"}, strict=False)
    assert cohort.cases[0]["points"] == str((root / "pts" / "a.json").resolve())
    assert [(p.case, p.problem) for p in cohort.problems] == [("b", "has no 'points'; it has ['case', 'image', 'label']")]


def test_reading_opens_no_image(tmp_path):
    """Reading lists files only: a file that is not an image is validate's business, not load_cohort's."""
    root = _pairs(tmp_path / "ds")
    (root / "images" / "a.nii.gz").write_bytes(b"not a nifti")
    assert load_cohort(root).case_ids == ["a", "b"]


def test_copy_of_a_phantom_cohort_moves_as_a_whole(tmp_path):
    from medrefine.data.phantoms import make_cardiac_cohort

    make_cardiac_cohort(tmp_path / "c", cases=2, size=16, seed=0)
    shutil.move(tmp_path / "c", tmp_path / "moved")
    cohort = load_cohort(tmp_path / "moved")
    assert cohort.classes[1] == "myocardium" and cohort.cases[0]["label"].endswith("labels_noisy/case_000.nii.gz")
    assert all(Path(v).is_file() for c in cohort.cases for k, v in c.items() if k != "case")


def test_lesion_cohort_is_a_layout_read_only_when_asked(tmp_path):
    """Lesion folders (and a lesion table) are the `lesions` layout: one case per lesion with its
    modality files, for `medrefine validate`; an image/label loader refuses them in one line."""
    import pandas as pd

    from medrefine.data.lesion_phantoms import make_lesion_cohort
    from medrefine.data.lesions import load_lesions

    root = make_lesion_cohort(tmp_path / "lesions", patients=2, lesions_per_patient=(1, 1), missing_rate=0.0, seed=1)
    cohort = load_cohort(root, strict=False, lesions=True)
    assert cohort.layout == "lesions" and cohort.case_ids == load_lesions(root).case_ids
    assert {k for k in cohort.cases[0] if k.startswith("image_")} == {"image_T1", "image_ART", "image_DWI", "image_ADC"}
    record = cohort.cases[0]["record"]
    pd.DataFrame([{"patient": record["patient"], "lesion": "x", "diameter_mm": 9.0, "image_T1": record["images"]["T1"],
                   "centre_T1": "[0.0, 0.0, 0.0]", "target_t": "1"}]).to_csv(tmp_path / "table.csv", index=False)
    assert load_cohort(tmp_path / "table.csv", lesions=True).cases[0]["image_T1"] == record["images"]["T1"]
    with pytest.raises(InputError, match=rf"^{root}: expected cases of image/label, found a lesion cohort"):
        load_cohort(root)
