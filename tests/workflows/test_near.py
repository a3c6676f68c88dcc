"""The refinement workflow: cohort in, refined labels in the original geometry out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medrefine.data.phantoms import make_cardiac_cohort
from medrefine.engines import AutoDecoderTrainer
from medrefine.errors import InputError
from medrefine.io import load_label, save_nifti
from medrefine.networks import ImplicitRefiner
from medrefine.workflows.near import (
    before_after_table,
    evaluate_refinement,
    export_model,
    format_evaluation,
    load_model,
    load_refinement_cases,
    refine_cases,
)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("refine") / "cohort"
    make_cardiac_cohort(out, cases=3, size=32, noise="moderate", seed=11)
    return out


def _small_net(num_cases: int) -> ImplicitRefiner:
    torch.manual_seed(0)
    return ImplicitRefiner(num_cases, 11, latent_dim=8, grid_channels=(8,), grid_sizes=(3,), hidden_channels=(16,))


def test_cases_are_cubes_with_the_way_back(cohort):
    cases = load_refinement_cases(cohort, size=20, num_classes=11)
    assert [c["case"] for c in cases] == ["case_000", "case_001", "case_002"]
    c = cases[0]
    assert c["image"].shape == (1, 20, 20, 20) and c["image"].dtype == np.float32
    assert 0.0 <= c["image"].min() and c["image"].max() <= 1.0
    assert c["label"].shape == (20, 20, 20) and c["label_clean"].shape == (20, 20, 20)
    assert c["info"]["original_shape"] == [32, 32, 32]


def test_refined_label_keeps_the_input_geometry(cohort, tmp_path):
    cases = load_refinement_cases(cohort, size=16, num_classes=11)
    net = _small_net(len(cases))
    written = refine_cases(net, cases, tmp_path / "out")
    for case, paths in zip(cases, written):
        ref = nib.load(case["label_path"])
        out = nib.load(paths["refined"])
        assert out.shape == ref.shape
        np.testing.assert_allclose(out.affine, ref.affine, atol=1e-5)
        unc = nib.load(paths["uncertainty"]).get_fdata()
        assert unc.shape == ref.shape and unc.min() >= 0.0 and unc.max() <= 1.0 + 1e-6
        changes = np.asarray(nib.load(paths["changes"]).dataobj)
        refined = np.asarray(out.dataobj)
        noisy = np.asarray(ref.dataobj)
        np.testing.assert_array_equal(changes != 0, (refined != noisy) & (refined != 0))
    table = (tmp_path / "out" / "changes.csv").read_text().splitlines()
    assert table[0] == ("case,class_id,input_voxels,refined_voxels,added,removed,action,reason,rule,decoded_voxels,"
                        "volume_ratio,components,components_lost,mean_uncertainty")
    assert len(table) == 1 + 3 * 10


def test_train_export_load_refine_evaluate(cohort, tmp_path):
    cases = load_refinement_cases(cohort, size=16, num_classes=11)
    net = _small_net(len(cases))
    trainer = AutoDecoderTrainer(net, torch.optim.Adam(net.parameters(), 1e-2), cases, max_epochs=2, batch_size=3,
                                 train_resolution=8)
    trainer.run()
    export_model(trainer, cases, tmp_path / "models", preprocessing={"resolution": 16, "window": [-100, 500]})
    fresh, model = load_model(tmp_path / "models")
    names = model.cases
    assert names == ["case_000", "case_001", "case_002"]
    assert model.preprocessing == {"resolution": 16, "window": [-100, 500]}
    assert model.classes == {0: "background", **{i: f"class_{i}" for i in range(1, 11)}}
    for a, b in zip(fresh.state_dict().values(), net.state_dict().values()):
        assert torch.equal(a, b)
    refined = refine_cases(fresh, cases[::-1], tmp_path / "out", trained_cases=names)  # order does not matter
    result = evaluate_refinement(cases, tmp_path / "out", classes=11, refined=refined, report=False)
    table = result["before_after"]
    assert list(table.columns) == ["class_id", "class_name", "before", "after", "delta"]
    assert table.iloc[-1]["class_name"] == "mean foreground"
    np.testing.assert_allclose(table["delta"], table["after"] - table["before"])
    assert "input Dice" in format_evaluation(result)
    guard = result["guard"]  # the decisions refine_cases returned, one row per case and structure it checked
    assert set(guard["case"]) == {"case_000", "case_001", "case_002"} and set(guard["action"]) <= {"refined", "kept_input"}
    from_csv = evaluate_refinement(cases, tmp_path / "out", classes=11, report=False)["guard"]  # read back from changes.csv
    key = ["case", "class_id"]
    assert from_csv.sort_values(key)[key + ["action", "reason"]].values.tolist() == \
        guard.sort_values(key)[key + ["action", "reason"]].values.tolist()
    with pytest.raises(InputError, match="case_001: the model was not trained on it"):
        refine_cases(fresh, cases[1:2], tmp_path / "x", trained_cases=["case_000"])


def test_inductive_mode_fits_a_new_code(cohort, tmp_path):
    cases = load_refinement_cases(cohort, size=16, num_classes=11)
    net = _small_net(2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    written = refine_cases(net, cases[2:], tmp_path / "ind", refine_mode="inductive", trained_cases=["a", "b"],
                           fit_steps=3, fit_resolution=8)
    assert load_label(written[0]["refined"]).shape == (32, 32, 32)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed during inductive refinement"


def test_before_after_table_values():
    import pandas as pd

    def frame(values):
        return pd.DataFrame([{"case": c, "class_id": k, "class_name": f"c{k}", "metric": "dice", "value": v}
                             for (c, k), v in values.items()])

    before = frame({("a", 1): 0.5, ("a", 2): 0.7, ("b", 1): 0.7, ("b", 2): 0.9})
    after = frame({("a", 1): 0.8, ("a", 2): 0.8, ("b", 1): 0.8, ("b", 2): 1.0})
    t = before_after_table(before, after)
    assert t.loc[t.class_id == 1, "before"].item() == pytest.approx(0.6)
    assert t.loc[t.class_id == 1, "delta"].item() == pytest.approx(0.2)
    assert t.iloc[-1]["before"] == pytest.approx(0.7) and t.iloc[-1]["after"] == pytest.approx(0.85)


# ------------------------------------------------------------------------------ bad input


def _copy(cohort, tmp_path):
    dest = tmp_path / "cohort"
    shutil.copytree(cohort, dest)
    return dest


def test_label_with_more_classes_than_configured(cohort, tmp_path):
    dest = _copy(cohort, tmp_path)
    with pytest.raises(InputError, match=r"labels_noisy/case_000\.nii\.gz: expected label values in 0\.\.4 .*\(case 'case_000'"):
        load_refinement_cases(dest, size=8, num_classes=5)


def test_missing_image_file_names_the_file(cohort, tmp_path):
    dest = _copy(cohort, tmp_path)
    (dest / "images" / "case_001.nii.gz").unlink()
    with pytest.raises(InputError, match=r"case_001\.nii\.gz"):
        load_refinement_cases(dest, size=8, num_classes=11)


def test_missing_appearance_in_multinear_layout(tmp_path):
    from medrefine.data.layouts import write_multinear

    rng = np.random.default_rng(0)
    cases = [{"case": f"c{i}", "appearance": rng.random((8, 8, 8), dtype=np.float32),
              "shape": rng.integers(0, 3, (8, 8, 8)).astype(np.uint8)} for i in range(2)]
    root = write_multinear(tmp_path / "mn", cases)
    (root / "appearance" / "c1.npy").unlink()
    with pytest.raises(InputError, match="c1"):
        load_refinement_cases(root, size=8, num_classes=3)


def test_label_grid_differs_from_image(cohort, tmp_path):
    dest = _copy(cohort, tmp_path)
    label = load_label(dest / "labels_noisy" / "case_002.nii.gz")
    affine = label.affine.copy()
    affine[0, 3] += 25.0
    save_nifti(label.array, dest / "labels_noisy" / "case_002.nii.gz", affine=affine)
    with pytest.raises(InputError, match=r"labels_noisy/case_002\.nii\.gz: expected the voxel grid of the image \(case_002\.nii\.gz\), found affines differ .*\(case 'case_002'\)"):
        load_refinement_cases(dest, size=8, num_classes=11)


def test_source_that_is_no_dataset(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="found an empty folder"):
        load_refinement_cases(tmp_path / "empty")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match=r"notes: not a dataset: looked for datalist\.json, images/ \+ labels/"):
        load_refinement_cases(tmp_path / "notes")
    bad = tmp_path / "d.json"
    bad.write_text(json.dumps({"training": []}))
    with pytest.raises(InputError):
        load_refinement_cases(bad)


def test_inductive_fit_uses_the_training_objective(cohort, tmp_path, monkeypatch):
    """The latent of a new case is fitted to the loss the decoder was trained with (weights, lambdas)."""
    from medrefine.losses import NeARLoss
    from medrefine.losses.near import inverse_frequency_weights

    cases = load_refinement_cases(cohort, size=16, num_classes=11)
    net = _small_net(2)
    labels = torch.stack([torch.as_tensor(c["label"]).long() for c in cases[:2]])
    train_loss = NeARLoss(11, class_weights=inverse_frequency_weights(labels, 11, cap=5.0), lambda_dice=1.0,
                          lambda_latent=0.1)
    export_model(net, cases[:2], tmp_path / "models", loss=train_loss)
    fresh, model = load_model(tmp_path / "models")
    seen = {}
    import medrefine.engines as engines

    real_fit = engines.fit_latent

    def spy(*args, **kwargs):
        seen["loss"] = kwargs["loss_function"]
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(engines, "fit_latent", spy)
    refine_cases(fresh, cases[2:], tmp_path / "ind", refine_mode="inductive", model=model, fit_steps=2, fit_resolution=8)
    fitted = seen["loss"]
    assert isinstance(fitted, NeARLoss)
    torch.manual_seed(0)
    logits, target, latent = torch.randn(2, 50, 11), torch.randint(0, 11, (2, 50)), torch.randn(2, 8)
    assert torch.allclose(fitted(logits, target, latent), train_loss(logits, target, latent))
    # fit_latent's own default (this case's weights, cap 50, lambda_dice 0.2) is another objective
    default = NeARLoss(11, class_weights=inverse_frequency_weights(target, 11, cap=50.0))
    assert not torch.allclose(default(logits, target, latent), train_loss(logits, target, latent))


def test_model_folder_without_description_is_refused(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "cases.json").write_text('{"cases": ["a"]}')
    with pytest.raises(InputError, match=r"models/model\.json: model description not found .*train it again"):
        load_model(tmp_path / "models")


# ------------------------------------------------------------------------------ the guard


def _guard_case():
    """One hand-built case (no original geometry): a 6^3 blob (class 1) and a 2x2x10 tube (class 2)."""
    label = np.zeros((16, 16, 16), np.uint8)
    label[2:8, 2:8, 2:8] = 1
    label[12:14, 12:14, 3:13] = 2
    return {"case": "a", "image": np.zeros((1, 16, 16, 16), np.float32), "label": label, "label_clean": None,
            "info": None, "image_path": None, "label_path": None, "clean_path": None}


def _decoding(monkeypatch, decoded):
    """Make refine_cases' decoder return ``decoded`` (and zero uncertainty)."""
    import medrefine.inferers

    def fake(network, code, appearance, **kwargs):
        return torch.as_tensor(decoded)[None], torch.zeros((1, *decoded.shape))

    monkeypatch.setattr(medrefine.inferers, "decode_volume", fake)


