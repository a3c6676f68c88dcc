"""Inference over a datalist sharded across the ranks of a torch.distributed process group.

Each rank takes one contiguous block of the cases (sizes differ by at most one), writes the
outputs of its own cases, and writes any per-run table (``changes.csv``, ``predictions.csv``,
``codes.json``) as a part file of its own (:func:`part_path`). After a barrier, rank 0 joins the
parts in rank order into the table a single process would have written (:func:`merge_parts`).
Contiguous blocks make that order the datalist's: rank 0 holds the first cases, rank 1 the next.

MONAI's ``DistributedSampler`` is the tool for training, not here: with ``even_divisible`` it
repeats cases to even out the ranks (two ranks writing one file), without it the ranks take every
``world``-th case, so joining the tables would need the case order to be re-established.

Without a process group (or with one process) every function is the identity: all cases, the
table's own path, nothing to merge. Start several processes with ``torchrun`` (gloo on CPU, nccl
on GPU), e.g. ``medrefine run BUNDLE inference --nproc 2``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from medrefine.engines.distributed import distributed_rank_world
from medrefine.errors import InputError

__all__ = ["shard_bounds", "shard_cases", "part_path", "merge_parts", "finish_sharded"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def shard_bounds(num_cases: int, rank: int, world: int) -> tuple[int, int]:
    """``(start, stop)`` of rank ``rank``'s contiguous block of ``num_cases`` cases over ``world`` ranks.

    The first ``num_cases % world`` ranks hold one case more than the others.

    Raises:
        ValueError: ``world < 1``, ``rank`` outside ``[0, world)`` or ``num_cases < 0``.

    Example:
        >>> [shard_bounds(5, r, 2) for r in range(2)]
        [(0, 3), (3, 5)]
    """
    if world < 1 or not 0 <= rank < world or num_cases < 0:
        raise ValueError(f"`rank` must be in [0, world) with `world` >= 1 and `num_cases` >= 0, "
                         f"got rank={rank}, world={world}, num_cases={num_cases}")
    size, extra = divmod(num_cases, world)
    start = rank * size + min(rank, extra)
    return start, start + size + (1 if rank < extra else 0)


def shard_cases(cases: Sequence[T], rank: int | None = None, world: int | None = None) -> list[T]:
    """This rank's contiguous block of ``cases`` (all of them without a process group).

    Args:
        cases: the cases in datalist order (any sequence: dicts, case ids, records).
        rank, world: default to the process group's (``(0, 1)`` without one).

    Returns:
        ``cases[start:stop]`` of :func:`shard_bounds`, as a list.

    Raises:
        InputError: more ranks than cases (a rank would have nothing to do; run fewer processes).
    """
    if rank is None or world is None:
        rank, world = distributed_rank_world()
    cases = list(cases)
    if world > len(cases):
        raise InputError(f"inference over {len(cases)} case(s) with {world} processes: expected at most "
                         f"{len(cases)} process(es), one case or more each; run fewer processes")
    start, stop = shard_bounds(len(cases), rank, world)
    logger.info("rank %d of %d: cases %d-%d of %d", rank, world, start, stop - 1, len(cases))
    return cases[start:stop]


def part_path(path: str | Path, rank: int | None = None, world: int | None = None) -> Path:
    """Where this rank writes its part of the table ``path``: ``path`` itself for one process,
    else ``<stem>.part<rank>of<world><suffix>`` beside it (``changes.part1of2.csv``)."""
    if rank is None or world is None:
        rank, world = distributed_rank_world()
    path = Path(path)
    if world <= 1:
        return path
    return path.with_name(f"{path.stem}.part{rank}of{world}{path.suffix}")


def _merge_csv(parts: list[Path], target: Path) -> None:
    header, bodies = None, []
    for part in parts:
        text = part.read_text()
        if not text.strip():
            continue
        first, _, body = text.partition("\n")
        if header is None:
            header = first
        elif first != header:
            raise ValueError(f"{part}: expected the columns of {parts[0].name} ({header}), found {first}")
        bodies.append(body if body.endswith("\n") or not body else body + "\n")
    from medrefine.io import atomic_write

    with atomic_write(target) as tmp:
        tmp.write_text("" if header is None else header + "\n" + "".join(bodies))


def _merge_json(parts: list[Path], target: Path) -> None:
    merged: dict = {}
    for part in parts:
        content = json.loads(part.read_text())
        if not isinstance(content, dict):
            raise ValueError(f"{part}: expected a JSON object to merge, found {type(content).__name__}")
        twice = sorted(set(merged) & set(content))
        if twice:
            raise ValueError(f"{part}: keys {twice[:5]} are in another rank's part too")
        merged.update(content)
    from medrefine.io import atomic_write

    with atomic_write(target) as tmp:
        tmp.write_text(json.dumps(merged, indent=1) + "\n")


def merge_parts(paths: Sequence[str | Path], world: int | None = None, *, remove: bool = True) -> list[Path]:
    """Join the part files of each table in ``paths`` (rank 0's first) into the table itself.

    A ``.csv`` part contributes its rows under one header (the headers must agree); a ``.json``
    part is an object whose keys are merged (a key in two parts is an error). The table is
    written atomically; the parts are then removed (``remove``). With ``world`` 1 nothing is done.

    Args:
        paths: the tables, as a single process would name them (``output_dir/changes.csv``).
        world: number of parts; defaults to the process group's size.
        remove: delete the part files after the merge. Defaults to True.

    Returns:
        The merged tables.

    Raises:
        InputError: a part is missing (its rank did not finish).
        ValueError: a suffix other than ``.csv``/``.json``, parts with different columns, or a
            JSON key in two parts.
    """
    if world is None:
        world = distributed_rank_world()[1]
    merged = []
    for path in map(Path, paths):
        if world <= 1:
            merged.append(path)
            continue
        if path.suffix not in (".csv", ".json"):
            raise ValueError(f"{path}: expected a .csv or .json table to merge, found suffix {path.suffix!r}")
        parts = [part_path(path, r, world) for r in range(world)]
        missing = [p.name for p in parts if not p.is_file()]
        if missing:
            raise InputError(f"{path.parent}: expected the part files of {path.name} from all {world} ranks, "
                             f"found none for {', '.join(missing)}")
        (_merge_csv if path.suffix == ".csv" else _merge_json)(parts, path)
        if remove:
            for part in parts:
                part.unlink()
        merged.append(path)
        logger.info("merged %d parts into %s", world, path)
    return merged


def finish_sharded(paths: Sequence[str | Path] = ()) -> list[Path]:
    """End a sharded run: wait for every rank, merge the tables on rank 0, wait again.

    The second barrier keeps any rank from leaving before the merged tables exist. Without a
    process group this returns ``paths`` unchanged.
    """
    import torch.distributed as dist

    rank, world = distributed_rank_world()
    if world <= 1:
        return [Path(p) for p in paths]
    dist.barrier()
    merged = merge_parts(paths, world) if rank == 0 else [Path(p) for p in paths]
    dist.barrier()
    return merged
