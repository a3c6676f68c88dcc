"""Tests of medrefine.reports._render: the class colour map and the sRGB -> CIELAB conversion."""

from __future__ import annotations

import numpy as np
import pytest

from medrefine.reports._render import class_color, class_colors, srgb_to_lab, to_hex


def delta_e(a, b) -> np.ndarray:
    """CIE76 colour difference between sRGB colours (rows)."""
    return np.linalg.norm(srgb_to_lab(a) - srgb_to_lab(b), axis=-1)


@pytest.mark.parametrize(
    "rgb, lab",
    [
        ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),  # D65 white
        ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        ((1.0, 0.0, 0.0), (53.24, 80.09, 67.20)),  # published sRGB red in Lab (D65)
        ((0.5, 0.5, 0.5), (53.39, 0.0, 0.0)),  # skimage.color.rgb2lab agrees
    ],
)
def test_srgb_to_lab_known_values(rgb, lab):
    np.testing.assert_allclose(srgb_to_lab(rgb)[0], lab, atol=0.05)


def test_120_colours_are_pairwise_distinct():
    # CIE76 Delta E: 2.3 is just noticeable side by side; ~10 reads as a different colour at a
    # glance on small patches. 15 keeps a margin over that for 120 labels (TotalSegmentator has
    # 117); the palette of qualitative matplotlib maps we replaced repeats near-identical
    # colours within 41 labels (Delta E 2.0, below what an eye tells apart).
    rgb = np.array([class_color(v) for v in range(1, 121)])
    lab = srgb_to_lab(rgb)
    distance = np.linalg.norm(lab[:, None] - lab[None], axis=-1)
    np.fill_diagonal(distance, np.inf)
    assert distance.min() > 15.0
    assert len({to_hex(c) for c in rgb}) == 120


def test_neighbouring_labels_differ_strongly():
    rgb = np.array([class_color(v) for v in range(1, 121)])
    consecutive = delta_e(rgb[:-1], rgb[1:])
    assert consecutive.min() > 25.0
    # the first ten labels (a heart, an abdomen) are far apart from each other
    lab = srgb_to_lab(rgb[:10])
    first = np.linalg.norm(lab[:, None] - lab[None], axis=-1)
    np.fill_diagonal(first, np.inf)
    assert first.min() > 45.0


def test_no_greys_and_fixed_first_colour():
    lab = srgb_to_lab(np.array([class_color(v) for v in range(1, 257)]))
    assert np.hypot(lab[:, 1], lab[:, 2]).min() >= 20.0 and 35.0 <= lab[:, 0].min() and lab[:, 0].max() <= 90.0
    r, g, b = class_color(1)
    assert r > 0.8 and g < 0.2 and b < 0.2  # label 1 red, as in ITK-SNAP
    assert class_color(257) == class_color(1)  # 256 colours, then the map repeats
    assert class_colors([3, 1]) == {3: class_color(3), 1: class_color(1)}
