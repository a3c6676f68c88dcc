"""Hand-made metrics tables and tiny volumes for the report tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

# dice per (case, class): liver 0.8/0.9/1.0 (mean 0.900, std 0.100), kidney 0.4/0.6/0.65, aorta 0.2/0.3/0.95
DICE = {
    (1, "liver"): [0.8, 0.9, 1.0],
    (2, "kidney"): [0.4, 0.6, 0.65],
    (3, "aorta"): [0.2, 0.3, 0.95],
}
CASES = ["case_a", "case_b", "case_c"]


def make_metrics(dice: dict | None = None, *, cases: list[str] | None = None, hd95_scale: float = 10.0) -> pd.DataFrame:
    """Tidy metrics: dice from ``dice`` and hd95 = ``hd95_scale`` * (1 - dice)."""
    rows = []
    for (cid, name), values in (dice or DICE).items():
        for case, d in zip(cases or CASES, values):
            rows.append((case, cid, name, "dice", d))
            rows.append((case, cid, name, "hd95", hd95_scale * (1 - d)))
    return pd.DataFrame(rows, columns=["case", "class_id", "class_name", "metric", "value"])


@pytest.fixture
def metrics() -> pd.DataFrame:
    return make_metrics()


def blob_label(shape=(24, 24, 12), *, shift: int = 0) -> np.ndarray:
    """Three boxes (labels 1, 2, 3) in a small volume; ``shift`` moves label 1."""
    lab = np.zeros(shape, dtype=np.uint8)
    lab[4 + shift:12 + shift, 4:14, 2:9] = 1
    lab[14:20, 6:12, 3:8] = 2
    lab[8:12, 16:21, 1:11] = 3
    return lab


def blob_image(shape=(24, 24, 12), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (blob_label(shape).astype(np.float32) * 100 + rng.normal(0, 20, shape)).astype(np.float32)


@pytest.fixture
def metrics_factory():
    """:func:`make_metrics` (test modules cannot import conftest under --import-mode=importlib)."""
    return make_metrics


@pytest.fixture
def blobs():
    """``(blob_label, blob_image)`` builders."""
    return blob_label, blob_image
