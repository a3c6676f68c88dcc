"""Lesion classification report: the saliency and CRN attention sections appear exactly when given."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medrefine.reports.classification import write_classification_report

TARGETS = {"enhancement": ["0", "1", "2"], "diffusion": ["0", "1"]}


def _inputs():
    rng = np.random.default_rng(0)
    metrics = pd.DataFrame([{"scope": "pooled", "target": t, "metric": m, "value": v}
                            for t in TARGETS for m, v in (("n", 6.0), ("accuracy", 0.5))])
    confusions = {t: np.eye(len(v), dtype=int) for t, v in TARGETS.items()}
    reliability = {t: (np.arange(6) % len(v), rng.dirichlet(np.ones(len(v)), 6)) for t, v in TARGETS.items()}
    return metrics, confusions, reliability


def _lesion(case: str) -> dict:
    rng = np.random.default_rng(1)
    mask = np.zeros((8, 8, 8), dtype=np.float32)
    mask[2:6, 2:6, 2:6] = 1
    return {"case": case, "reason": "diffusion: most confidently wrong", "modalities": ["T1", "ART"],
            "targets": list(TARGETS), "image": rng.normal(size=(2, 8, 8, 8)), "mask": mask,
            "presence": np.array([1.0, 0.0]), "maps": rng.normal(size=(2, 2, 8, 8, 8)), "truth": ["1", ""],
            "predicted": ["2", "0"], "confidence": [0.7, 0.9]}


@pytest.mark.parametrize("explained", [True, False])
def test_saliency_and_attention_sections(tmp_path, explained):
    extra = {"saliency": [_lesion("P1_lesion0"), _lesion("P2 lesion/1")],
             "attention": {"weights": np.full((2, 2), 0.5), "targets": list(TARGETS)}} if explained else {}
    html = write_classification_report(*_inputs(), TARGETS, tmp_path, **extra).read_text()
    assert ("Where the models looked" in html) is explained
    assert ("CRN attention between targets" in html) is explained
    assert html.count("<img") == 2 * len(TARGETS) + (3 if explained else 0)
    assert (tmp_path / "saliency_P2_lesion_1.png").is_file() is explained
    assert ("occlusion" in (tmp_path / "report.md").read_text().lower()) is explained


def test_empty_saliency_list_adds_no_section(tmp_path):
    html = write_classification_report(*_inputs(), TARGETS, tmp_path, saliency=[]).read_text()
    assert "Where the models looked" not in html
