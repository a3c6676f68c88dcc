"""Tiny tensors only: one thread avoids OpenMP oversubscription on the shared 2-core machine."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make_blob_case(seed: int, size: int = 24, num_classes: int = 3) -> dict:
    """A sphere with a smaller sphere inside (classes 1 and 2) and an image showing them, noise added."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centre = size / 2 + rng.uniform(-2, 2, 3)
    radius = size * rng.uniform(0.25, 0.32)
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), -1)
    dist = np.linalg.norm(grid - centre, axis=-1)
    label = np.zeros((size,) * 3, np.int64)
    label[dist < radius] = 1
    if num_classes > 2:
        label[dist < radius / 2] = 2
    image = (label * 0.5 + rng.normal(0, 0.1, label.shape)).astype(np.float32)[None]
    return {"image": image, "label": label}


@pytest.fixture(scope="session")
def blob_cases():
    return [make_blob_case(s) for s in range(3)]
