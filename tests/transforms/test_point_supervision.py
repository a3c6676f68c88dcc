"""LoadPointsd / SimulatePointsd / PointSeedsd: points through a MONAI pipeline with resampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Spacingd

from medrefine.data.blobs import make_blob_phantom
from medrefine.data.phantoms import phantom_affine
from medrefine.errors import GeometryError, InputError
from medrefine.io import save_nifti
from medrefine.losses import UNLABELED
from medrefine.points import PointSet, save_point_map, simulate_points, write_points_json
from medrefine.transforms import LoadPointsd, PointSeedsd, SimulatePointsd


@pytest.fixture
def blob(tmp_path):
    image, label, spacing = make_blob_phantom(24, seed=2)
    affine = phantom_affine(image.shape, spacing)
    points = simulate_points(label, affine, seed=0)
    img_path = save_nifti(image, tmp_path / "image.nii.gz", affine=affine)
    meta = {"affine": torch.as_tensor(affine), "filename_or_obj": str(img_path)}
    return {"image": MetaTensor(torch.from_numpy(image)[None], meta=meta), "label": label, "affine": affine,
            "points": points, "dir": tmp_path}


def test_load_points_json_and_map_give_the_same_points(blob):
    json_path = write_points_json(blob["points"], blob["dir"] / "p.json")
    map_path = save_point_map(blob["points"], blob["dir"] / "p.nii.gz", shape=blob["label"].shape, affine=blob["affine"])
    from_json = LoadPointsd("points")({"image": blob["image"], "points": str(json_path)})["points"]
    from_map = LoadPointsd("points")({"image": blob["image"], "points": str(map_path)})["points"]
    assert isinstance(from_json, PointSet) and from_json.num_points == 7
    order = np.lexsort(from_map.world.T)
    np.testing.assert_allclose(np.sort(from_json.world, axis=0), np.sort(from_map.world[order], axis=0), atol=1e-6)


def test_point_map_on_another_grid_names_the_file(blob):
    shifted = blob["affine"].copy()
    shifted[0, 3] += 5.0
    path = save_point_map(blob["points"], blob["dir"] / "moved.nii.gz", shape=blob["label"].shape, affine=shifted)
    with pytest.raises(GeometryError, match="moved.nii.gz"):
        LoadPointsd("points")({"image": blob["image"], "points": str(path)})


def test_point_outside_the_image_names_the_file(blob):
    far = PointSet(world=[[0.0, 0.0, 0.0], [500.0, 0.0, 0.0]], foreground=[True, False])
    path = write_points_json(far, blob["dir"] / "far.json")
    with pytest.raises(InputError, match=r"far\.json.*outside"):
        LoadPointsd("points")({"image": blob["image"], "points": str(path)})


def test_point_map_without_foreground_names_the_file(blob):
    only_bg = np.zeros(blob["label"].shape, np.uint8)
    only_bg[1, 1, 1] = 1
    path = save_nifti(only_bg, blob["dir"] / "nofg.nii.gz", affine=blob["affine"])
    with pytest.raises(InputError, match=r"nofg\.nii\.gz.*foreground"):
        LoadPointsd("points")({"image": blob["image"], "points": str(path)})


def test_seeds_follow_a_resampled_grid(blob):
    """After resampling to 2 mm the foreground point's voxel is foreground, the box is partly unlabeled."""
    data = Spacingd(keys="image", pixdim=(2.0, 2.0, 2.0))({"image": blob["image"]})
    data["points"] = blob["points"]
    out = PointSeedsd("points", image_key="image")(data)
    seeds = out["seeds"]
    assert isinstance(seeds, MetaTensor) and seeds.shape[1:] == data["image"].shape[1:]
    assert torch.allclose(seeds.affine.double(), data["image"].affine.double())
    fg_world = blob["points"].world[blob["points"].foreground][0]
    voxel = np.rint(np.linalg.solve(np.asarray(seeds.affine, dtype=float), [*fg_world, 1.0])[:3]).astype(int)
    assert int(seeds[0][tuple(voxel)]) == 1
    values = set(torch.unique(seeds).tolist())
    assert values == {0, 1, UNLABELED}


def test_class_values_maps_a_multiclass_point_list(blob):
    points = PointSet(blob["points"].world, blob["points"].foreground, np.where(blob["points"].foreground, 3, 3))
    out = PointSeedsd("points", class_values={3: 1})({"image": blob["image"], "points": points})
    assert set(torch.unique(out["seeds"]).tolist()) == {0, 1, UNLABELED}
    with pytest.raises(InputError, match="class"):
        PointSeedsd("points", class_values={4: 1})({"image": blob["image"], "points": points})


def test_simulated_points_are_deterministic_per_case(blob):
    label = MetaTensor(torch.from_numpy(blob["label"])[None], meta={"affine": torch.as_tensor(blob["affine"])})
    make = SimulatePointsd("label", jitter_mm=2.0, seed=5)
    a = make({"label": label, "case": "a"})["points"]
    again = make({"label": label, "case": "a"})["points"]
    b = make({"label": label, "case": "b"})["points"]
    np.testing.assert_array_equal(a.world, again.world)
    assert not np.array_equal(a.world, b.world)
    assert a.num_points == 7 and int(a.foreground.sum()) == 1


def test_an_object_touching_the_border_leaves_its_box_open_there():
    """No background point beyond a face (the object reaches the image border): the unlabeled box runs to the border."""
    from medrefine.transforms import expand_point_set

    label = np.zeros((20, 20, 8), np.uint8)
    label[6:14, 6:14, :] = 1  # spans every slice, like the liver of a short CT
    image = np.where(label > 0, 1.0, 0.0).astype(np.float32)
    points = simulate_points(label, np.eye(4), seed=0)
    assert points.num_points == 5  # no background point on the two z faces
    seeds = expand_point_set(image, points, np.eye(4))
    inside = seeds[6:14, 6:14, :]
    assert (inside != 0).all()  # no part of the object is labelled background
    assert (seeds[0] == 0).all() and (seeds[:, 0] == 0).all()  # beyond closed faces: background
    full = simulate_points(np.pad(label, ((0, 0), (0, 0), (4, 4))), np.eye(4), seed=0)
    assert full.num_points == 7  # with all six faces closed the box stays that of the points
