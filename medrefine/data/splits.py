"""Train/validation/test and k-fold splits of case lists, reproducible from a seed.

Cases are shuffled with ``numpy.random.default_rng(seed)``; each returned list keeps the order of
the input, so a split reads like the dataset and the same seed always gives the same split.
MONAI's ``partition_dataset`` splits lists too, but draws from Python's global ``random`` state
and has no k-fold helper that returns named train/val lists; these functions do both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medrefine.errors import InputError

__all__ = ["split_cases", "kfold_splits", "grouped_kfold_splits", "split_datalist"]


def _check_cases(cases: Sequence[Any]) -> list:
    if isinstance(cases, (str, bytes)):
        raise TypeError(f"`cases` must be a sequence of case ids or entries, got the string {cases!r}")
    cases = list(cases)
    keys = [c["case"] if isinstance(c, Mapping) else c for c in cases]
    seen: set = set()
    repeated = sorted({str(k) for k in keys if k in seen or seen.add(k)})  # type: ignore[func-returns-value]
    if repeated:
        raise InputError(f"`cases` must be unique, repeated: {repeated}")
    return cases


def _count(fraction: float | int, n: int, name: str) -> int:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a fraction in [0, 1) or a number of cases, got {fraction!r}")
    if isinstance(fraction, (int, np.integer)) and fraction >= 1:
        return int(fraction)
    if not 0.0 <= float(fraction) < 1.0:
        raise InputError(f"`{name}` must be a fraction in [0, 1) or a whole number of cases >= 1, got {fraction!r}")
    if fraction == 0:
        return 0
    return max(1, int(round(float(fraction) * n)))


def split_cases(
    cases: Sequence[Any], *, val: float | int = 0.2, test: float | int = 0.0, seed: int = 0
) -> dict[str, list]:
    """Split cases at random into ``train``, ``val`` and ``test``.

    Args:
        cases: case ids, or datalist entries (dicts with a ``case`` key); must be unique.
        val: fraction of cases for validation in ``[0, 1)`` (rounded, at least one case when
            > 0), or a whole number of cases (int >= 1). Default 0.2.
        test: the same for the test split. Default 0.
        seed: seed of the shuffle.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``; every case in exactly one list, each
        list in input order.

    Raises:
        InputError: fractions out of range, repeated cases, or no case left for training.
        TypeError: ``cases`` is a string or a fraction is not a number.

    Example:
        >>> split_cases(["a", "b", "c", "d", "e"], val=0.4, seed=0)["val"]  # doctest: +SKIP
        ['b', 'e']
    """
    cases = _check_cases(cases)
    n = len(cases)
    n_val, n_test = _count(val, n, "val"), _count(test, n, "test")
    if n_val + n_test >= n:
        raise InputError(
            f"split of {n} case(s) leaves none for training: val={val!r} -> {n_val}, test={test!r} -> {n_test}"
        )
    order = np.random.default_rng(seed).permutation(n)
    val_idx = set(order[:n_val].tolist())
    test_idx = set(order[n_val : n_val + n_test].tolist())
    out: dict[str, list] = {"train": [], "val": [], "test": []}
    for i, case in enumerate(cases):
        out["val" if i in val_idx else "test" if i in test_idx else "train"].append(case)
    return out


def kfold_splits(cases: Sequence[Any], *, folds: int = 5, seed: int = 0) -> list[dict[str, list]]:
    """K-fold cross-validation splits: each case is in the ``val`` list of exactly one fold.

    Args:
        cases: case ids or datalist entries (dicts with a ``case`` key); must be unique.
        folds: number of folds, ``2 <= folds <= len(cases)``. Default 5.
        seed: seed of the shuffle.

    Returns:
        ``[{"train": [...], "val": [...]}, ...]`` with ``folds`` items; fold sizes differ by at
        most one; each list in input order.

    Raises:
        InputError: ``folds`` out of range or repeated cases.

    Example:
        >>> [len(f["val"]) for f in kfold_splits(list("abcdefg"), folds=3)]
        [3, 2, 2]
    """
    cases = _check_cases(cases)
    n = len(cases)
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or not 2 <= folds <= max(n, 2):
        raise InputError(f"`folds` must be a whole number in [2, {max(n, 2)}] (the number of cases), got {folds!r}")
    if n < folds:
        raise InputError(f"`folds`={folds} needs at least {folds} cases, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    fold_of = np.empty(n, dtype=int)
    for fold, idx in enumerate(np.array_split(order, folds)):
        fold_of[idx] = fold
    return [
        {
            "train": [c for c, f in zip(cases, fold_of) if f != fold],
            "val": [c for c, f in zip(cases, fold_of) if f == fold],
        }
        for fold in range(folds)
    ]


def grouped_kfold_splits(
    cases: Sequence[Any],
    *,
    groups: Sequence[Any],
    strata: Sequence[Any] | None = None,
    folds: int = 5,
    seed: int = 0,
) -> list[dict[str, list]]:
    """K-fold splits that keep each group (patient) in one fold, stratified on ``strata``.

    Groups are shuffled with ``seed``, then taken largest first; each goes to the fold where the
    per-class counts stay most even across folds (the spread of each class's fold counts around its
    mean, summed over classes; ties: the smallest fold, then the lowest index), like
    scikit-learn's ``StratifiedGroupKFold`` but seeded by ``numpy.random.default_rng``.

    Args:
        cases: case ids or entries (dicts with ``case``); unique.
        groups: the group of each case (e.g. the patient id).
        strata: the class of each case to balance (e.g. a target's label; None or -1 for
            unlabelled, which only counts towards fold size). Default: no stratification.
        folds: number of folds, ``2 <= folds <=`` the number of groups.
        seed: seed of the shuffle.

    Returns:
        ``[{"train": [...], "val": [...]}, ...]`` as :func:`kfold_splits`; no group in two folds.

    Raises:
        InputError: lengths differ, repeated cases, or fewer groups than folds.

    Example:
        >>> splits = grouped_kfold_splits(list("abcdef"), groups=[1, 1, 2, 2, 3, 3], folds=3)
        >>> sorted(len(s["val"]) for s in splits)
        [2, 2, 2]
    """
    cases = _check_cases(cases)
    groups = list(groups)
    strata = [None] * len(cases) if strata is None else list(strata)
    if not len(groups) == len(strata) == len(cases):
        raise InputError(f"`groups` and `strata` must have one entry per case ({len(cases)}), got {len(groups)} and {len(strata)}")
    unique = list(dict.fromkeys(groups))
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or not 2 <= folds <= max(len(unique), 2):
        raise InputError(f"`folds` must be a whole number in [2, {len(unique)}] (the number of groups), got {folds!r}")
    labels = sorted({str(s) for s in strata if s is not None and str(s) != "-1"})
    members: dict[Any, list[int]] = {g: [] for g in unique}
    for i, g in enumerate(groups):
        members[g].append(i)
    order = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    order.sort(key=lambda g: -len(members[g]))  # stable: ties keep the shuffled order
    counts = np.zeros((folds, len(labels) + 1))  # last column: fold size
    fold_of = np.empty(len(cases), dtype=int)
    for g in order:
        add = np.zeros(len(labels) + 1)
        for i in members[g]:
            if strata[i] is not None and str(strata[i]) != "-1":
                add[labels.index(str(strata[i]))] += 1
            add[-1] += 1
        costs = []
        for f in range(folds):
            trial = counts.copy()
            trial[f] += add
            costs.append((float(trial[:, :-1].std(axis=0).sum()), trial[f, -1], f))
        best = min(costs)[2]
        counts[best] += add
        fold_of[members[g]] = best
    return [
        {
            "train": [c for c, f in zip(cases, fold_of) if f != fold],
            "val": [c for c, f in zip(cases, fold_of) if f == fold],
        }
        for fold in range(folds)
    ]


def split_datalist(
    datalist: Mapping, *, val: float | int = 0.2, test: float | int = 0.0, seed: int = 0, key: str = "training"
) -> dict:
    """A copy of a datalist whose ``key`` list is split into ``training``/``validation``/``test``.

    Args:
        datalist: datalist dict (see :mod:`medrefine.data.datalist`).
        val: as in :func:`split_cases`.
        test: as in :func:`split_cases`; when 0 the datalist's own ``test`` list is kept.
        seed: seed of the shuffle.
        key: the list to split. Default ``"training"``.

    Returns:
        The new datalist dict (write it with :func:`~medrefine.data.datalist.write_datalist`).

    Raises:
        InputError: ``key`` is missing or as in :func:`split_cases`.
    """
    if key not in datalist or not isinstance(datalist[key], list):
        raise InputError(f"datalist has no list {key!r} to split; keys: {sorted(datalist)}")
    parts = split_cases(datalist[key], val=val, test=test, seed=seed)
    out = dict(datalist)
    out["training"], out["validation"] = parts["train"], parts["val"]
    if parts["test"]:
        out["test"] = parts["test"]
    out["numTraining"] = len(parts["train"])
    return out
