"""Planning the multi-organ segmentation training from the data and the hardware, as nnU-Net does.

Isensee F. et al., nnU-Net: a self-configuring method for deep learning-based biomedical image
segmentation, Nature Methods 2021: a *dataset fingerprint* (spacings, shapes, foreground
intensities, classes) fixes the pre-processing and the network, and the hardware fixes what fits.
MONAI's Auto3DSeg ``DataAnalyzer`` computes a similar fingerprint but plans for its own
algorithm templates, not for a bundle's config keys, hence this module:

- :func:`~medrefine.workflows.segmentation_fingerprint.fingerprint` reads every case once (RAS-ordered spacing and shape, foreground intensity
  percentiles 0.5/99.5, voxels and millilitres per class, the classes actually present);
- :func:`make_plan` derives the bundle's keys from it: ``pixdim`` (median spacing; for strongly
  anisotropic data the low-resolution axis at its 10th percentile), ``roi_size`` and
  ``batch_size`` fitting a memory budget (an activation-count estimate of the U-Net), ``channels``
  (depth from the patch size), ``hu_window`` (the foreground percentiles), the class table of the
  classes present (``out_channels`` = present structures + background), and ``epochs`` fitting a
  time budget, from seconds per iteration **measured** by a short timing probe (a few real
  training steps of the planned network on random patches of the planned size, and a few forward
  passes for the sliding-window validation) on the device the plan is for;
- :class:`SegmentationPlan`: typed accessors over the plan JSON, the form the bundle's
  ``train.json`` reads (``--set plan=plan.json``: keys take ``@planned.value(key, default)``).

A config key set on the command line still wins over the plan; without a plan the bundle keeps
its defaults, with classes from the data (:func:`training_classes`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from medrefine.errors import InputError

__all__ = [
    "PLAN_FORMAT",
    "SegmentationPlan",
    "make_plan",
    "read_plan",
    "write_plan",
    "training_classes",
    "training_bytes",
    "time_probe",
    "parse_duration",
    "plan_bundle",
]

logger = logging.getLogger(__name__)

PLAN_FORMAT = 1
_MAX_PATCH = (160, 160, 160)  # nnU-Net-like ceiling per axis; memory decides below it
_BASE_CHANNELS, _MAX_CHANNELS = 16, 256  # the bundle's default U-Net: 16-32-64-128-256
_ACTIVATIONS_PER_LEVEL = 24  # feature maps kept per level for the backward pass (conv, norm, act, residual; enc + dec)


# ------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class SegmentationPlan:
    """Typed accessors over a plan JSON (see the module docstring); an empty plan is falsy.

    Attributes:
        data: the JSON content: ``config`` (bundle keys), ``classes``, ``fingerprint``,
            ``hardware``, ``timing``.
        path: the file read, or None.
    """

    data: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __bool__(self) -> bool:
        return bool(self.data)

    def value(self, key: str, default: Any = None) -> Any:
        """The planned value of a bundle config key, else ``default`` (always ``default`` for an empty plan)."""
        return self.data.get("config", {}).get(key, default)

    @property
    def classes(self) -> dict[int, str]:
        """The class table planned: background + the structures present in the data ({} without a plan)."""
        return {int(k): str(v) for k, v in self.data.get("classes", {}).items()}

    @property
    def out_channels(self) -> int:
        return len(self.classes)

    @property
    def pixdim(self) -> list[float]:
        return [float(v) for v in self.value("pixdim", [])]

    @property
    def roi_size(self) -> list[int]:
        return [int(v) for v in self.value("roi_size", [])]

    @property
    def batch_size(self) -> int:
        return int(self.value("batch_size", 0))

    @property
    def epochs(self) -> int:
        return int(self.value("epochs", 0))

    @property
    def seconds_per_epoch(self) -> float:
        return float(self.data.get("timing", {}).get("seconds_per_epoch", 0.0))

    @property
    def estimated_seconds(self) -> float:
        return float(self.data.get("timing", {}).get("estimated_seconds", 0.0))

    def lines(self) -> list[str]:
        """The plan in a few lines, as ``medrefine plan`` prints it."""
        if not self:
            return ["no plan: the bundle's defaults"]
        fp, t, hw = self.data.get("fingerprint", {}), self.data.get("timing", {}), self.data.get("hardware", {})
        absent = len(fp.get("table", {})) - self.out_channels
        out = [f"plan: {fp.get('num_cases', '?')} case(s), {self.out_channels - 1} structures present "
               f"(out_channels {self.out_channels}" + (f"; {absent} absent from the data dropped)" if absent > 0 else ")"),
               f"  spacing {self.pixdim} mm, patch {self.roi_size} x {self.value('num_samples')} per case, "
               f"batch {self.batch_size} case(s), U-Net channels {self.value('channels')}, HU window "
               f"{[round(v, 1) for v in self.value('hu_window', [])]}",
               f"  {hw.get('device', '?')}, {hw.get('threads', '?')} thread(s), memory budget "
               f"{hw.get('memory_budget_bytes', 0) / 2**30:.1f} GiB (estimated use {hw.get('estimated_bytes', 0) / 2**30:.2f} GiB"
               + (", over it at the smallest patch)" if hw.get("estimated_bytes", 0) > hw.get("memory_budget_bytes", 0) else ")"),
               f"  {t.get('seconds_per_iteration', 0):.2f} s/iteration ({t.get('method', '?')}) x "
               f"{t.get('iterations_per_epoch', '?')} + validation {t.get('validation_seconds_per_epoch', 0):.1f} s/epoch "
               f"= {self.seconds_per_epoch:.1f} s/epoch"]
        budget = t.get("time_budget_seconds")
        out.append(f"  {self.epochs} epochs" + (f" (time budget {budget / 60:.0f} min)" if budget else "")
                   + f": estimated {self.estimated_seconds / 60:.1f} min")
        default = self.data.get("default")
        if default:
            out.append(f"  bundle defaults for comparison: out_channels {default['out_channels']}, patch "
                       f"{default['roi_size']}, {default['seconds_per_epoch']:.1f} s/epoch")
        return out


@lru_cache(maxsize=8)
def _read(path: str, mtime: float) -> SegmentationPlan:
    from medrefine.io import read_json

    data = read_json(path, what="plan")
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict) or not isinstance(data.get("classes"), dict):
        raise InputError(f"{path}: expected a segmentation plan with 'config' and 'classes', found "
                         f"{sorted(data) if isinstance(data, dict) else type(data).__name__}; write one with `medrefine plan`")
    if data.get("format") != PLAN_FORMAT:
        raise InputError(f"{path}: plan format {data.get('format')!r} is not supported (this medrefine reads {PLAN_FORMAT})")
    return SegmentationPlan(data=data, path=Path(path))


def read_plan(path: str | Path | None, *, announce: bool = False) -> SegmentationPlan:
    """The plan at ``path``, or an empty plan for None / ``""`` (the bundle's defaults apply).

    With ``announce`` the plan's lines go to stderr (beside the training progress bar).

    Raises:
        InputError: the file is missing, not JSON or not a plan (naming it).
    """
    if path in (None, ""):
        return SegmentationPlan()
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise InputError(f"{path}: plan file not found; write one with `medrefine plan multiorgan_ct_segmentation "
                         "--set dataset_dir=DATA -o plan.json`")
    plan = _read(str(path), path.stat().st_mtime)
    if announce:
        import sys

        from tqdm.auto import tqdm

        for line in plan.lines():
            tqdm.write(line, file=sys.stderr)
    return plan


def write_plan(plan: SegmentationPlan | Mapping[str, Any], path: str | Path) -> Path:
    """Write the plan JSON atomically; returns the path."""
    from medrefine.io import atomic_write

    data = plan.data if isinstance(plan, SegmentationPlan) else dict(plan)
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=1) + "\n")
    return path


# ---------------------------------------------------------------------------------- classes


def training_classes(table: Mapping[int, str], cases: Sequence[Mapping[str, Any]], *, plan: SegmentationPlan | None = None,
                     drop_absent: bool = True) -> dict[int, str]:
    """The classes the bundle trains: the plan's, else the table's classes present in the labels.

    Args:
        table: the cohort's class table (after ``structures``).
        cases: the training cases (``label`` files).
        plan: a :class:`SegmentationPlan`; its classes win (they must be in ``table``).
        drop_absent: drop the classes no label holds (a 117-structure table on data with 41: 42
            output channels instead of 118). False keeps the table.

    Raises:
        InputError: a planned class is not in the table (the plan was made for other data).
    """
    table = {int(k): str(v) for k, v in table.items()}
    if plan:
        planned = plan.classes
        foreign = {k: v for k, v in planned.items() if table.get(k) != v}
        if foreign:
            raise InputError(f"{plan.path}: planned classes {foreign} are not in the data's class table; "
                             "make the plan again for this dataset")
        return planned
    if not drop_absent:
        return dict(sorted(table.items()))
    from medrefine.workflows.segmentation_fingerprint import label_values

    present = label_values(cases)
    kept = {k: v for k, v in sorted(table.items()) if k == 0 or k in present}
    if len(kept) < len(table):
        logger.info("training %d of the %d classes of the table: the others occur in no label", len(kept), len(table))
    return kept


# ------------------------------------------------------------------------------- planning


def target_spacing(spacings: Sequence[Sequence[float]], *, anisotropy: float = 3.0) -> list[float]:
    """Median spacing per axis; an axis coarser than ``anisotropy`` times the finest takes its 10th percentile (nnU-Net).

    Example:
        >>> target_spacing([[1, 1, 5], [1, 1, 4], [0.8, 0.8, 3.5]])
        [1.0, 1.0, 3.6]
    """
    s = np.asarray(spacings, float)
    target = np.median(s, axis=0)
    worst = int(np.argmax(target))
    if target[worst] > anisotropy * np.min(np.delete(target, worst)):
        target[worst] = max(float(np.percentile(s[:, worst], 10)), float(np.max(np.delete(target, worst))))
    return [round(float(v), 4) for v in target]


def network_channels(roi_size: Sequence[int]) -> list[int]:
    """U-Net channels per level: one stride-2 level per halving that leaves >= 4 voxels on the shortest patch axis
    (at least 3 levels, at most 6), 16 channels doubling to 256.

    Example:
        >>> network_channels([96, 96, 96]), network_channels([64, 64, 16])
        ([16, 32, 64, 128, 256], [16, 32, 64])
    """
    levels = int(np.clip(math.floor(math.log2(max(min(roi_size), 1) / 4)) + 1, 3, 6))
    return [min(_BASE_CHANNELS * 2**i, _MAX_CHANNELS) for i in range(levels)]


def training_bytes(roi_size: Sequence[int], channels: Sequence[int], out_channels: int, patches: int) -> int:
    """Estimated memory of one training step of the U-Net: kept activations of every level plus the
    logits, softmax, one-hot target and their gradients, float32, for ``patches`` patches; weights ignored.

    Example:
        >>> training_bytes((64, 64, 64), (16, 32, 64), 42, 2) // 2**20
        1344
    """
    voxels = int(np.prod([int(r) for r in roi_size]))
    features = sum(c * voxels / 8**level for level, c in enumerate(channels))
    return int(patches * 4 * (_ACTIVATIONS_PER_LEVEL * features + 4 * int(out_channels) * voxels))


def _divisible(n: float, k: int) -> int:
    return max(k, int(math.ceil(n / k)) * k)


def _fit_patch(median_shape: Sequence[float], out_channels: int, budget: float, patches: int) -> tuple[list[int], list[int]]:
    """Largest patch (nnU-Net: start at the median shape, shrink the axis largest relative to it) that fits ``budget``."""
    patch = [min(_divisible(m, 8), cap) for m, cap in zip(median_shape, _MAX_PATCH)]
    while True:
        channels = network_channels(patch)
        step = 2 ** (len(channels) - 1)
        patch = [_divisible(p, step) for p in patch]
        shrinkable = [p - step >= 16 for p in patch]
        if training_bytes(patch, channels, out_channels, patches) <= budget or not any(shrinkable):
            return patch, channels
        ratios = [p / max(m, 1.0) if ok else -1.0 for p, m, ok in zip(patch, median_shape, shrinkable)]
        patch[int(np.argmax(ratios))] -= step


def time_probe(roi_size: Sequence[int], channels: Sequence[int], out_channels: int, patches: int, *,
               device: Any = "cpu", num_res_units: int = 2, steps: int = 2, warmup: int = 1) -> tuple[float, float]:
    """Measured seconds per training iteration and per forward window of the planned network.

    Builds the bundle's U-Net (:func:`~medrefine.networks.segmentation.build_segmentation_network`),
    its DiceCE loss and AdamW, and times ``steps`` real steps on random patches after ``warmup``;
    then times one forward pass of one window (sliding-window validation) without gradients.

    Returns:
        ``(seconds per iteration, seconds per window)``.
    """
    import torch
    from monai.losses import DiceCELoss

    from medrefine.networks.segmentation import build_segmentation_network

    device = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    net = build_segmentation_network("unet", out_channels=int(out_channels), channels=list(channels),
                                     num_res_units=int(num_res_units)).to(device)
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    shape = (int(patches), 1, *[int(r) for r in roi_size])
    image = torch.rand(shape, generator=generator).to(device)
    target = torch.randint(0, int(out_channels), (int(patches), 1, *shape[2:]), generator=generator).to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for i in range(warmup + steps):
        if i == warmup:
            sync()
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss(net(image), target).backward()
        optimizer.step()
    sync()
    per_step = (time.perf_counter() - start) / steps
    net.eval()
    with torch.no_grad():
        start = time.perf_counter()
        net(image[:1])
        sync()
    return per_step, time.perf_counter() - start


def _windows(shape: Sequence[float], roi: Sequence[int], overlap: float) -> int:
    return int(np.prod([1 if s <= r else math.ceil((s - r) / max(1, int(r * (1 - overlap)))) + 1
                        for s, r in zip(shape, roi)]))


def _memory_budget(device: Any) -> int:
    import psutil
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return int(0.8 * torch.cuda.get_device_properties(torch.device(device)).total_memory)
    return int(min(0.5 * psutil.virtual_memory().available, 8 * 2**30))


def make_plan(
    fp: Mapping[str, Any],
    *,
    num_samples: int = 2,
    num_val: int = 1,
    val_interval: int = 10,
    overlap: float = 0.25,
    num_res_units: int = 2,
    default_epochs: int = 500,
    time_budget_s: float | None = None,
    memory_budget_bytes: int | None = None,
    device: Any = "cpu",
    compare_default: Mapping[str, Any] | None = None,
    probe: bool = True,
) -> SegmentationPlan:
    """Plan the bundle's training from a dataset fingerprint and this machine.

    Args:
        fp: from :func:`medrefine.workflows.segmentation_fingerprint.fingerprint`.
        num_samples: crops per case and step (the bundle's ``num_samples``).
        num_val: cases held out for validation (the bundle's ``num_val``).
        val_interval: the bundle's validation interval (lowered so a short run validates >= 4 times).
        overlap: of the validation sliding windows.
        num_res_units: of the U-Net.
        default_epochs: epochs without a time budget.
        time_budget_s: training time to fit (seconds); epochs = budget / seconds per epoch.
        memory_budget_bytes: default 80% of the GPU's memory, or on CPU half the available RAM (at most 8 GiB).
        device: the device the training will use (the timing probe runs there).
        compare_default: ``{"roi_size", "channels", "batch_size", "out_channels"}`` of the
            unplanned bundle: its seconds per epoch are probed too and stored under ``default``.
        probe: measure (True) or, for tests, take 1 s per iteration and window without measuring.

    Returns:
        The :class:`SegmentationPlan` (not yet written: :func:`write_plan`).
    """
    import torch

    table = {int(k): v for k, v in fp["table"].items()}
    classes = {0: table.get(0, "background"), **{int(v): table[int(v)] for v in fp["present"]}}
    out_channels = len(classes)
    pixdim = target_spacing(fp["spacings"])
    resampled = [[n * s / t for n, s, t in zip(shape, sp, pixdim)] for shape, sp in zip(fp["shapes"], fp["spacings"])]
    median_shape = list(np.median(np.asarray(resampled), axis=0))
    budget = int(memory_budget_bytes or _memory_budget(device))
    num_cases = int(fp["num_cases"])
    train_cases = num_cases if num_cases <= 1 or num_val <= 0 else num_cases - min(num_val, num_cases - 1)
    val_cases = num_cases - train_cases if train_cases < num_cases else num_cases
    roi, channels = _fit_patch(median_shape, out_channels, budget, 2 * num_samples)
    # nnU-Net's batch rule: grow while it fits and one batch stays under 5% of the dataset's voxels
    total_voxels = float(np.sum([np.prod(r) for r in resampled]))
    batch = 1
    while (batch + 1 <= train_cases and training_bytes(roi, channels, out_channels, (batch + 1) * num_samples) <= budget
           and (batch + 1) * num_samples * np.prod(roi) <= max(0.05 * total_voxels, 2 * num_samples * np.prod(roi))):
        batch += 1
    patches = batch * num_samples
    if probe:
        per_iteration, per_window = time_probe(roi, channels, out_channels, patches, device=device,
                                               num_res_units=num_res_units)
    else:
        per_iteration, per_window = 1.0, 1.0
    iterations = math.ceil(train_cases / batch)
    windows = sum(_windows(r, roi, overlap) for r in resampled[-val_cases:])
    if time_budget_s:
        interval = max(1, min(int(val_interval), 10))
        for _ in range(3):  # epochs and the validation interval depend on each other; settles in two rounds
            epoch_seconds = iterations * per_iteration + windows * per_window / interval
            epochs = int(np.clip(time_budget_s // epoch_seconds, 1, 1000))
            interval = max(1, min(int(val_interval), epochs // 4))
    else:
        epochs, interval = int(default_epochs), int(val_interval)
    epoch_seconds = iterations * per_iteration + windows * per_window / interval
    p00, p99 = fp["intensity"]["p00_5"], fp["intensity"]["p99_5"]
    data: dict[str, Any] = {
        "format": PLAN_FORMAT,
        "config": {"pixdim": pixdim, "roi_size": roi, "num_samples": int(num_samples), "batch_size": batch,
                   "channels": channels, "num_res_units": int(num_res_units), "hu_window": [p00, p99],
                   "epochs": epochs, "val_interval": interval},
        "classes": {str(k): v for k, v in sorted(classes.items())},
        "fingerprint": dict(fp, median_shape_at_pixdim=[round(float(m), 1) for m in median_shape]),
        "hardware": {"device": str(device), "threads": torch.get_num_threads(), "memory_budget_bytes": budget,
                     "estimated_bytes": training_bytes(roi, channels, out_channels, patches)},
        "timing": {"method": "timing probe: 1 + 2 training steps and 1 forward window measured" if probe else "not measured",
                   "seconds_per_iteration": per_iteration, "seconds_per_window": per_window,
                   "iterations_per_epoch": iterations, "validation_windows": windows,
                   "validation_seconds_per_epoch": windows * per_window / interval, "seconds_per_epoch": epoch_seconds,
                   "time_budget_seconds": time_budget_s, "estimated_seconds": epochs * epoch_seconds},
    }  # fmt: skip
    if compare_default:
        d = compare_default
        d_batch = min(int(d["batch_size"]), train_cases)
        if probe:
            d_iteration, d_window = time_probe(d["roi_size"], d["channels"], int(d["out_channels"]), d_batch * num_samples,
                                               device=device, num_res_units=num_res_units)
        else:
            d_iteration, d_window = 1.0, 1.0
        d_windows = sum(_windows(r, d["roi_size"], overlap) for r in resampled[-val_cases:])
        data["default"] = {"out_channels": int(d["out_channels"]), "roi_size": list(d["roi_size"]),
                           "seconds_per_iteration": d_iteration,
                           "seconds_per_epoch": math.ceil(train_cases / d_batch) * d_iteration
                           + d_windows * d_window / int(val_interval)}
    return SegmentationPlan(data=data)


def parse_duration(text: str) -> float:
    """Seconds of ``"90s"``, ``"30m"``, ``"1h30m"`` or a bare number of minutes.

    Example:
        >>> parse_duration("1h30m"), parse_duration("45"), parse_duration("90s")
        (5400.0, 2700.0, 90.0)
    """
    import re

    text = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text) * 60
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise InputError(f"`time budget` must look like 30m, 2h, 1h30m or 90s, got {text!r}")
    seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if seconds <= 0:
        raise InputError(f"`time budget` must be positive, got {text!r}")
    return seconds


def plan_bundle(
    bundle: str | Path = "multiorgan_ct_segmentation",
    overrides: Mapping[str, Any] | None = None,
    *,
    extra_configs: Sequence[str | Path] = (),
    time_budget_s: float | None = None,
    memory_budget_bytes: int | None = None,
    device: str | None = None,
    compare_default: bool = False,
    probe: bool = True,
) -> SegmentationPlan:
    """Plan the segmentation bundle's training on its ``dataset_dir`` (``medrefine plan``).

    The cases and the class table are what the bundle's ``train.json`` (with ``overrides`` and
    ``extra_configs``) reads, so the plan fits the run it is for; its unplanned keys
    (``num_samples``, ``num_val``, ``val_interval``, ``overlap``, ``num_res_units``, ``epochs``)
    give :func:`make_plan`'s arguments.

    Raises:
        InputError: the data would be refused by the bundle, or the config's network is not a 3D one.
    """
    from monai.bundle import ConfigParser

    from medrefine.bundle.discovery import config_files, find_bundle
    from medrefine.bundle.runner import medrefine_errors
    from medrefine.workflows.segmentation import spatial_dims

    info = find_bundle(bundle)
    parser = ConfigParser()
    parser.read_config([str(f) for f in config_files(info, "train", list(extra_configs))])
    parser.update({"bundle_root": str(info.path), **dict(overrides or {}), "plan": None})
    with medrefine_errors():  # a refused input as itself, not MONAI's "Failed to evaluate" wrapper
        network_name = parser.get_parsed_content("network_name")
        cases = parser.get_parsed_content("cases")
        table = parser.get_parsed_content("class_table")
    if spatial_dims(network_name) != 3:
        raise InputError(f"network_name {network_name!r}: the plan sizes 3D patches; plan with a 3D network "
                         "('unet', 'attention_unet', 'unet2.5d') or set the 2D network's keys by hand")
    from medrefine.workflows.segmentation_fingerprint import fingerprint

    fp = fingerprint(cases, table)
    device = device or str(parser.get_parsed_content("device"))
    value = parser.get_parsed_content
    default = None
    if compare_default:
        default = {"roi_size": value("roi_size"), "channels": value("channels"), "batch_size": value("batch_size"),
                   "out_channels": len(table)}
    plan = make_plan(fp, num_samples=int(value("num_samples")), num_val=int(value("num_val")),
                     val_interval=int(value("val_interval")), overlap=float(value("overlap")),
                     num_res_units=int(value("num_res_units")), default_epochs=int(value("epochs")),
                     time_budget_s=time_budget_s, memory_budget_bytes=memory_budget_bytes, device=device,
                     compare_default=default, probe=probe)
    plan.data.update({"bundle": info.name, "dataset_dir": str(Path(str(value("dataset_dir"))).expanduser().resolve())})
    return plan
