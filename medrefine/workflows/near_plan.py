"""The plan of a one-command NeAR refinement: the bundle's recipe, sized to the data, timed here.

``medrefine refine`` (and anything else that trains NeAR outside the bundle, e.g. the refinement
benchmark) takes its recipe from the ``annotation_refinement`` bundle's own configs
(:func:`bundle_recipe`), so the bundle stays the one place the defaults are set. A plan, as
nnU-Net makes one, fixes what the data decides (the cube edge, the epochs for the number of
cases) and what the machine decides (threads, device), and estimates the run's time by timing a
few real training steps and the refinement of one case on this machine (:func:`make_plan`).

The bundle trains through ``monai.bundle`` with validation, checkpoints and TensorBoard; the
one-command verb wants the same training without them and with a time estimate before it
starts, hence :func:`build_trainer` beside the config.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrefine.errors import InputError, did_you_mean

__all__ = [
    "PRESETS",
    "RECIPE_KEYS",
    "RefinePlan",
    "bundle_recipe",
    "plan_epochs",
    "build_trainer",
    "time_training_steps",
    "time_refinement",
    "make_plan",
    "available_threads",
    "query_resolution",
    "query_points",
]

logger = logging.getLogger(__name__)

#: Keys of the bundle's ``train.json`` that make the training recipe (optional ones may be absent).
RECIPE_KEYS: tuple[str, ...] = (
    "learning_rate", "lambda_dice", "lambda_latent", "class_weight_cap", "hidden_channels", "latent_dim",
    "grid_sizes", "grid_channels", "encoder_channels", "num_points", "batch_size", "jitter", "train_resolution",
    "margin_mm", "window", "max_resolution", "lr_gamma", "amp", "seed", "chunk_size", "boundary_fraction",
)
#: Keys of the bundle's ``evaluate.json``: fitting a new case's latent (inductive refinement).
FIT_KEYS: tuple[str, ...] = ("fit_steps", "fit_lr")

#: Epoch presets: multiples of :func:`medrefine.engines.default_epochs`.
PRESETS: dict[str, float] = {"fast": 0.5, "default": 1.0, "quality": 1.5}

_BUNDLE = "annotation_refinement"


def bundle_recipe(bundle: str | Path = _BUNDLE) -> dict[str, Any]:
    """The NeAR training recipe of the refinement bundle: its ``train.json`` values of :data:`RECIPE_KEYS`
    plus ``evaluate.json``'s :data:`FIT_KEYS`.

    Args:
        bundle: the bundle's name or folder. Defaults to ``"annotation_refinement"``.

    Returns:
        ``{key: value}`` for every key the configs set to a plain value (not a ``$`` expression
        or ``@`` reference).

    Raises:
        InputError: the bundle or its configs cannot be found or read, or one lacks a required key.
    """
    from medrefine.bundle.discovery import find_bundle

    configs = find_bundle(bundle).path / "configs"
    recipe: dict[str, Any] = {}
    for name, keys in (("train.json", RECIPE_KEYS), ("evaluate.json", FIT_KEYS)):
        path = configs / name
        try:
            config = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"{path}: cannot read the bundle's recipe ({err})") from None
        for key in keys:
            value = config.get(key)
            if not (isinstance(value, str) and value[:1] in ("$", "@")) and key in config:
                recipe[key] = value
    missing = [k for k in ("learning_rate", "latent_dim", "hidden_channels", "batch_size") if k not in recipe]
    if missing:
        raise InputError(f"{configs / 'train.json'}: expected the recipe keys {missing}, found none")
    return recipe


def available_threads() -> int:
    """CPU cores this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def plan_epochs(num_cases: int, *, epochs: int | None = None, preset: str = "default") -> int:
    """Training epochs: ``epochs`` when given, else :func:`~medrefine.engines.default_epochs` times the preset.

    Example:
        >>> plan_epochs(16), plan_epochs(16, preset="fast"), plan_epochs(16, preset="quality"), plan_epochs(16, epochs=5)
        (200, 100, 300, 5)
    """
    from medrefine.engines import default_epochs

    if preset not in PRESETS:
        raise InputError(f"`preset` must be one of {list(PRESETS)}, got {preset!r}." + did_you_mean(preset, PRESETS))
    if epochs is not None:
        if int(epochs) < 1:
            raise InputError(f"`epochs` must be >= 1, got {epochs}")
        return int(epochs)
    return max(1, round(default_epochs(num_cases) * PRESETS[preset]))


