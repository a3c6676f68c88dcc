"""guard_refinement: the input is kept exactly for the structures a rule flags, the refinement elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medrefine.errors import InputError
from medrefine.transforms import guard_refinement
from medrefine.transforms.refinement_guard import GUARD_DEFAULTS

NAMES = {1: "blob", 2: "tube", 3: "veins", 4: "invented"}


def _scene() -> np.ndarray:
    """A 10^3 blob (class 1), a 1x2x20 tube (class 2), three 3x3x4 veins (class 3) on a 24^3 grid."""
    label = np.zeros((24, 24, 24), np.uint8)
    label[2:12, 2:12, 2:12] = 1
    label[20, 2:4, 2:22] = 2
    for x in (14, 18, 22):
        label[x - 1:x + 2, 14:17, 14:18] = 3
    return label


def _by_class(decisions):
    return {d.class_id: d for d in decisions}


def test_slightly_shrunk_blob_keeps_the_refinement():
    noisy = _scene()
    refined = noisy.copy()
    refined[2:12, 2:12, 11] = 0  # one face off: 900 of 1000 voxels
    guarded, decisions = guard_refinement(noisy, refined, classes=NAMES)
    blob = _by_class(decisions)[1]
    assert (blob.action, blob.reason, blob.volume_ratio, blob.components, blob.components_lost) == ("refined", "", 0.9, 1, 0)
    np.testing.assert_array_equal(guarded, refined)


def test_erased_thin_tube_is_kept_and_the_rest_stays_refined():
    noisy = _scene()
    refined = noisy.copy()
    refined[2:12, 2:12, 11] = 0  # the blob shrinks a little (passes)
    refined[noisy == 2] = 0  # the tube is erased ...
    refined[20, 2:4, 5] = 2  # ... but for two voxels
    guarded, decisions = guard_refinement(noisy, refined, classes=NAMES)
    tube = _by_class(decisions)[2]
    assert tube.action == "kept_input"
    assert tube.reason == "volume 0.05x input; 1 of 1 components lost"
    assert tube.rule == "volume < 0.5x input; components lost"
    assert (tube.input_voxels, tube.refined_voxels) == (40, 2)
    np.testing.assert_array_equal(guarded == 2, noisy == 2)  # the input, on the kept structure
    np.testing.assert_array_equal(guarded[noisy != 2], refined[noisy != 2])  # the refinement elsewhere
    assert [d.class_id for d in decisions if d.kept_input] == [2]


def test_one_lost_component_of_three_is_put_back_and_the_rest_stays_refined():
    noisy = _scene()
    refined = noisy.copy()
    refined[13:16, 14:17, 14:18] = 0  # the first vein (36 voxels) is gone
    refined[17:20, 13, 14:18] = refined[21:24, 13, 14:18] = refined[17:20, 17, 14:18] = 3  # the others grow by 36: 1.0x
    guarded, decisions = guard_refinement(noisy, refined, classes=NAMES)
    veins = _by_class(decisions)[3]
    assert veins.volume_ratio == pytest.approx(1.0)
    assert (veins.action, veins.reason, veins.components, veins.components_lost) == (
        "restored_parts", "1 of 3 components lost (put back from the input)", 3, 1)
    assert veins.kept_input and veins.rule == "components lost"
    expected = refined.copy()
    expected[13:16, 14:17, 14:18] = 3  # the lost vein is back as drawn; the grown ones keep their refinement
    np.testing.assert_array_equal(guarded, expected)
    # the whole structure's input instead, when asked
    guarded_whole, decisions_whole = guard_refinement(noisy, refined, classes=NAMES, restore_components=False)
    assert (_by_class(decisions_whole)[3].action, _by_class(decisions_whole)[3].reason) == ("kept_input", "1 of 3 components lost")
    np.testing.assert_array_equal(guarded_whole, noisy)
    # tolerated when one lost component is allowed, or when components of 36 voxels are too small to count
    assert _by_class(guard_refinement(noisy, refined, max_components_lost=1)[1])[3].action == "refined"
    assert _by_class(guard_refinement(noisy, refined, min_component_voxels=37)[1])[3].components == 0


def test_a_lost_component_the_refinement_gave_to_a_neighbour_comes_back():
    noisy = _scene()
    refined = noisy.copy()
    refined[13:16, 14:17, 14:18] = 1  # the first vein swallowed by the blob's class
    guarded, decisions = guard_refinement(noisy, refined, classes=NAMES, max_volume_ratio=10.0)
    by = _by_class(decisions)
    assert by[3].action == "restored_parts" and by[1].action == "refined"
    np.testing.assert_array_equal(guarded, noisy)


def test_volume_rule_with_lost_components_keeps_the_whole_input():
    noisy = _scene()
    refined = noisy.copy()
    refined[noisy == 3] = 0
    refined[22, 14:17, 14:18] = 3  # two of three veins gone and most of the third: volume 0.33x
    guarded, decisions = guard_refinement(noisy, refined, classes=NAMES)
    assert _by_class(decisions)[3].action == "kept_input"
    np.testing.assert_array_equal(guarded, noisy)


def test_component_with_a_fifth_left_is_not_lost():
    noisy = _scene()
    refined = noisy.copy()
    refined[13:16, 14:17, 14:18] = 0
    refined[13:16, 14:17, 14] = 3  # 9 of 36 voxels (25%) still labelled: shrunk, not lost
    assert _by_class(guard_refinement(noisy, refined)[1])[3].components_lost == 0
    refined[13:16, 16, 14] = 0  # 6 of 36 (17%) < 20%: lost
    assert _by_class(guard_refinement(noisy, refined)[1])[3].components_lost == 1


def test_high_uncertainty_keeps_the_input():
    noisy = _scene()
    refined = noisy.copy()
    refined[2:12, 2:12, 11] = 0
    uncertainty = np.full(noisy.shape, 0.1, np.float32)
    uncertainty[2:12, 2:12, 2:12] = 0.6  # over the blob (input ∪ refinement = the input's 1000 voxels)
    guarded, decisions = guard_refinement(noisy, refined, uncertainty, classes=NAMES)
    by = _by_class(decisions)
    assert (by[1].action, by[1].reason, by[1].rule) == ("kept_input", "mean uncertainty 0.60 > 0.5", "mean uncertainty > 0.5")
    assert by[2].mean_uncertainty == pytest.approx(0.1) and by[2].action == "refined"
    np.testing.assert_array_equal(guarded, noisy)
    assert _by_class(guard_refinement(noisy, refined, uncertainty, max_uncertainty=0.7)[1])[1].action == "refined"


def test_mean_uncertainty_counts_the_union_once():
    noisy = np.zeros((4, 4, 4), np.uint8)
    noisy[0, 0, :2] = 1  # 2 voxels
    refined = np.zeros_like(noisy)
    refined[0, 0, 1:4] = 1  # 3 voxels, one shared: union of 4
    uncertainty = np.zeros(noisy.shape)
    uncertainty[0, 0] = [0.2, 0.4, 0.6, 0.8]
    decision = guard_refinement(noisy, refined, uncertainty, min_component_voxels=1)[1][0]
    assert decision.mean_uncertainty == pytest.approx(0.5)  # (0.2 + 0.4 + 0.6 + 0.8) / 4


def test_exploded_structure_is_kept():
    noisy = _scene()
    refined = noisy.copy()
    refined[12:16, 2:12, 2:12] = 2  # the tube leaks into 400 voxels of background: 440 / 40 = 11x
    guarded, decisions = guard_refinement(noisy, refined, classes=NAMES)
    tube = _by_class(decisions)[2]
    assert (tube.action, tube.reason, tube.rule) == ("kept_input", "volume 11.00x input", "volume > 2x input")
    np.testing.assert_array_equal(guarded, noisy)


def test_volume_ratio_at_the_threshold_passes():
    noisy = _scene()
    refined = noisy.copy()
    refined[2:12, 2:12, 7:12] = 0  # exactly half the blob: not below 0.5
    assert _by_class(guard_refinement(noisy, refined)[1])[1].action == "refined"
    refined[2:12, 2:12, 6] = 0  # 0.4x
    assert _by_class(guard_refinement(noisy, refined)[1])[1].reason == "volume 0.40x input"


def test_invented_structure_is_removed_and_the_voxels_get_the_input_back():
    noisy = _scene()
    refined = noisy.copy()
    refined[2:7, 2:12, 2:12] = 4  # half the blob becomes a new class
    guarded, decisions = guard_refinement(noisy, refined, np.zeros(noisy.shape), classes=NAMES)
    by = _by_class(decisions)
    assert (by[4].action, by[4].reason, by[4].rule) == ("kept_input", "absent from the input", "absent from the input")
    assert np.isnan(by[4].volume_ratio) and by[4].input_voxels == 0 and by[4].refined_voxels == 500
    assert by[1].action == "refined"  # the blob at 0.5x passes ...
    np.testing.assert_array_equal(guarded, noisy)  # ... and gets the invented voxels back from the input
    assert (guarded == 4).sum() == 0


def test_kept_structure_wins_voxels_a_passing_one_took():
    noisy = np.zeros((8, 8, 8), np.uint8)
    noisy[:4] = 1
    noisy[4:, :, :1] = 2  # 32 voxels
    refined = np.zeros_like(noisy)
    refined[:, :, 1:] = 1  # class 1 grows 1.75x (passes) over most of class 2's place
    refined[4:, :, :1] = 1  # and takes all of class 2: 0x, kept
    guarded, decisions = guard_refinement(noisy, refined, min_component_voxels=1)
    assert [(d.class_id, d.action) for d in decisions] == [(1, "refined"), (2, "kept_input")]
    expected = refined.copy()
    expected[4:, :, :1] = 2
    np.testing.assert_array_equal(guarded, expected)


def test_classes_limit_the_checks_and_name_them():
    noisy = _scene()
    refined = noisy.copy()
    refined[noisy == 2] = 0
    guarded, decisions = guard_refinement(noisy, refined, classes=[1, 3])
    assert [(d.class_id, d.class_name) for d in decisions] == [(1, "class_1"), (3, "class_3")]
    np.testing.assert_array_equal(guarded, refined)  # the tube was not checked


def test_torch_input_and_dtype_of_the_refinement():
    noisy = _scene()
    refined = noisy.copy()
    refined[noisy == 2] = 0
    guarded, _ = guard_refinement(torch.as_tensor(noisy).long(), torch.as_tensor(refined))
    assert isinstance(guarded, np.ndarray) and guarded.dtype == np.uint8
    np.testing.assert_array_equal(guarded, noisy)


def test_unchanged_label_keeps_everything():
    noisy = _scene()
    guarded, decisions = guard_refinement(noisy, noisy.copy())
    assert [d.action for d in decisions] == ["refined"] * 3
    assert [d.volume_ratio for d in decisions] == [1.0] * 3
    np.testing.assert_array_equal(guarded, noisy)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_volume_ratio": 1.0}, r"`min_volume_ratio` must be in \[0, 1\).*got 1.0"),
        ({"min_volume_ratio": -0.1}, r"`min_volume_ratio` must be in \[0, 1\)"),
        ({"max_volume_ratio": 1.0}, r"`max_volume_ratio` must be > 1.*got 1.0"),
        ({"max_volume_ratio": "big"}, r"`max_volume_ratio` must be a number, got 'big'"),
        ({"max_components_lost": -1}, r"`max_components_lost` must be an integer >= 0, got -1"),
        ({"max_components_lost": 0.5}, r"`max_components_lost` must be an integer >= 0, got 0.5"),
        ({"min_component_voxels": 0}, r"`min_component_voxels` must be an integer >= 1, got 0"),
        ({"min_component_overlap": 0.0}, r"`min_component_overlap` must be in \(0, 1\], got 0.0"),
        ({"max_uncertainty": 1.5}, r"`max_uncertainty` must be in \[0, 1\].*got 1.5"),
        ({"max_uncertainty": float("nan")}, r"`max_uncertainty` must be a number, got nan"),
        ({"restore_components": "yes"}, r"`restore_components` must be true or false, got 'yes'"),
    ],
)
def test_bad_thresholds_are_refused(kwargs, message):
    noisy = _scene()
    with pytest.raises(ValueError, match=message):
        guard_refinement(noisy, noisy, **kwargs)


def test_shapes_and_labels_are_checked():
    noisy = _scene()
    with pytest.raises(InputError, match=r"`refined_label` must have the shape of `input_label` \(24, 24, 24\), got \(24, 24, 23\)"):
        guard_refinement(noisy, noisy[..., :23])
    with pytest.raises(InputError, match=r"`uncertainty` must have the shape"):
        guard_refinement(noisy, noisy, np.zeros((2, 2, 2)))
    with pytest.raises(InputError, match=r"`input_label` must hold integer class labels, got dtype float64"):
        guard_refinement(noisy + 0.5, noisy)
    with pytest.raises(InputError, match=r"`refined_label` must hold class labels >= 0, found -1"):
        guard_refinement(noisy, noisy.astype(np.int16) - 1)


def test_defaults_are_the_documented_ones():
    assert GUARD_DEFAULTS == {"min_volume_ratio": 0.5, "max_volume_ratio": 2.0, "max_components_lost": 0,
                              "min_component_voxels": 27, "min_component_overlap": 0.2, "max_uncertainty": 0.5,
                              "restore_components": True, "min_component_fraction": 0.1, "max_drop_distance_mm": 5.0}


def _tree() -> np.ndarray:
    """A 3x3x16 trunk (class 1) and a 2x2x2 distal fragment 6 voxels beyond its end, on a 12x12x32 grid."""
    label = np.zeros((12, 12, 32), np.uint8)
    label[4:7, 4:7, 2:18] = 1
    label[5:7, 5:7, 24:26] = 1
    return label


@pytest.mark.parametrize("spacing, max_mm, put_back", [
    (None, 5.0, True),  # the fragment lies 8-9 voxels from the kept trunk: dropped, put back
    (None, 10.0, False),  # within 10 voxels: counted as a correction
    ((1.0, 1.0, 0.5), 5.0, False),  # 0.5 mm steps along the tree: 4-4.5 mm away
    (None, 0.0, False),  # the check off
])
def test_a_dropped_distal_fragment_is_put_back_by_distance(spacing, max_mm, put_back):
    noisy = _tree()
    refined = noisy.copy()
    refined[5:7, 5:7, 24:26] = 0  # 8 voxels: under 27 and a 2 % of the structure, so no component rule
    refined[4:7, 4:7, 17] = 0  # the trunk's tip shortened by one voxel: a correction, kept
    guarded, decisions = guard_refinement(noisy, refined, spacing=spacing, max_drop_distance_mm=max_mm)
    (d,) = decisions
    assert d.components_lost == 0
    expected = refined.copy()
    if put_back:
        expected[5:7, 5:7, 24:26] = 1
        assert (d.action, d.reason) == ("restored_parts", "8 voxels over 5 mm from the refinement (put back from the input)")
        assert d.rule == "dropped parts > 5 mm" and d.kept_input
    else:
        assert (d.action, d.reason) == ("refined", "")
    np.testing.assert_array_equal(guarded, expected)
