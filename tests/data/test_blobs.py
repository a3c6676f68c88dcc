"""Tests of medrefine.data.blobs.make_blob_phantom."""

from __future__ import annotations

import numpy as np
import pytest

from medrefine.data.blobs import make_blob_phantom
from medrefine.errors import InputError


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 0.8, 2.0)])
def test_shapes_types_and_one_blob_inside(spacing):
    from scipy import ndimage

    image, label, sp = make_blob_phantom(32, seed=0, spacing=spacing)
    assert image.shape == label.shape == (32, 32, 32)
    assert image.dtype == np.float32 and label.dtype == np.uint8 and sp == spacing
    assert set(np.unique(label).tolist()) == {0, 1}
    assert ndimage.label(label)[1] == 1
    border = np.ones(label.shape, bool)
    border[1:-1, 1:-1, 1:-1] = False
    assert not label[border].any()
    assert 0.002 < label.mean() < 0.2


def test_deterministic_and_varies_with_seed():
    a = make_blob_phantom(24, seed=3)
    b = make_blob_phantom(24, seed=3)
    c = make_blob_phantom(24, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_blob_is_brighter_than_background():
    image, label, _ = make_blob_phantom(32, seed=1)
    assert image[label == 1].mean() - image[label == 0].mean() > 0.25


def test_errors():
    with pytest.raises(InputError, match=r"`size` must be an integer >= 16 .* got 8"):
        make_blob_phantom(8)
    with pytest.raises(InputError, match=r"`spacing` must have 3 positive finite values, got \(1.0, -1.0, 1.0\)"):
        make_blob_phantom(16, spacing=(1.0, -1.0, 1.0))