def build_trainer(
    cases: Sequence[Mapping[str, Any]],
    recipe: Mapping[str, Any],
    *,
    num_classes: int,
    epochs: int,
    device: Any = "cpu",
    handlers: Sequence[Any] = (),
) -> Any:
    """The bundle's NeAR training (network, loss, Adam, learning-rate steps) on ``cases``, without its files.

    What ``train.json`` builds, from :func:`bundle_recipe`'s values: an
    :class:`~medrefine.networks.ImplicitRefiner` with one latent per case, the
    :class:`~medrefine.losses.NeARLoss` with capped inverse-frequency class weights, and an
    :class:`~medrefine.engines.AutoDecoderTrainer` querying half the cube edge per step.

    Args:
        cases: from :func:`~medrefine.workflows.near.load_refinement_cases` (latent ``n`` is ``cases[n]``).
        recipe: from :func:`bundle_recipe`.
        num_classes: classes, background included.
        epochs: training epochs.
        device: training device. Defaults to ``"cpu"``.
        handlers: more ignite handlers (e.g. :class:`~medrefine.handlers.EpochProgress`).

    Returns:
        The trainer; ``trainer.run()`` trains, :func:`~medrefine.workflows.near.export_model` writes it.
    """
    import torch

    from medrefine.engines import create_autodecoder_trainer, default_latent_weight, default_milestones
    from medrefine.losses.near import NeARLoss, inverse_frequency_weights
    from medrefine.networks import ImplicitRefiner

    network = ImplicitRefiner(
        num_cases=len(cases), out_channels=int(num_classes), latent_dim=int(recipe["latent_dim"]),
        grid_channels=tuple(recipe.get("grid_channels", (64, 32))), grid_sizes=tuple(recipe.get("grid_sizes", (4, 8))),
        appearance_channels=1, encoder_channels=int(recipe.get("encoder_channels", 0)),
        hidden_channels=tuple(recipe["hidden_channels"]),
    )  # fmt: skip
    labels = torch.stack([torch.as_tensor(c["label"]).long() for c in cases])
    weights = inverse_frequency_weights(labels, int(num_classes), class_weight_cap=recipe.get("class_weight_cap", 5.0))
    latent = recipe.get("lambda_latent")  # null in train.json: default_latent_weight(epochs), as the config does
    latent = default_latent_weight(int(epochs)) if latent is None else float(latent)
    loss = NeARLoss(int(num_classes), class_weights=weights, lambda_dice=recipe.get("lambda_dice", 1.0),
                    lambda_latent=latent)
    extra = {"boundary_fraction": recipe["boundary_fraction"]} if recipe.get("boundary_fraction") else {}
    return create_autodecoder_trainer(
        network, cases, loss_function=loss, lr=float(recipe["learning_rate"]), milestones=default_milestones(epochs),
        gamma=float(recipe.get("lr_gamma", 0.1)), max_epochs=int(epochs), batch_size=int(recipe["batch_size"]),
        train_resolution=query_resolution(cases, recipe), jitter=float(recipe.get("jitter", 0.5)),
        num_points=query_points(cases, recipe), device=torch.device(device), amp=bool(recipe.get("amp", False)),
        seed=int(recipe.get("seed", 0)), chunk_size=int(recipe.get("chunk_size", 2**16)),
        train_handlers=list(handlers), **extra,
    )  # fmt: skip


