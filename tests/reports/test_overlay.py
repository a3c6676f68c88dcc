"""Tests of medrefine.reports.overlay: three orthogonal slices with label contours."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from medrefine.io import Volume
from medrefine.reports.overlay import PANEL_INCHES, choose_slices, overlay_png


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def pixels(path) -> np.ndarray:
    from matplotlib.image import imread

    return imread(path)


def test_single_label_png_size_and_content(tmp_path, blobs):
    blob_label, blob_image = blobs
    shape = (24, 24, 24)
    out = overlay_png(blob_image(shape), blob_label(shape), tmp_path / "o.png", classes={1: "liver", 2: "kidney", 3: "aorta"})
    assert out == tmp_path / "o.png" and out.is_file()
    width, height = png_size(out)
    # three square panels of PANEL_INCHES at 100 dpi, plus margins; height: title, panel, legend
    assert 3 * PANEL_INCHES * 100 <= width <= 3 * PANEL_INCHES * 100 + 80
    assert PANEL_INCHES * 100 < height < PANEL_INCHES * 100 + 160
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically, no temp left


def test_different_labels_give_different_pictures(tmp_path, blobs):
    blob_label, blob_image = blobs
    image = blob_image()
    a = overlay_png(image, blob_label(), tmp_path / "a.png", slices=(10, 10, 5))
    b = overlay_png(image, blob_label(shift=3), tmp_path / "b.png", slices=(10, 10, 5))
    a2 = overlay_png(image, blob_label(), tmp_path / "a2.png", slices=(10, 10, 5))
    assert png_size(a) == png_size(b)
    assert np.abs(pixels(a) - pixels(b)).sum() > 100  # label 1 moved: contours moved
    assert np.array_equal(pixels(a), pixels(a2))  # deterministic


def test_labels_side_by_side_add_columns(tmp_path, blobs):
    blob_label, blob_image = blobs
    image, lab = blob_image(), blob_label()
    two = overlay_png(image, [lab, lab], tmp_path / "two.png", titles=["reference", "noisy"])
    three = overlay_png(image, [lab, blob_label(shift=2), lab], tmp_path / "three.png", titles=["reference", "noisy", "refined"])
    (w2, h2), (w3, h3) = png_size(two), png_size(three)
    assert w3 - w2 == pytest.approx(PANEL_INCHES * 100, abs=20)
    assert h2 == h3


def test_spacing_sets_aspect(tmp_path, blobs):
    blob_label, _ = blobs
    lab = blob_label((24, 24, 12))
    iso = overlay_png(None, [lab, lab], tmp_path / "iso.png", spacing=(1, 1, 1))
    thick = overlay_png(None, [lab, lab], tmp_path / "thick.png", spacing=(1, 1, 2))
    # coronal and sagittal rows are twice as tall with 2 mm slices (24 x 12 voxels -> 24 x 24 mm)
    assert png_size(thick)[1] - png_size(iso)[1] == pytest.approx(2 * 0.5 * PANEL_INCHES * 100, abs=10)


def test_volume_is_reoriented_to_ras(tmp_path, blobs):
    blob_label, blob_image = blobs
    image, lab = blob_image(), blob_label()
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])  # array axes point to L and P
    from_volume = overlay_png(Volume(image[::-1, ::-1].copy(), lps), Volume(lab[::-1, ::-1].copy(), lps), tmp_path / "v.png")
    from_array = overlay_png(image, lab, tmp_path / "a.png")
    assert np.array_equal(pixels(from_volume), pixels(from_array))


def test_choose_slices():
    lab = np.zeros((10, 12, 14), dtype=np.uint8)
    lab[2:5, 3:6, 4:7] = 1  # centre (3, 4, 5)
    assert choose_slices(lab) == (3, 4, 5)
    lab[8, :, :] = 2  # a large plane at i = 8
    assert choose_slices(lab, mode="largest")[0] == 8
    assert choose_slices(np.zeros((4, 6, 8), dtype=np.uint8)) == (2, 3, 4)
    ring = np.zeros((9, 9, 9), dtype=np.uint8)
    ring[[1, 7], :, :] = 1  # centre of mass i = 4 has no foreground: nearest filled slice
    assert choose_slices(ring)[0] in (1, 7)
    with pytest.raises(ValueError, match="Did you mean 'center'"):
        choose_slices(lab, mode="centre")


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(labels=np.zeros((4, 4, 5), np.uint8)), ValueError, r"`image` must have the labels' shape \(4, 4, 5\)"),
        (dict(titles=["a", "b"]), ValueError, "one entry per label"),
        (dict(spacing=(1.0, 0.0, 1.0)), ValueError, "`spacing` must have 3 positive values"),
        (dict(labels=np.full((4, 4, 4), 0.5)), ValueError, "integer label values"),
        (dict(labels=[np.zeros((4, 4, 4), int), np.zeros((4, 4, 3), int)]), ValueError, r"`labels\[1\]` must have the shape"),
        (dict(slices=(1, 2, 9)), ValueError, "three indices inside the shape"),
        (dict(labels="label.nii.gz"), TypeError, "numpy array or a Volume, got str"),
    ],
)
def test_overlay_errors(tmp_path, kwargs, error, message):
    args = dict(image=np.zeros((4, 4, 4), np.float32), labels=np.zeros((4, 4, 4), np.uint8), out=tmp_path / "x.png")
    args.update(kwargs)
    with pytest.raises(error, match=message):
        overlay_png(args.pop("image"), args.pop("labels"), args.pop("out"), **args)
    assert not (tmp_path / "x.png").exists()


def test_real_ct_overlay(tmp_path, shared_data):
    """TotalSegmentator's example CT (3 mm, 41 organs): Volumes in, legend of real names."""
    import json

    from medrefine.io import load_image, load_label

    classes = {int(k): v for k, v in json.loads((shared_data / "classes.json").read_text())["total"].items()}
    out = overlay_png(load_image(shared_data / "ct.nii.gz"), load_label(shared_data / "ct_seg.nii.gz"), tmp_path / "ct.png",
                      classes=classes, title="ct_seg")
    width, height = png_size(out)
    assert width > 900 and height > 300
