"""CRFLabelRefiner: logits refined against the image's edges by the gated CRF energy."""

from __future__ import annotations

import pytest
import torch

from medrefine.errors import InputError
from medrefine.losses import GatedCRFLoss
from medrefine.transforms import CRFLabelRefiner


def _halves():
    image = torch.zeros(1, 1, 12, 12, 4)
    image[:, :, 6:] = 1.0  # right half bright
    truth = image[:, 0] > 0.5
    logits = torch.stack([-2.0 * (truth.float() * 2 - 1), 2.0 * (truth.float() * 2 - 1)], dim=1)
    logits[:, :, 1:3, 4:6, 1:3] = logits[:, :, 1:3, 4:6, 1:3].flip(1)  # a wrong block in the dark half
    return image, logits, truth


def _crf():
    return GatedCRFLoss(sigma_position_mm=2.0, sigma_intensity=0.1, radius=2, downsample_factor=1,
                        spatial_dims="multiview2d", spacing=(1.0, 1.0, 1.0), softmax=True)


def test_refinement_removes_a_block_that_ignores_the_edges():
    image, logits, truth = _halves()
    assert (logits.argmax(1) == 1).ne(truth).sum() == 8  # the wrong block
    refined = CRFLabelRefiner(_crf(), steps=60)(logits, image)
    assert refined.shape == logits.shape and not refined.requires_grad
    assert torch.equal(refined.argmax(1) == 1, truth)
    # the border between the halves (an edge) stays where it is, and the input is untouched
    assert (logits.argmax(1) == 1).ne(truth).sum() == 8


def test_no_steps_and_a_strong_unary_keep_the_input():
    image, logits, truth = _halves()
    assert torch.equal(CRFLabelRefiner(_crf(), steps=0)(logits, image), logits)
    kept = CRFLabelRefiner(_crf(), steps=20, unary_weight=100.0)(logits, image)
    assert torch.equal(kept.argmax(1), logits.argmax(1))


def test_bad_arguments():
    with pytest.raises(InputError, match="`steps` must be an integer >= 0, got -1"):
        CRFLabelRefiner(_crf(), steps=-1)
    with pytest.raises(InputError, match="`learning_rate` must be > 0"):
        CRFLabelRefiner(_crf(), learning_rate=0.0)
    with pytest.raises(InputError, match="`unary_weight` must be >= 0"):
        CRFLabelRefiner(_crf(), unary_weight=-0.1)
    with pytest.raises(InputError, match="`crf` must take logits: a GatedCRFLoss built with softmax=True"):
        CRFLabelRefiner(GatedCRFLoss(radius=1))
