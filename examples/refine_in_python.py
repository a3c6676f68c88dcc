"""Annotation refinement from Python: cohort -> NeAR auto-decoder -> refined labels -> before/after.

The bundle (`medrefine run annotation_refinement ...`) does the same from configs; this script
shows the library calls underneath, on a small cohort so it finishes in a couple of minutes.

    .venv/bin/python examples/refine_in_python.py [--out DIR]   # default: a new temporary folder
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from medrefine.data.phantoms import CARDIAC_CLASSES, make_cardiac_cohort
from medrefine.engines import create_autodecoder_trainer
from medrefine.losses import NeARLoss, inverse_frequency_weights
from medrefine.networks import ImplicitRefiner
from medrefine.workflows.near import (
    evaluate_refinement,
    format_evaluation,
    load_refinement_cases,
    refine_cases,
)


def main(out: Path, epochs: int = 150) -> None:
    datalist = make_cardiac_cohort(out / "cohort", cases=4, size=48, noise="moderate", seed=0)
    cases = load_refinement_cases(datalist, size=48, num_classes=11, window=(-100, 500))

    network = ImplicitRefiner(num_cases=len(cases), out_channels=11, grid_sizes=(4, 8), grid_channels=(64, 32))
    labels = torch.stack([torch.as_tensor(c["label"]).long() for c in cases])
    loss = NeARLoss(11, class_weights=inverse_frequency_weights(labels, 11, class_weight_cap=2.0), lambda_dice=1.0,
                    lambda_latent=1.0)
    trainer = create_autodecoder_trainer(network, cases, loss_function=loss, lr=1e-2, max_epochs=epochs,
                                         batch_size=4, train_resolution=24, num_points=4096)
    trainer.run()

    written = refine_cases(network, cases, out / "refined")  # labels back on each case's own grid
    result = evaluate_refinement(cases, out / "refined", classes=CARDIAC_CLASSES, refined=written)
    print(format_evaluation(result))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the cohort and the refined labels (default: a new temporary folder)")
    parser.add_argument("--epochs", type=int, default=150, help="training epochs (default 150)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="medrefine_example_"))
    print(f"writing into {out}")
    main(out, epochs=args.epochs)
