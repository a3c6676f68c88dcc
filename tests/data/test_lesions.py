"""Lesion cohorts: the RRMediCa folder layout, the lesion table, and bad input refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medrefine.data.lesion_phantoms import LESION_TARGETS, make_lesion_cohort
from medrefine.data.lesions import load_lesions, parse_distance, parse_literal
from medrefine.errors import InputError


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory) -> Path:
    return make_lesion_cohort(tmp_path_factory.mktemp("lesions") / "lesions", patients=4, missing_rate=0.3, seed=5)


@pytest.fixture
def copy(cohort_dir, tmp_path) -> Path:
    out = tmp_path / "lesions"
    shutil.copytree(cohort_dir, out)
    return out


def _first_annotation(root: Path) -> Path:
    return sorted(root.glob("*/annotations.json"))[0]


def _edit(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data["0"].update(changes)
    path.write_text(json.dumps(data))


def test_folder_layout_is_read(cohort_dir):
    cohort = load_lesions(cohort_dir, check_images=True)
    assert cohort.modalities == ("T1", "ART", "DWI", "ADC")
    assert cohort.targets == LESION_TARGETS  # declared in cohort.json
    assert len(cohort) == len(list(cohort_dir.glob("*/annotations.json")))
    record = cohort.records[0]
    assert record["patient"] == record["case"].split("_lesion")[0]
    assert record["centre_space"] == "voxel"
    assert cohort.label_matrix().shape == (len(cohort), 3)
    # some modality is missing somewhere (missing_rate 0.3), and it is None, not noise
    assert any(v is None for r in cohort.records for v in r["images"].values())


def test_literal_parsing_never_evaluates_code():
    assert parse_literal("[[1, 2, 3]]", where="f", key="k") == [[1, 2, 3]]
    with pytest.raises(InputError, match=r"^f: expected a literal list or number in 'k', found"):
        parse_literal("__import__('os').getcwd()", where="f", key="k")


@pytest.mark.parametrize("text, value", [("16.7 mm", 16.7), ("16.7mm", 16.7), ("8", 8.0), (12, 12.0)])
def test_distance_parsing(text, value):
    assert parse_distance(text, where="f") == pytest.approx(value)


def test_table_form(tmp_path, cohort_dir):
    cohort = load_lesions(cohort_dir)
    rows = []
    for r in cohort.records[:4]:
        row = {"patient": r["patient"], "lesion": r["case"], "diameter_mm": r["diameter_mm"]}
        for m in ("ART", "DWI"):
            path = r["images"][m]
            row[f"image_{m}"] = path or ""
            if path:
                import nibabel as nib

                affine = nib.load(path).affine
                row[f"centre_{m}"] = str((affine @ np.append(r["centres"][m], 1.0))[:3].round(3).tolist())
            else:
                row[f"centre_{m}"] = ""
        row["target_enhancement"] = r["targets"]["enhancement"]
        rows.append(row)
    rows[1]["target_enhancement"] = ""  # unlabelled
    import pandas as pd

    pd.DataFrame(rows).to_csv(tmp_path / "lesions.csv", index=False)
    table = load_lesions(tmp_path / "lesions.csv", check_images=True)
    assert table.modalities == ("ART", "DWI") and list(table.targets) == ["enhancement"]
    assert table.label_matrix()[1, 0] == -1
    assert table.records[0]["centre_space"] == "ras"


def test_malformed_annotations(copy):
    path = _first_annotation(copy)
    path.write_text("{not json")
    with pytest.raises(InputError, match=rf"^{path}: expected an annotations JSON object") as err:
        load_lesions(copy)
    assert "\n" not in str(err.value)


def test_unparseable_distance(copy):
    path = _first_annotation(copy)
    _edit(path, distance="about a centimetre")
    with pytest.raises(InputError, match=rf"^{path}: expected a diameter like '16.7 mm' in 'distance', found 'about"):
        load_lesions(copy)


def test_centre_outside_its_image(copy):
    path = _first_annotation(copy)
    data = json.loads(path.read_text())
    files = parse_literal(data["0"]["nifti_files"], where="", key="")
    _edit(path, np_loc_zyx=str([[500, 1, 1]] * len(files)))
    load_lesions(copy)  # the header is opened only when images are checked
    with pytest.raises(InputError, match=rf"^{path}: expected the '\w+' centre inside its image of shape .* found voxel \(1.0, 1.0, 500.0\)"):
        load_lesions(copy, check_images=True)


def test_target_outside_declared_set(copy):
    path = _first_annotation(copy)
    _edit(path, enhancement="7")
    with pytest.raises(InputError, match=rf"^{path}: expected 'enhancement' in \['0', '1', '2'\], found '7'"):
        load_lesions(copy)


def test_listed_modality_file_missing_is_refused(copy):
    """A file named in annotations.json that does not exist is an error, presence flags or not
    (a missing modality is one left out of 'nifti_files')."""
    path = _first_annotation(copy)
    image = next(path.parent.glob("*.nii.gz"))
    image.unlink()
    for allow_missing in (True, False):
        with pytest.raises(InputError, match=rf"^{image}: expected the '\w+' image listed in annotations.json, found no file"):
            load_lesions(copy, allow_missing=allow_missing)


def test_unlisted_modality_without_presence_flags(copy):
    path = _first_annotation(copy)
    data = json.loads(path.read_text())
    files = parse_literal(data["0"]["nifti_files"], where="", key="")
    centres = parse_literal(data["0"]["np_loc_zyx"], where="", key="")
    _edit(path, nifti_files=str(files[1:]), np_loc_zyx=str(centres[1:]))
    data = json.loads(path.read_text())
    data["0"].pop("phy_loc_xyz")
    path.write_text(json.dumps(data))
    modality = files[0][: -len(".nii.gz")]
    assert load_lesions(copy).records[0]["images"][modality] is None  # presence flags on: a missing modality
    with pytest.raises(InputError, match=rf"^{path}: expected a '{modality}' image \(presence flags are off\), found none listed"):
        load_lesions(copy, allow_missing=False)


def test_problems_are_collected_when_asked(copy):
    """With a `problems` list every broken lesion is listed and left out (what `medrefine validate` shows)."""
    first, second = sorted(copy.glob("*/annotations.json"))[:2]
    first.write_text("{not json")
    _edit(second, distance="about a centimetre")
    problems = []
    cohort = load_lesions(copy, problems=problems)
    assert [p.file for p in problems] == [str(first), str(second)]
    assert problems[1].problem.startswith("expected a diameter like '16.7 mm' in 'distance'")
    assert first.parent.name not in cohort.case_ids and second.parent.name not in cohort.case_ids
    assert len(cohort) == len(list(copy.glob("*/annotations.json"))) - 2
