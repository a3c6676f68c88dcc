"""Every bundle mode refuses each broken input in one line, before writing, without touching the inputs.

A bundle is covered by being added to ``bundles/``: its ``configs/metadata.json`` declares under
``medrefine_inputs`` what each mode reads (``image``, ``label``, ``points``, or ``lesions``: a lesion
cohort, whose modality files and ``annotations.json`` are broken instead; or ``cine``, ``cine_label``
and ``transform``: a BIDS-like cine cohort's 4D image, 4D label and ``.tfm`` file), and the
broken-input kinds that apply follow from that; the cohort is the one its ``configs/smoke.json`` names
(``smoke_cohort``), as in the bundle harness. Each run goes through :func:`medrefine.bundle.run_bundle` in
this process (the checks run before any training, so a refused run takes well under a second);
a few runs go through ``medrefine run`` in a subprocess for the exit code and the absence of a
traceback. Every run asserts: an ``InputError`` whose text is one line naming the broken file (or
folder), no new file anywhere in the bundle's run folder, every input byte-identical afterwards.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medrefine.bundle import list_bundles, run_bundle
from medrefine.bundle.discovery import bundles_root
from medrefine.data.lesion_phantoms import LESION_TARGETS
from medrefine.errors import INPUT_ERROR_EXIT_CODE, InputError

BUNDLES = list_bundles(bundles_root())
REPO = Path(__file__).resolve().parents[2]

#: broken-input kind -> what a mode must read for the kind to apply
IMAGE_KINDS = ("truncated", "text", "empty_file", "4d", "nan", "missing", "empty_folder")
LABEL_KINDS = ("label_range", "shape", "affine")
#: what a lesion's annotations.json can get wrong
ANNOTATION_KINDS = ("annotations", "centre_outside", "distance", "target_value")
#: a lesion cohort: the image kinds on one modality file (missing: listed, not there), and the annotation kinds
LESION_KINDS = IMAGE_KINDS + ANNOTATION_KINDS
#: a cine cohort (4D): the image kinds with a 3D image where a 4D cine is expected; its label's and transform's kinds
CINE_KINDS = tuple("3d" if k == "4d" else k for k in IMAGE_KINDS)
CINE_LABEL_KINDS = ("label_range", "frames", "shape", "affine")
TRANSFORM_KINDS = ("transform_missing", "transform_text")
#: what a mode reads (metadata.json) -> the kinds that break it
KINDS_OF = {"image": IMAGE_KINDS, "label": LABEL_KINDS, "points": ("point_outside",), "lesions": LESION_KINDS,
            "cine": CINE_KINDS, "cine_label": CINE_LABEL_KINDS, "transform": TRANSFORM_KINDS}
#: smoke.json's ``smoke_cohort`` -> the folder of ``base`` the bundle runs on
COHORT_FOLDERS = {"lesions": "lesions", "cine": "cine"}


def _smoke_cohort(bundle) -> str:
    """``"lesions"``, ``"cine"`` or ``"cohort"``: the folder of ``base`` the bundle runs on (its smoke.json's ``smoke_cohort``)."""
    smoke = json.loads((bundle.path / "configs" / "smoke.json").read_text())
    return COHORT_FOLDERS.get(smoke.get("smoke_cohort"), "cohort")


def _reads(bundle) -> dict[str, list[str]]:
    meta = json.loads((bundle.path / "configs" / "metadata.json").read_text())
    assert "medrefine_inputs" in meta, f"{bundle.name}: metadata.json lacks `medrefine_inputs` (what each mode reads)"
    return meta["medrefine_inputs"]


def _cases():
    out = []
    for bundle in BUNDLES:
        for mode, reads in _reads(bundle).items():
            kinds = [kind for read in reads for kind in KINDS_OF[read]]
            kinds += ["output_is_input"] if mode == "inference" else []
            out += [pytest.param(bundle, mode, kind, id=f"{bundle.name}-{mode}-{kind}") for kind in kinds]
    return out


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _first_lesion(cohort: Path) -> Path | None:
    """The annotations.json of the first lesion of a lesion cohort (None for another cohort)."""
    return next(iter(sorted(cohort.glob("*/annotations.json"))), None)


def _break_annotation(kind: str, path: Path) -> Path:
    if kind == "annotations":
        path.write_text('{"0": {"nifti_files": ')
        return path
    document = json.loads(path.read_text())
    roi = document["0"]
    if kind == "centre_outside":
        roi["np_loc_zyx"] = str([[500, 1, 1]] * len(ast.literal_eval(roi["nifti_files"])))
    elif kind == "distance":
        roi["distance"] = "about a centimetre"
    elif kind == "target_value":
        roi[next(iter(LESION_TARGETS))] = "7"  # outside the classes cohort.json declares
    path.write_text(json.dumps(document))
    return path


def _cine_files(cohort: Path) -> tuple[Path, Path, Path] | None:
    """(4D image, 4D label, transform) of the first subject of a cine cohort (None for another cohort)."""
    if not (cohort / "sub-000" / "anat").is_dir():
        return None
    return (cohort / "sub-000" / "anat" / "sub-000_short_axis.nii.gz",
            cohort / "derivatives" / "sa_segmentation" / "sub-000" / "sub-000_sa_seg.nii.gz",
            cohort / "derivatives" / "sa_coordinates" / "sub-000" / "sa_axis_affine.tfm")


def _break(kind: str, cohort: Path) -> Path:
    """Break case_000 (or the first lesion, or cine subject) of ``cohort`` in one way; return the file (or folder)
    the error must name."""
    lesion, cine = _first_lesion(cohort), _cine_files(cohort)
    if kind in ANNOTATION_KINDS:
        return _break_annotation(kind, lesion)
    if lesion is not None:  # its first modality file
        image = lesion.parent / ast.literal_eval(json.loads(lesion.read_text())["0"]["nifti_files"])[0]
    elif cine is not None:
        image = cine[0]
    else:
        image = cohort / "images" / "case_000.nii.gz"
    label = cine[1] if cine is not None else cohort / "labels_noisy" / "case_000.nii.gz"
    if kind == "transform_missing":  # with `require_transform: true` (see _setup)
        cine[2].unlink()
        return cine[2]
    if kind == "transform_text":
        cine[2].write_text("this is not an ITK transform\n")
        return cine[2]
    if kind == "truncated":
        image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
        return image
    if kind == "text":
        image.write_text("this is a text file, not an image\n")
        return image
    if kind == "empty_file":
        image.write_bytes(b"")
        return image
    if kind == "missing":
        image.unlink()
        return image.parent if cine is not None else image  # a subject's anat/ folder without its cine
    if kind in ("4d", "3d", "nan"):
        nii = nib.load(str(image))
        array = np.asarray(nii.dataobj, dtype=np.float32)
        if kind == "nan":
            array[4:6, 4:6, 1:3] = np.nan
        elif kind == "3d":
            array = array[..., 0]
        else:
            array = np.stack([array, array], axis=-1)
        nib.save(nib.Nifti1Image(array, nii.affine), str(image))
        return image
    if kind in LABEL_KINDS + CINE_LABEL_KINDS:
        nii = nib.load(str(label))
        array, affine = np.asarray(nii.dataobj).astype(np.int16), nii.affine.copy()
        if kind == "label_range":
            array[(0,) * array.ndim] = 99
        elif kind == "frames":
            array = array[..., :-1]
        elif kind == "shape":
            array = array[:-2]
        else:
            affine[:3, 3] += 5.0
        nib.save(nib.Nifti1Image(array, affine), str(label))
        return label
    if kind == "point_outside":
        path = cohort / "points" / "case_000.json"
        document = json.loads(path.read_text())
        document["points"][0]["world"] = [9999.0, 9999.0, 9999.0]
        path.write_text(json.dumps(document))
        return path
    raise KeyError(kind)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny cohort (3 cases of 16^3) with point files, a tiny lesion cohort (4 patients, 1-2 lesions each,
    no modality missing), a tiny cine cohort (3 subjects of 16x16x4, 4 frames), and trained bundle copies
    where inference needs a model."""
    from click.testing import CliRunner

    from medrefine.cli import cli
    from medrefine.data.phantoms import make_cardiac_cohort

    root = tmp_path_factory.mktemp("bad_input")
    cohort = root / "cohort"
    make_cardiac_cohort(cohort, cases=3, size=16, noise="moderate", seed=3)
    result = CliRunner().invoke(cli, ["points", "simulate", "--labels", str(cohort / "labels"), "--out",
                                      str(cohort / "points"), "--format", "json"])
    assert result.exit_code == 0, result.output
    if any(_smoke_cohort(b) == "lesions" for b in BUNDLES):
        from medrefine.data.lesion_phantoms import make_lesion_cohort

        make_lesion_cohort(root / "lesions", patients=4, lesions_per_patient=(1, 2), missing_rate=0.0, seed=3)
    if any(_smoke_cohort(b) == "cine" for b in BUNDLES):
        from medrefine.data.cine_phantoms import make_cine_cohort

        make_cine_cohort(root / "cine", subjects=3, size=(16, 16), slices=4, frames=4, spacing=(9.0, 9.0, 16.0), seed=3)
    for bundle in BUNDLES:
        shutil.copytree(bundle.path, root / bundle.name, ignore=shutil.ignore_patterns("models", "eval", "__pycache__"))
        if _smoke_cohort(bundle) == "lesions":  # inference ensembles trained fold models: train one fold (seconds)
            run_bundle(root / bundle.name, "train", {"dataset_dir": str(root / "lesions"), "device": "cpu",
                                                      "work_dir": str(root / bundle.name)},
                       extra_configs=[root / bundle.name / "configs" / "smoke.json"])
        if _smoke_cohort(bundle) == "cine":  # code fitting needs a trained network: one epoch (seconds)
            run_bundle(root / bundle.name, "train", {"dataset_dir": str(root / "cine"), "device": "cpu", "epochs": 1,
                                                      "work_dir": str(root / bundle.name)},
                       extra_configs=[root / bundle.name / "configs" / "smoke.json"])
    # annotation_refinement's case loader is sized by the trained model: train it once (seconds)
    near = root / "annotation_refinement"
    if near.is_dir():
        run_bundle(near, "train", {"dataset_dir": str(cohort), "device": "cpu", "work_dir": str(near)}, extra_configs=[near / "configs" / "smoke.json"])
    return root


def _setup(base: Path, tmp_path: Path, bundle, kind: str) -> tuple[Path, Path, dict]:
    cohort = tmp_path / "cohort"
    shutil.copytree(base / _smoke_cohort(bundle), cohort)
    run_root = tmp_path / bundle.name
    shutil.copytree(base / bundle.name, run_root)
    dataset = cohort
    if kind == "empty_folder":
        dataset = tmp_path / "empty"
        dataset.mkdir()
        named = dataset
    elif kind == "output_is_input":
        lesion, cine = _first_lesion(cohort), _cine_files(cohort)
        named = lesion.parent if lesion is not None else cine[0].parent if cine is not None else cohort / "images"
    else:
        named = _break(kind, cohort)
    overrides = {"dataset_dir": str(dataset), "device": "cpu", "bundle_root": str(run_root), "work_dir": str(run_root)}
    if kind == "transform_missing":
        overrides["require_transform"] = True
    if kind == "output_is_input":
        overrides["output_dir"] = str(named)
    if kind == "point_outside":
        overrides.update(simulate_points=False, points_dir=str(cohort / "points"))
    return cohort, named, overrides


@pytest.mark.parametrize("bundle, mode, kind", _cases())
def test_broken_input_is_refused_in_one_line(base, tmp_path, bundle, mode, kind):
    cohort, named, overrides = _setup(base, tmp_path, bundle, kind)
    run_root = Path(overrides["bundle_root"])
    inputs, outputs = _hashes(cohort), _files(run_root)
    with pytest.raises(InputError) as info:
        run_bundle(run_root, mode, overrides, extra_configs=[run_root / "configs" / "smoke.json"])
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"{named}: expected "), message
    assert "found" in message
    assert _files(run_root) == outputs, f"files written: {sorted(_files(run_root) - outputs)}"
    assert _hashes(cohort) == inputs


def test_every_bundle_declares_its_inputs():
    for bundle in BUNDLES:
        reads = _reads(bundle)
        assert set(reads) <= set(bundle.modes) and "inference" in reads, f"{bundle.name}: {sorted(reads)}"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "medrefine", *args], capture_output=True, text=True, env=env, cwd=cwd)


@pytest.mark.parametrize("kind", ["truncated", "output_is_input"])
def test_medrefine_run_prints_one_error_line(base, tmp_path, kind):
    bundle = next(b for b in BUNDLES if b.name == "multiorgan_ct_segmentation")
    cohort, named, overrides = _setup(base, tmp_path, bundle, kind)
    inputs = _hashes(cohort)
    sets = [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]
    result = _cli("run", overrides["bundle_root"], "inference", *sets, cwd=tmp_path)
    assert result.returncode == INPUT_ERROR_EXIT_CODE, result.stderr[-2000:]
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {named}: expected "), errors
    assert "Traceback" not in result.stdout + result.stderr
    assert _hashes(cohort) == inputs
    debug = _cli("run", overrides["bundle_root"], "inference", *sets, "--debug", cwd=tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_point_outside_the_image_exits_cleanly(base, tmp_path):
    """Once ended by SIGABRT (exit 134): the error left CacheDataset's worker threads running."""
    bundle = next(b for b in BUNDLES if b.name == "point_supervised_segmentation")
    cohort, named, overrides = _setup(base, tmp_path, bundle, "point_outside")
    sets = [a for k, v in overrides.items() for a in ("--set", f"{k}={json.dumps(v) if isinstance(v, bool) else v}")]
    result = _cli("run", overrides["bundle_root"], "train", "--config",
                  str(Path(overrides["bundle_root"]) / "configs" / "smoke.json"), *sets, cwd=tmp_path)
    assert result.returncode == INPUT_ERROR_EXIT_CODE, result.stderr[-2000:]
    assert "terminate called" not in result.stderr and "Traceback" not in result.stderr
    assert f"Error: {named}: expected every point inside" in result.stderr


def test_dollar_override_warns_in_one_line(base, tmp_path):
    result = _cli("run", str(base / "multiorgan_ct_segmentation"), "inference", "--set", "dataset_dir=$'/nowhere'",
                  "--set", "device=cpu", cwd=tmp_path)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "dataset_dir" in warnings[0] and "Python" in warnings[0]
    assert result.returncode == INPUT_ERROR_EXIT_CODE  # /nowhere is not a dataset


class _Payload:
    """Unpickling this creates ``marker`` (what a planted checkpoint could do under weights_only=False)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("planted", ["models/latest_checkpoint_epoch=9.pt", "models/model.pt"])
def test_pickle_payload_in_a_bundle_is_refused_not_executed(base, tmp_path, planted):
    """A resume checkpoint (train) or the model (inference) that would run code: one line, never run."""
    run_root, marker = tmp_path / "annotation_refinement", tmp_path / "pwned"
    shutil.copytree(base / "annotation_refinement", run_root)
    (run_root / planted).write_bytes(pickle.dumps({"trainer": _Payload(marker)}))
    mode = "train" if "latest" in planted else "inference"
    overrides = {"dataset_dir": str(base / "cohort"), "device": "cpu", "bundle_root": str(run_root), "work_dir": str(run_root),
                 "output_dir": str(tmp_path / "out")}
    with pytest.raises(InputError, match=rf"{planted.split('/')[-1]}: expected a .* holding tensors and plain values only.*refused") as info:
        run_bundle(run_root, mode, overrides, extra_configs=[run_root / "configs" / "smoke.json"])
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_model_dir_inside_the_dataset_is_refused(base, tmp_path):
    bundle = next(b for b in BUNDLES if b.name == "annotation_refinement")
    cohort, _, overrides = _setup(base, tmp_path, bundle, "output_is_input")
    overrides.pop("output_dir")
    inputs = _hashes(cohort)
    with pytest.raises(InputError, match=rf"{cohort / 'models'}: expected a model folder outside the dataset"):
        run_bundle(overrides["bundle_root"], "train", {**overrides, "model_dir": str(cohort / "models")},
                   extra_configs=[Path(overrides["bundle_root"]) / "configs" / "smoke.json"])
    assert _hashes(cohort) == inputs and not (cohort / "models").exists()


def test_nan_policy_zero_opts_in(base, tmp_path):
    """With `nan_policy: "zero"` an image with NaN voxels is accepted and refined."""
    bundle = next(b for b in BUNDLES if b.name == "annotation_refinement")
    cohort, _, overrides = _setup(base, tmp_path, bundle, "nan")
    out = tmp_path / "refined"
    run_bundle(overrides["bundle_root"], "inference", {**overrides, "nan_policy": "zero", "output_dir": str(out), "fit_steps": 1},
               extra_configs=[Path(overrides["bundle_root"]) / "configs" / "smoke.json"])
    assert (out / "refined" / "case_000.nii.gz").is_file()


@pytest.mark.parametrize("source, kind", [("cohort", k) for k in IMAGE_KINDS + LABEL_KINDS + ("point_outside",)
                                          if k not in ("missing", "empty_folder")]
                         + [("lesions", k) for k in LESION_KINDS if k != "empty_folder"]
                         + [("cine", k) for k in CINE_KINDS + CINE_LABEL_KINDS + TRANSFORM_KINDS
                            if k not in ("empty_folder", "transform_missing")])
def test_validate_flags_what_the_bundles_refuse(base, tmp_path, source, kind):
    from medrefine.data.cohort import load_cohort
    from medrefine.data.validate import check_cohort, has_errors

    cohort = tmp_path / "cohort"
    shutil.copytree(base / source, cohort)
    named = _break(kind, cohort)
    problems = check_cohort(load_cohort(cohort, strict=False, fill_from={"points": cohort / "points"}, lesions=True))
    assert has_errors(problems) and str(named.relative_to(cohort)) in set(problems["file"]), problems.to_string()


def test_evaluate_refuses_a_4d_prediction_in_one_line(base, tmp_path):
    from click.testing import CliRunner

    from medrefine.cli import cli

    (tmp_path / "pred").mkdir()
    (tmp_path / "ref").mkdir()
    shutil.copy(base / "cohort" / "labels" / "case_000.nii.gz", tmp_path / "ref")
    nii = nib.load(str(base / "cohort" / "labels" / "case_000.nii.gz"))
    array = np.asarray(nii.dataobj)
    nib.save(nib.Nifti1Image(np.stack([array, array], -1), nii.affine), str(tmp_path / "pred" / "case_000.nii.gz"))
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"),
                                      "--out", str(tmp_path / "m.csv"), "--no-progress"])
    assert result.exit_code == INPUT_ERROR_EXIT_CODE
    assert f"Error: {tmp_path / 'pred' / 'case_000.nii.gz'}: expected a 3D label map, found an array of shape (16, 16, 16, 2)" in result.output
    assert not (tmp_path / "m.csv").exists()


def _lesion_bundle():
    return next(b for b in BUNDLES if _smoke_cohort(b) == "lesions")


def test_lesion_evaluate_checks_its_test_cohort_first(base, tmp_path):
    """evaluate with `test_dataset_dir` (the ensemble on held-out lesions) refuses it before writing eval/."""
    bundle = _lesion_bundle()
    cohort, named, overrides = _setup(base, tmp_path, bundle, "nan")
    run_root = Path(overrides["bundle_root"])
    inputs, outputs = _hashes(cohort), _files(run_root)
    with pytest.raises(InputError) as info:
        run_bundle(run_root, "evaluate", {**overrides, "dataset_dir": str(base / "lesions"), "test_dataset_dir": str(cohort)},
                   extra_configs=[run_root / "configs" / "smoke.json"])
    assert str(info.value).startswith(f"{named}: expected finite voxel values") and "\n" not in str(info.value)
    assert _files(run_root) == outputs and _hashes(cohort) == inputs


def test_lesion_nan_policy_zero_opts_in(base, tmp_path):
    """With `nan_policy: "zero"` a modality with NaN voxels is accepted (zeroed before the crop) and classified."""
    bundle = _lesion_bundle()
    cohort, _, overrides = _setup(base, tmp_path, bundle, "nan")
    out = tmp_path / "predicted"
    run_bundle(overrides["bundle_root"], "inference", {**overrides, "nan_policy": "zero", "output_dir": str(out)},
               extra_configs=[Path(overrides["bundle_root"]) / "configs" / "smoke.json"])
    table = (out / "predictions.csv").read_text().splitlines()
    assert len(table) == 1 + len(list(cohort.glob("*/annotations.json"))) and "nan" not in table[1].lower()


def _cine_bundle():
    return next(b for b in BUNDLES if _smoke_cohort(b) == "cine")


def test_cine_work_dir_inside_the_dataset_is_refused(base, tmp_path):
    """cardiac_motion's pre-processed arrays (`derivatives_dir`, NIMOSEF's `<dataset>/derivatives`) stay out of the dataset."""
    cohort, _, overrides = _setup(base, tmp_path, _cine_bundle(), "output_is_input")
    overrides.pop("output_dir")
    inputs, work = _hashes(cohort), cohort / "derivatives" / "implicit_run"
    with pytest.raises(InputError, match=rf"{work}: expected a working folder outside the dataset"):
        run_bundle(overrides["bundle_root"], "train", {**overrides, "derivatives_dir": str(work)},
                   extra_configs=[Path(overrides["bundle_root"]) / "configs" / "smoke.json"])
    assert _hashes(cohort) == inputs and not work.exists()


def test_cine_nan_policy_zero_opts_in(base, tmp_path):
    """With `nan_policy: "zero"` a cine with NaN voxels is accepted (zeroed when read) and its codes fitted."""
    cohort, _, overrides = _setup(base, tmp_path, _cine_bundle(), "nan")
    out = tmp_path / "fitted"
    run_bundle(overrides["bundle_root"], "inference", {**overrides, "nan_policy": "zero", "output_dir": str(out),
                                                       "write_parquet": False},
               extra_configs=[Path(overrides["bundle_root"]) / "configs" / "smoke.json"])
    assert (out / "sub-000_seg.nii.gz").is_file() and (out / "codes.json").is_file()
