"""medrefine.workflows.near_pipeline: the warning when a refinement changed the labels drastically."""

from __future__ import annotations

import pandas as pd

from medrefine.workflows.near_pipeline import drastic_change_warning


def _guard(kept: int, total: int, cases: int = 2) -> pd.DataFrame:
    actions = ["kept_input"] * kept + ["refined"] * (total - kept)
    return pd.DataFrame({"case": [f"case_{i % cases:03d}" for i in range(total)], "class_id": range(total),
                         "action": actions})


def test_no_warning_for_a_modest_refinement():
    assert drastic_change_warning(0.836, _guard(2, 20), model_dir="refined/model") is None
    assert drastic_change_warning(0.6, None, model_dir="m") is None  # the threshold itself passes


def test_warning_names_the_model_and_the_dice():
    """The under-trained run of issue #15: 0.757 -> 0.474 against the reference, the guard silent."""
    line = drastic_change_warning(0.4741, _guard(1, 20), model_dir="runs/model", report="out/report/report.html")
    assert line == ("warning: the refined labels differ drastically from the input (mean Dice refined vs input "
                    "0.474 < 0.6): the model runs/model may be under-trained or made for other data; "
                    "check out/report/report.html before using the refined labels")


def test_warning_when_the_guard_kept_most_structures():
    line = drastic_change_warning(1.0, _guard(11, 20), model_dir="m")
    assert line == ("warning: the guard kept the input for 11 of 20 structure(s) over 2 case(s): the model m "
                    "may be under-trained or made for other data")
    assert drastic_change_warning(1.0, _guard(10, 20), model_dir="m") is None  # half is not most
    both = drastic_change_warning(0.3, _guard(20, 20), model_dir="m")
    assert "0.300 < 0.6" in both and "20 of 20" in both