@pytest.fixture
def erased_tube(monkeypatch):
    case = _guard_case()
    decoded = case["label"].copy()
    decoded[2:8, 2:8, 7] = 0  # the blob loses a face (180 of 216: 0.83x, passes)
    decoded[case["label"] == 2] = 0  # the tube is erased
    _decoding(monkeypatch, decoded)
    torch.manual_seed(0)
    net = ImplicitRefiner(1, 3, latent_dim=4, grid_channels=(4,), grid_sizes=(3,), hidden_channels=(8,))
    model = type("Model", (), {"cases": ["a"], "classes": {0: "background", 1: "blob", 2: "tube"}})()
    return case, decoded, net, model


def test_guard_keeps_the_erased_tube_and_says_so(erased_tube, tmp_path, caplog):
    import pandas as pd

    case, decoded, net, model = erased_tube
    with caplog.at_level("WARNING", logger="medrefine.workflows.near"):
        written = refine_cases(net, [case], tmp_path / "out", model=model)
    assert [r.getMessage() for r in caplog.records] == [
        "a: kept the input for tube (volume 0.00x input; 1 of 1 components lost)"
    ]
    refined = load_label(written[0]["refined"]).array
    expected = decoded.copy()
    expected[case["label"] == 2] = 2
    np.testing.assert_array_equal(refined, expected)  # the blob refined, the tube as in the input
    assert [(d["class_name"], d["action"], d["reason"]) for d in written[0]["guard"]] == [
        ("blob", "refined", ""), ("tube", "kept_input", "volume 0.00x input; 1 of 1 components lost")
    ]
    table = pd.read_csv(tmp_path / "out" / "changes.csv", keep_default_na=False)
    assert table[["class_id", "input_voxels", "refined_voxels", "decoded_voxels", "removed", "action", "reason", "rule"]] \
        .values.tolist() == [
        [1, 216, 180, 180, 36, "refined", "", ""],
        [2, 40, 40, 0, 0, "kept_input", "volume 0.00x input; 1 of 1 components lost", "volume < 0.5x input; components lost"],
    ]
    assert table["components"].tolist() == [1, 1] and table["components_lost"].tolist() == [0, 1]
    assert table["mean_uncertainty"].tolist() == [0.0, 0.0]


