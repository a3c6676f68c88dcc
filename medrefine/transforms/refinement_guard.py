"""Do no harm: keep the input label for every structure a refinement is not trusted with.

A label refiner (NeAR's implicit decoder, a CRF, a smoothing filter) improves large structures
and can silently erase thin ones: on the cardiac phantoms NeAR takes the coronary arteries from
Dice 0.14 (noisy input) to 0.004 while the mean Dice rises. :func:`guard_refinement` compares the
refinement with the input structure by structure and, where a rule fires, gives that structure
back its input voxels. The rules look only at the input, the refinement and the decoder's own
uncertainty (never at a reference), so they apply to any case.

The rule, for each foreground class ``c`` (``n_in = |input == c|``, ``n_ref = |refined == c|``):

* present in the input (``n_in > 0``), the input is kept when any of

  1. **volume**: ``n_ref / n_in < min_volume_ratio`` (erasure, collapse) or
     ``n_ref / n_in > max_volume_ratio`` (explosion, a leak into a neighbour);
  2. **components**: more than ``max_components_lost`` of the input's connected components
     (26-connectivity) holding at least ``min_component_voxels`` voxels are *lost*: less than
     ``min_component_overlap`` of the component's voxels are still ``c`` in the refinement
     (a vessel, a vein or a lobe the refinement dropped while the total volume looks fine);
  3. **uncertainty** (when given): the mean uncertainty over ``input == c`` ∪ ``refined == c``
     exceeds ``max_uncertainty``;

* absent from the input but created by the refinement (``n_in = 0 < n_ref``): always removed
  (the input is kept). None of the checks above can vouch for a structure with nothing to
  compare against, and an annotator who left a whole structure out made a decision about scope
  that a refinement has no grounds to overrule.

Dropped parts are mended where they are, when no volume or uncertainty rule fired (action
``restored_parts``; the rest of the structure keeps its refinement):

* the voxels of each lost component (rule 2; components of at least ``min_component_fraction``
  of the structure's input volume count, so the brush-slip islands a refinement should remove
  do not), with ``restore_components`` (the default; False keeps the whole structure's input);
* every input voxel of ``c`` farther than ``max_drop_distance_mm`` from the refined structure.
  A boundary correction moves a surface by a few voxels; a piece of the input further than
  that from anything the refinement kept of the structure was dropped, not corrected (the
  distal fragments of a vessel tree, a vein's far end), and comes back as the annotator drew it.

Keeping the input of the structures ``K`` whose rule fired: a voxel whose input **or**
refinement class is in ``K`` takes the input's class; every other voxel takes the refinement's.
So ``output == c`` exactly where ``input == c`` for every ``c`` in ``K`` (voxels the refinement
gave ``c`` go back to the input's class; voxels of ``c`` the refinement gave to a structure that
passed come back to ``c``), and the output equals the refinement wherever neither label is in ``K``.

Defaults, from the failure modes rather than a benchmark: losing more than half of a structure
(0.5x) is not a boundary correction (a one-voxel correction of a blob three voxels in radius
changes its volume by well under half), so it is erasure or collapse; doubling it (2x) is the
mirror image. Any lost component (``max_components_lost=0``) of at least 27 voxels (a 3x3x3
block: smaller islands are the brush slips a refinement is meant to remove) counts, lost meaning
under 20% of it left. A mean normalised entropy above 0.5 means the decoder spreads its belief,
on average, over more than ``sqrt(K)`` classes on that structure: it does not know what it is.
The guard errs on the side of the input: a false alarm costs a refinement's gain on one
structure, a miss erases it.

MONAI has no such comparison (its ``KeepLargestConnectedComponent`` and ``RemoveSmallObjects``
edit one label; nothing weighs a label against the one it came from).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from medrefine.errors import InputError

__all__ = ["GuardDecision", "guard_refinement", "check_guard_args", "GUARD_DEFAULTS"]

#: Default thresholds of :func:`guard_refinement` (also the bundle's ``guard_*`` config keys).
GUARD_DEFAULTS: dict[str, float | int] = {
    "min_volume_ratio": 0.5,
    "max_volume_ratio": 2.0,
    "max_components_lost": 0,
    "min_component_voxels": 27,
    "min_component_overlap": 0.2,
    "min_component_fraction": 0.1,
    "max_uncertainty": 0.5,
    "restore_components": True,
    "max_drop_distance_mm": 5.0,
}

REFINED = "refined"
KEPT_INPUT = "kept_input"
RESTORED = "restored_parts"


@dataclass(frozen=True)
class GuardDecision:
    """What :func:`guard_refinement` decided for one structure, and what it measured.

    Attributes:
        class_id: the class.
        class_name: its name (from ``classes``; ``class_<id>`` otherwise).
        action: ``"refined"`` (the refinement is kept), ``"kept_input"`` (the whole structure's
            input) or ``"restored_parts"`` (the refinement, with its dropped parts put back).
        reason: the measured findings that made the input be kept, ``"; "``-joined
            (``"volume 0.03x input; 3 of 3 components lost"``); empty when refined.
        rule: the rules that fired, with their thresholds (``"volume < 0.5x input"``), ``"; "``-joined.
        input_voxels: voxels of the class in the input.
        refined_voxels: voxels of the class in the refinement (before the guard).
        volume_ratio: ``refined_voxels / input_voxels`` (NaN when absent from the input).
        components: input components of at least ``min_component_voxels`` voxels.
        components_lost: of those, the ones the refinement lost.
        mean_uncertainty: over input ∪ refinement of the class (NaN without uncertainty).
    """

    class_id: int
    class_name: str
    action: str
    reason: str
    rule: str
    input_voxels: int
    refined_voxels: int
    volume_ratio: float
    components: int
    components_lost: int
    mean_uncertainty: float

    @property
    def kept_input(self) -> bool:
        """True when the input was kept for this structure, whole or in part (lost components)."""
        return self.action in (KEPT_INPUT, RESTORED)

    def as_dict(self) -> dict[str, Any]:
        """The decision as a plain dict (a row of ``changes.csv``)."""
        return asdict(self)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_guard_args(
    *,
    min_volume_ratio: float = GUARD_DEFAULTS["min_volume_ratio"],
    max_volume_ratio: float = GUARD_DEFAULTS["max_volume_ratio"],
    max_components_lost: int = GUARD_DEFAULTS["max_components_lost"],  # type: ignore[assignment]
    min_component_voxels: int = GUARD_DEFAULTS["min_component_voxels"],  # type: ignore[assignment]
    min_component_overlap: float = GUARD_DEFAULTS["min_component_overlap"],
    min_component_fraction: float = GUARD_DEFAULTS["min_component_fraction"],
    max_uncertainty: float = GUARD_DEFAULTS["max_uncertainty"],
    restore_components: bool = True,
    max_drop_distance_mm: float = GUARD_DEFAULTS["max_drop_distance_mm"],
) -> None:
    """Refuse thresholds :func:`guard_refinement` cannot use, naming the argument and the value.

    Raises:
        ValueError: a ratio, count or fraction out of its range (see :func:`guard_refinement`).
    """
    def number(name: str, value: Any) -> float:
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"`{name}` must be a number, got {value!r}") from None
        if isinstance(value, bool) or math.isnan(out):
            raise ValueError(f"`{name}` must be a number, got {value!r}")
        return out

    low, high = number("min_volume_ratio", min_volume_ratio), number("max_volume_ratio", max_volume_ratio)
    if not 0.0 <= low < 1.0:
        raise ValueError(f"`min_volume_ratio` must be in [0, 1) (0 turns the check off), got {min_volume_ratio!r}")
    if not high > 1.0:
        raise ValueError(f"`max_volume_ratio` must be > 1 (inf turns the check off), got {max_volume_ratio!r}")
    if not _is_int(max_components_lost) or max_components_lost < 0:
        raise ValueError(f"`max_components_lost` must be an integer >= 0, got {max_components_lost!r}")
    if not _is_int(min_component_voxels) or min_component_voxels < 1:
        raise ValueError(f"`min_component_voxels` must be an integer >= 1, got {min_component_voxels!r}")
    if not 0.0 < number("min_component_overlap", min_component_overlap) <= 1.0:
        raise ValueError(f"`min_component_overlap` must be in (0, 1], got {min_component_overlap!r}")
    if not 0.0 <= number("min_component_fraction", min_component_fraction) < 1.0:
        raise ValueError(f"`min_component_fraction` must be in [0, 1) (0 counts every component), got {min_component_fraction!r}")
    if not 0.0 <= number("max_uncertainty", max_uncertainty) <= 1.0:
        raise ValueError(f"`max_uncertainty` must be in [0, 1] (1 turns the check off), got {max_uncertainty!r}")
    if not number("max_drop_distance_mm", max_drop_distance_mm) >= 0.0:
        raise ValueError(f"`max_drop_distance_mm` must be >= 0 (0 turns the check off), got {max_drop_distance_mm!r}")
    if not isinstance(restore_components, (bool, np.bool_)):
        raise ValueError(f"`restore_components` must be true or false, got {restore_components!r}")


def _label_array(value: Any, name: str) -> np.ndarray:
    array = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        if not (np.issubdtype(array.dtype, np.floating) and np.all(np.mod(array, 1) == 0)):
            raise InputError(f"`{name}` must hold integer class labels, got dtype {array.dtype}")
        array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise InputError(f"`{name}` must hold class labels >= 0, found {int(array.min())}")
    return array


def _fmt(value: float) -> str:
    return f"{value:g}"


def guard_refinement(
    input_label: Any,
    refined_label: Any,
    uncertainty: Any = None,
    *,
    classes: Mapping[int, str] | Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    min_volume_ratio: float = GUARD_DEFAULTS["min_volume_ratio"],
    max_volume_ratio: float = GUARD_DEFAULTS["max_volume_ratio"],
    max_components_lost: int = GUARD_DEFAULTS["max_components_lost"],  # type: ignore[assignment]
    min_component_voxels: int = GUARD_DEFAULTS["min_component_voxels"],  # type: ignore[assignment]
    min_component_overlap: float = GUARD_DEFAULTS["min_component_overlap"],
    min_component_fraction: float = GUARD_DEFAULTS["min_component_fraction"],
    max_uncertainty: float = GUARD_DEFAULTS["max_uncertainty"],
    restore_components: bool = True,
    max_drop_distance_mm: float = GUARD_DEFAULTS["max_drop_distance_mm"],
) -> tuple[np.ndarray, list[GuardDecision]]:
    """Keep the input label for every structure the refinement is not trusted with.

    The rule is the module docstring's: per foreground class, the input is kept when the
    refinement changed its volume beyond ``[min_volume_ratio, max_volume_ratio]``, lost more than
    ``max_components_lost`` of its components of ``min_component_voxels`` voxels or more (less
    than ``min_component_overlap`` of a component left), or is on average more uncertain than
    ``max_uncertainty`` over it; a class absent from the input is never created. When only
    components were lost and ``restore_components`` is True, just those components are put back.

    Args:
        input_label: ``(*spatial)`` integer class labels the refinement started from.
        refined_label: ``(*spatial)`` the refinement, same shape.
        uncertainty: ``(*spatial)`` per-voxel uncertainty in [0, 1] (normalised entropy), same
            shape; None skips the uncertainty rule.
        classes: class table ``{id: name}`` (names go into the decisions) or class ids to check.
            Default: every class. Background (0) is never checked; a class in neither label gets
            no decision; a class present but not listed keeps the refinement unchecked.
        min_volume_ratio: the input is kept below this ``refined / input`` volume, in [0, 1)
            (0 turns the check off). Default 0.5.
        max_volume_ratio: ... and above this one, > 1 (``inf`` off). Default 2.0.
        max_components_lost: lost input components tolerated, >= 0. Default 0.
        min_component_voxels: input components smaller than this are not checked (islands the
            refinement may remove), >= 1. Default 27.
        min_component_overlap: a component is lost when less than this fraction of its voxels
            is still the class in the refinement, in (0, 1]. Default 0.2.
        max_uncertainty: the input is kept above this mean uncertainty, in [0, 1] (1 off).
            Default 0.5.
        spacing: voxel size in mm per axis, for ``max_drop_distance_mm``; None counts in voxels.
        restore_components: put back the lost components (their input voxels take the class
            again) and keep the rest of the structure's refinement; False keeps the whole
            structure's input when components are lost. Default True.
        min_component_fraction: components smaller than this fraction of the structure's input
            volume are not checked, in [0, 1). Default 0.1.
        max_drop_distance_mm: input voxels of a structure farther than this (mm) from its
            refinement are put back; 0 off. Default 5.

    Returns:
        ``(guarded_label, decisions)``: the guarded label (dtype and shape of ``refined_label``,
        a numpy array) and one :class:`GuardDecision` per checked class, in class order.

    Raises:
        InputError: labels or uncertainty of different shapes, labels that are not class labels.
        ValueError: a threshold out of range (see :func:`check_guard_args`).

    Example:
        >>> guarded, decisions = guard_refinement(noisy, refined, entropy, classes={1: "vessel"})
        >>> [d.reason for d in decisions if d.kept_input]  # doctest: +SKIP
        ['volume 0.03x input']
    """
    from scipy import ndimage

    check_guard_args(min_volume_ratio=min_volume_ratio, max_volume_ratio=max_volume_ratio,
                     max_components_lost=max_components_lost, min_component_voxels=min_component_voxels,
                     min_component_overlap=min_component_overlap, min_component_fraction=min_component_fraction,
                     max_uncertainty=max_uncertainty, restore_components=restore_components,
                     max_drop_distance_mm=max_drop_distance_mm)
    refined_out = np.asarray(refined_label.detach().cpu() if hasattr(refined_label, "detach") else refined_label)
    before, after = _label_array(input_label, "input_label"), _label_array(refined_label, "refined_label")
    if before.shape != after.shape:
        raise InputError(f"`refined_label` must have the shape of `input_label` {before.shape}, got {after.shape}")
    unc = None
    if uncertainty is not None:
        unc = np.asarray(uncertainty.detach().cpu() if hasattr(uncertainty, "detach") else uncertainty, dtype=np.float64)
        if unc.shape != before.shape:
            raise InputError(f"`uncertainty` must have the shape of `input_label` {before.shape}, got {unc.shape}")

    size = int(max(before.max(initial=0), after.max(initial=0))) + 1
    n_in = np.bincount(before.ravel(), minlength=size)
    n_ref = np.bincount(after.ravel(), minlength=size)
    if unc is not None:  # sum over input == c, plus over refined == c where the input is another class
        differ = before != after
        unc_sum = np.bincount(before.ravel(), weights=unc.ravel(), minlength=size)
        unc_sum += np.bincount(after[differ], weights=unc[differ], minlength=size)
        union = n_in + np.bincount(after[differ], minlength=size)
    names = dict(classes) if isinstance(classes, Mapping) else {}
    wanted = None if classes is None else {int(c) for c in classes}
    boxes = ndimage.find_objects(before) if before.size else []
    full = ndimage.generate_binary_structure(before.ndim, before.ndim)

    decisions: list[GuardDecision] = []
    restore = np.zeros(before.shape, dtype=bool)  # voxels of lost components put back (their input class)
    for c in range(1, size):
        if (n_in[c] == 0 and n_ref[c] == 0) or (wanted is not None and c not in wanted):
            continue
        reasons, rules = [], []
        ratio, components, lost, mean_unc = float("nan"), 0, 0, float("nan")
        if unc is not None and union[c]:
            mean_unc = float(unc_sum[c] / union[c])
        if n_in[c] == 0:
            reasons.append("absent from the input")
            rules.append("absent from the input")
        else:
            ratio = float(n_ref[c] / n_in[c])
            if ratio < min_volume_ratio:
                reasons.append(f"volume {ratio:.2f}x input")
                rules.append(f"volume < {_fmt(min_volume_ratio)}x input")
            elif ratio > max_volume_ratio:
                reasons.append(f"volume {ratio:.2f}x input")
                rules.append(f"volume > {_fmt(max_volume_ratio)}x input")
            box = boxes[c - 1]
            parts, count = ndimage.label(before[box] == c, structure=full)
            sizes = np.bincount(parts.ravel(), minlength=count + 1)
            still = np.bincount(parts[after[box] == c], minlength=count + 1)
            big = (sizes[1:] >= min_component_voxels) & (sizes[1:] >= min_component_fraction * n_in[c])
            components = int(big.sum())
            gone = big & (still[1:] < min_component_overlap * sizes[1:])
            lost = int(gone.sum())
            if lost > max_components_lost:
                reasons.append(f"{lost} of {components} components lost")
                rules.append("components lost")
            if mean_unc > max_uncertainty:
                reasons.append(f"mean uncertainty {mean_unc:.2f} > {_fmt(max_uncertainty)}")
                rules.append(f"mean uncertainty > {_fmt(max_uncertainty)}")
        action = KEPT_INPUT if reasons else REFINED
        if n_in[c] and (rules == ["components lost"] and restore_components or not rules):
            mend = np.zeros(before.shape, dtype=bool)
            if rules:
                mend[box] = np.isin(parts, np.flatnonzero(gone) + 1)
            far = _dropped(before == c, after == c, box, spacing, max_drop_distance_mm)
            if far is not None and (far & ~mend).any():
                reasons.append(f"{int((far & ~mend).sum())} voxels over {_fmt(max_drop_distance_mm)} mm from the refinement")
                rules.append(f"dropped parts > {_fmt(max_drop_distance_mm)} mm")
                mend |= far
            if rules:
                action = RESTORED
                reasons[-1] += " (put back from the input)"
                restore |= mend
        decisions.append(GuardDecision(
            class_id=c, class_name=str(names.get(c, f"class_{c}")), action=action,
            reason="; ".join(reasons), rule="; ".join(rules), input_voxels=int(n_in[c]), refined_voxels=int(n_ref[c]),
            volume_ratio=ratio, components=components, components_lost=lost, mean_uncertainty=mean_unc,
        ))  # fmt: skip

    kept = [d.class_id for d in decisions if d.action == KEPT_INPUT]
    guarded = refined_out.copy()
    if restore.any():
        guarded[restore] = before[restore].astype(guarded.dtype)
    if kept:
        back = np.isin(before, kept) | np.isin(after, kept)
        guarded[back] = before[back].astype(guarded.dtype)
    return guarded, decisions


def _dropped(inside: np.ndarray, kept: np.ndarray, box: tuple[slice, ...], spacing: Sequence[float] | None,
             max_mm: float) -> np.ndarray | None:
    """Voxels of ``inside`` (the input structure) farther than ``max_mm`` from ``kept`` (its refinement).

    The distance transform runs on the input's bounding box grown by ``max_mm``: a refined voxel
    outside it is farther than ``max_mm`` from every input voxel. None when the check is off or
    nothing of the structure was kept (the volume rule speaks for an erased structure).
    """
    from scipy import ndimage

    if max_mm <= 0 or not kept.any():
        return None
    step = np.ones(inside.ndim) if spacing is None else np.asarray(spacing, dtype=np.float64)
    grow = np.ceil(max_mm / step).astype(int) + 1
    big = tuple(slice(max(s.start - g, 0), min(s.stop + g, n)) for s, g, n in zip(box, grow, inside.shape))
    sub = kept[big]
    if not sub.any():
        out = np.zeros(inside.shape, dtype=bool)
        out[big] = inside[big]
        return out
    far = ndimage.distance_transform_edt(~sub, sampling=step) > max_mm
    out = np.zeros(inside.shape, dtype=bool)
    out[big] = inside[big] & far
    return out
