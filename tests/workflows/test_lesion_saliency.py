"""Where the lesion classifiers looked: occlusion maps, lesion choice, CRN attention, the report sections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from medrefine.data.lesion_phantoms import make_lesion_cohort
from medrefine.data.lesions import load_lesions
from medrefine.errors import InputError
from medrefine.networks.crn import CorrelationRoutingNetwork
from medrefine.networks.lesion import build_lesion_classifier
from medrefine.workflows.lesion import describe_model, lesion_preprocessing, network_input
from medrefine.workflows.lesion_evaluation import evaluate_lesions, predict_probabilities, predictions_table
from medrefine.workflows.lesion_saliency import choose_lesions, explain_lesions, mean_attention, occlusion_maps

PIXDIM, SIZE = [2.5, 2.5, 2.5], [16, 16, 16]


@pytest.fixture(autouse=True)
def _one_thread():
    """These tiny networks run ~10x slower on two threads of a busy machine than on one."""
    torch.set_num_threads(1)


class CentreReader(nn.Module):
    """Two targets of 2 classes; target 0's class-1 logit is 4 x the mean of modality 0 in the
    central 4^3 cube, target 1 reads modality 1 there (the way the test images are built)."""

    def forward(self, image: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
        centre = image[:, :2, 6:10, 6:10, 6:10].mean((2, 3, 4))  # (B, 2)
        zero = torch.zeros_like(centre[:, :1])
        return torch.cat([zero, 4 * centre[:, :1], zero, 4 * centre[:, 1:2]], 1) * presence[:, :1]


def _centre_image() -> torch.Tensor:
    image = torch.zeros(3, 16, 16, 16)  # 2 modalities + mask
    image[:2, 6:10, 6:10, 6:10] = 1.0
    image[2, 5:11, 5:11, 5:11] = 1.0
    return image


def test_occlusion_map_is_highest_where_the_network_reads():
    image = _centre_image()
    maps, probabilities = occlusion_maps(CentreReader(), image, torch.tensor([1.0, 1.0]), [2, 2], mask_size=4)
    assert maps.shape == (2, 2, 16, 16, 16)
    assert np.allclose(probabilities, [1 / (1 + np.exp(4)), 1 / (1 + np.exp(-4))] * 2, atol=1e-5)
    for t in range(2):  # target t reads modality t only
        reads = maps[t, t]
        peak = np.unravel_index(np.argmax(reads), reads.shape)
        assert all(6 <= p < 10 for p in peak), peak
        assert reads.max() > 0.01 and abs(reads[0, 0, 0]) < 1e-3 * reads.max()
        assert np.abs(maps[t, 1 - t]).max() < 1e-6  # the other modality does not matter to it


def test_missing_modality_gets_an_empty_map_and_bad_shapes_are_refused():
    maps, _ = occlusion_maps(CentreReader(), _centre_image(), torch.tensor([1.0, 0.0]), [2, 2], mask_size=4)
    assert np.all(maps[:, 1] == 0) and maps[0, 0].max() > 0
    with pytest.raises(ValueError, match=r"`image` must be \(M \+ 1, \*spatial\) for `presence` of M = 3"):
        occlusion_maps(CentreReader(), _centre_image(), torch.ones(3), [2, 2])


def test_choose_lesions_wrong_then_right_per_target():
    table = pd.DataFrame({"case": list("abcde"), "fold": ["0"] * 5,
                          "t": ["1", "0", "1", "0", ""], "pred_t": ["1", "1", "0", "0", "1"],
                          "confidence_t": ["0.9", "0.8", "0.95", "0.6", "0.99"]})
    picks = choose_lesions(table, {"t": ["0", "1"]}, count=4)
    assert [p["case"] for p in picks] == ["c", "a", "b", "d"]  # e is unlabelled
    assert picks[0]["reason"] == "t: most confidently wrong" and picks[1]["reason"] == "t: most confidently right"
    assert len(choose_lesions(table, {"t": ["0", "1"]}, count=10)) == 4


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return load_lesions(make_lesion_cohort(tmp_path_factory.mktemp("lesions") / "lesions", patients=3,
                                           lesions_per_patient=(1, 2), seed=5))


def test_mean_attention_rows_sum_to_one(cohort):
    torch.manual_seed(0)
    pipeline = [*lesion_preprocessing(cohort.modalities, cohort.targets, PIXDIM, SIZE), network_input()]
    from monai.transforms import Compose

    networks = [CorrelationRoutingNetwork(len(cohort.modalities), cohort.num_classes, stem_channels=4,
                                          branch_channels=4, token_size=8, num_heads=2, attention_layers=2)
                for _ in range(2)]
    half = len(cohort.records) // 2
    weights = mean_attention(networks, [cohort.records[:half], cohort.records[half:]], Compose(pipeline), batch_size=2)
    t = len(cohort.targets)
    assert weights.shape == (t, t)
    assert np.allclose(weights.sum(1), 1.0, atol=1e-5) and weights.min() >= 0


def _fold_models(cohort, root: Path, name: str) -> Path:
    """Two untrained fold models and their out-of-fold table (no training: the maps need no skill)."""
    torch.manual_seed(0)
    pre = lesion_preprocessing(cohort.modalities, cohort.targets, PIXDIM, SIZE)
    tables = []
    for fold, records in enumerate((cohort.records[::2], cohort.records[1::2])):
        net = build_lesion_classifier(name, len(cohort.modalities), cohort.num_classes, widen_factor=0.25,
                                      feature_size=16)
        describe_model(root / f"fold_{fold}", net, cohort, pixdim=PIXDIM, size=SIZE)
        torch.save(net.state_dict(), root / f"fold_{fold}" / "model.pt")
        p = predict_probabilities([net], records, pre, cohort.num_classes)[0]
        tables.append(predictions_table(records, cohort.targets, p, fold=fold))
    pd.concat(tables).to_csv(root / "oof_predictions.csv", index=False)
    return root / "oof_predictions.csv"


def test_explain_lesions_crn_and_report(cohort, tmp_path):
    oof = _fold_models(cohort, tmp_path / "models", "crn")
    explained = explain_lesions(tmp_path / "models", cohort, oof, count=2)
    assert len(explained["saliency"]) == 2
    lesion = explained["saliency"][0]
    m, t = len(cohort.modalities), len(cohort.targets)
    assert lesion["maps"].shape == (t, m, *SIZE) and lesion["image"].shape == (m, *SIZE)
    assert explained["attention"]["weights"].shape == (t, t)
    evaluate_lesions(oof, cohort.targets, tmp_path / "eval", bootstrap=0, **explained)
    html = (tmp_path / "eval" / "report" / "report.html").read_text()
    assert "Where the models looked" in html and "CRN attention between targets" in html
    assert html.count("<img") == 2 * t + 2 + 1  # confusion + reliability per target, 2 lesions, attention
    assert (tmp_path / "eval" / "report" / f"saliency_{lesion['case']}.png").is_file()


def test_explain_lesions_off_for_other_networks_and_refuses_unknown_lesions(cohort, tmp_path):
    oof = _fold_models(cohort, tmp_path / "models", "resnet18")
    assert explain_lesions(tmp_path / "models", tmp_path / "nowhere", oof, count=0) == {"saliency": [], "attention": None}
    evaluate_lesions(oof, cohort.targets, tmp_path / "eval", bootstrap=0)
    html = (tmp_path / "eval" / "report" / "report.html").read_text()
    assert "Where the models looked" not in html and "CRN attention" not in html
    assert html.count("<img") == 2 * len(cohort.targets)
    table = pd.read_csv(oof, dtype=str, keep_default_na=False)
    table.loc[:, "case"] = "ghost"
    with pytest.raises(InputError, match=r"predictions: expected every lesion in the cohort .* found 'ghost' missing"):
        explain_lesions(tmp_path / "models", cohort, table, count=1)