def test_guard_off_writes_the_decoded_label(erased_tube, tmp_path):
    import pandas as pd

    case, decoded, net, model = erased_tube
    written = refine_cases(net, [case], tmp_path / "out", model=model, guard=False)
    np.testing.assert_array_equal(load_label(written[0]["refined"]).array, decoded)
    assert written[0]["guard"] is None
    table = pd.read_csv(tmp_path / "out" / "changes.csv", keep_default_na=False)
    assert table["action"].tolist() == ["", ""] and table["refined_voxels"].tolist() == [180, 0]


def test_guard_thresholds_are_passed_on_and_checked_first(erased_tube, tmp_path):
    case, decoded, net, model = erased_tube
    written = refine_cases(net, [case], tmp_path / "out", model=model, min_volume_ratio=0.0, min_component_voxels=41)
    assert [d["action"] for d in written[0]["guard"]] == ["refined", "refined"]  # both checks that fired are off
    with pytest.raises(ValueError, match=r"`min_component_overlap` must be in \(0, 1\], got 2"):
        refine_cases(net, [case], tmp_path / "bad", model=model, min_component_overlap=2)
    assert not (tmp_path / "bad").exists()


def test_refine_cases_guard_defaults_are_the_guards():
    import inspect

    from medrefine.transforms.refinement_guard import GUARD_DEFAULTS

    params = inspect.signature(refine_cases).parameters
    assert {name: params[name].default for name in GUARD_DEFAULTS} == GUARD_DEFAULTS
    assert params["guard"].default is True
    config = json.loads((Path(__file__).parents[2] / "bundles/annotation_refinement/configs/evaluate.json").read_text())
    assert {name: config[f"guard_{name}"] for name in GUARD_DEFAULTS} == GUARD_DEFAULTS and config["guard"] is True