def query_resolution(cases: Sequence[Mapping[str, Any]], recipe: Mapping[str, Any]) -> int:
    """The query grid edge per case and step: the recipe's ``train_resolution``, else half the cube (as ``train.json``)."""
    from medrefine.workflows.near import cube_edge

    return int(recipe.get("train_resolution") or max(8, cube_edge(cases) // 2))


def query_points(cases: Sequence[Mapping[str, Any]], recipe: Mapping[str, Any]) -> int | None:
    """Random points per case and step: the recipe's ``num_points``, at most the whole query grid
    (a small cube's grid can hold fewer)."""
    num_points = recipe.get("num_points")
    return None if num_points is None else min(int(num_points), query_resolution(cases, recipe) ** 3)


@contextmanager
def _quiet(name: str = "medrefine.workflows.near"):
    """Silence a logger below ERROR for the duration (the guard's per-case lines while timing)."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def time_training_steps(trainer: Any, *, steps: int = 3, warmup: int = 1) -> float:
    """Seconds per training step of ``trainer``, measured over ``steps`` real steps after ``warmup``.

    Runs the trainer (a throwaway one: its network is trained by these steps) and stops it after
    ``warmup + steps`` iterations.
    """
    from ignite.engine import Events

    stamps: list[float] = []
    total = int(warmup) + int(steps)

    def stamp(engine: Any) -> None:
        stamps.append(time.perf_counter())
        if len(stamps) >= total:
            engine.terminate()

    trainer.state.max_epochs = max(trainer.state.max_epochs or 1, total)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, stamp)
    trainer.run()
    if len(stamps) < 2:
        raise RuntimeError("the timing run stopped before two training steps")
    return (stamps[-1] - stamps[int(warmup) - 1 if warmup else 0]) / (len(stamps) - max(int(warmup), 1))


def time_refinement(network: Any, case: Mapping[str, Any], *, classes: Mapping[int, str] | int,
                    refine_mode: str = "transductive", model: Any = None, trained_cases: Sequence[str] | None = None,
                    fit: Mapping[str, Any] | None = None, device: Any = None) -> tuple[float, float]:
    """Seconds to refine and score one case, and seconds to write the report.

    Runs what ``medrefine refine`` runs on ``case`` alone, into a temporary folder:
    :func:`~medrefine.workflows.near.refine_cases` and the scoring of
    :func:`~medrefine.workflows.near.evaluate_refinement` (timed together: per case), then the
    report it writes (timed apart: once per run).

    Returns:
        ``(seconds per case, seconds of the report)``.
    """
    from medrefine.reports import write_report
    from medrefine.workflows.near import evaluate_refinement, refine_cases

    with tempfile.TemporaryDirectory(prefix="medrefine-plan-") as tmp, _quiet():
        start = time.perf_counter()
        written = refine_cases(network, [case], tmp, refine_mode=refine_mode, model=model, trained_cases=trained_cases,
                               device=device, **(fit or {}))
        scored = evaluate_refinement([case], tmp, classes=classes, refined=written, report=False)
        per_case = time.perf_counter() - start
        metrics = scored["metrics"]
        write_report(metrics.get("refined", metrics["change"]), Path(tmp) / "report", name="refined",
                     compare={"input": metrics["input"]} if "input" in metrics else None)
        report = time.perf_counter() - start - per_case
    return per_case, report


@dataclass
class RefinePlan:
    """What ``medrefine refine`` will do, and how long it should take on this machine."""

    num_cases: int
    cube_edge: int
    query_resolution: int
    num_points: int | None
    epochs: int
    batch_size: int
    steps_per_epoch: int
    threads: int
    device: str
    refine_mode: str
    preset: str
    seconds_per_step: float
    seconds_per_case: float
    seconds_so_far: float = 0.0
    seconds_fixed: float = 0.0

    @property
    def training_seconds(self) -> float:
        """Estimated training time (0 when a trained model is reused)."""
        return self.epochs * self.steps_per_epoch * self.seconds_per_step

    @property
    def estimated_seconds(self) -> float:
        """Estimated time of the whole run, reading and planning included."""
        return self.seconds_so_far + self.training_seconds + self.num_cases * self.seconds_per_case + self.seconds_fixed

    def lines(self) -> list[str]:
        """The plan in a few lines, as ``medrefine refine`` prints it."""
        points = f"{self.num_points} points of a {self.query_resolution}^3 grid" if self.num_points else \
            f"a {self.query_resolution}^3 grid"
        out = [f"plan: {self.num_cases} cases on {self.cube_edge}^3 cubes, {self.refine_mode} refinement, "
               f"{self.threads} thread(s) on {self.device}"]
        if self.epochs:
            out.append(f"  training: {self.epochs} epochs ({self.preset}) x {self.steps_per_epoch} steps of "
                       f"{self.batch_size} cases, {points} each; {self.seconds_per_step:.2f} s/step measured")
        out.append(f"  refining + scoring: {self.seconds_per_case:.1f} s/case, report {self.seconds_fixed:.0f} s measured")
        out.append(f"  estimated time: {self.estimated_seconds / 60:.1f} min")
        return out


def make_plan(
    cases: Sequence[Mapping[str, Any]],
    recipe: Mapping[str, Any],
    *,
    num_classes: int,
    epochs: int | None = None,
    preset: str = "default",
    device: Any = "cpu",
    network: Any = None,
    model: Any = None,
    classes: Mapping[int, str] | None = None,
    seconds_so_far: float = 0.0,
) -> RefinePlan:
    """Plan a refinement of ``cases`` and time it on this machine.

    Without ``network`` (training, then transductive refinement) a throwaway trainer of the same
    recipe runs 1 + 3 real steps to time one step, and its network refines the first case to time
    the refinement and the report; with a trained ``network`` and its ``model`` description (inductive
    refinement of new cases) only the latter is timed.

    Args:
        cases: from :func:`~medrefine.workflows.near.load_refinement_cases`.
        recipe: from :func:`bundle_recipe`.
        num_classes: classes, background included.
        epochs: training epochs; None: :func:`plan_epochs` with ``preset``.
        preset: ``"fast"``, ``"default"`` or ``"quality"`` (:data:`PRESETS`).
        device: the device the run uses.
        network, model: a trained refiner and its description (from
            :func:`~medrefine.workflows.near.load_model`) to reuse instead of training.
        classes: the class table (default: numbered classes).
        seconds_so_far: time already spent (reading the cases), counted in the estimate.

    Returns:
        The :class:`RefinePlan`.
    """
    import torch

    from medrefine.workflows.near import cube_edge

    start = time.perf_counter()
    threads = torch.get_num_threads()
    first = cases[0]
    batch = min(int(recipe["batch_size"]), len(cases))
    if network is None:
        n_epochs = plan_epochs(len(cases), epochs=epochs, preset=preset)
        trainer = build_trainer(cases, recipe, num_classes=num_classes, epochs=n_epochs, device=device)
        per_step = time_training_steps(trainer)
        per_case, report = time_refinement(trainer.network, first, classes=classes or num_classes,
                                           trained_cases=[str(c["case"]) for c in cases], device=device)
        mode, steps = "transductive", math.ceil(len(cases) / batch)
    else:
        n_epochs, per_step, steps, mode = 0, 0.0, 0, "inductive"
        fit = {"fit_steps": int(recipe.get("fit_steps", 60)), "fit_lr": float(recipe.get("fit_lr", 0.03)),
               "fit_resolution": int(model.value("train_resolution", 64)), "fit_num_points": model.value("num_points")}
        per_case, report = time_refinement(network, first, classes=classes or num_classes, refine_mode="inductive",
                                           model=model, fit=fit, device=device)
    return RefinePlan(
        num_cases=len(cases), cube_edge=cube_edge(cases),
        query_resolution=query_resolution(cases, recipe) if network is None else int(model.value("train_resolution", 64)),
        num_points=query_points(cases, recipe) if network is None else model.value("num_points", None), epochs=n_epochs, batch_size=batch, steps_per_epoch=steps,
        threads=threads, device=str(device), refine_mode=mode, preset=preset if epochs is None else f"--epochs {epochs}",
        seconds_per_step=per_step, seconds_per_case=per_case, seconds_fixed=report,
        seconds_so_far=float(seconds_so_far) + time.perf_counter() - start,
    )  # fmt: skip