def test_format_evaluation_lists_fallbacks_and_marks_losses():
    import pandas as pd

    before_after = pd.DataFrame([
        {"class_id": 1, "class_name": "blob", "before": 0.80, "after": 0.90, "delta": 0.10},
        {"class_id": 2, "class_name": "tube", "before": 0.50, "after": 0.485, "delta": -0.015},
        {"class_id": 3, "class_name": "vein", "before": 0.50, "after": 0.495, "delta": -0.005},
        {"class_id": -1, "class_name": "mean foreground", "before": 0.6, "after": 0.627, "delta": 0.027},
    ])
    guard = pd.DataFrame([
        {"case": "a", "class_id": 2, "class_name": "tube", "action": "kept_input", "rule": "volume < 0.5x input; components lost"},
        {"case": "b", "class_id": 2, "class_name": "tube", "action": "kept_input", "rule": "volume < 0.5x input"},
        {"case": "c", "class_id": 2, "class_name": "tube", "action": "refined", "rule": ""},
        {"case": "c", "class_id": 3, "class_name": "vein", "action": "kept_input", "rule": "components lost"},
    ])
    text = format_evaluation({"before_after": before_after, "guard": guard, "metrics": {}})
    lines = text.splitlines()
    assert lines[2].endswith("-0.015  < input") and lines[3].endswith("-0.005")  # more than 0.01 below the input only
    assert lines[5:] == [
        "kept the input for tube in 2 of 3 cases (volume < 0.5x input in 2, components lost in 1)",
        "kept the input for vein in 1 of 3 cases (components lost in 1)",
    ]
    quiet = format_evaluation({"before_after": None, "guard": guard.assign(action="refined"), "metrics": {}})
    assert "guard: the refinement was kept for every structure of the 3 cases" in quiet
