"""Class tables: label value -> structure name.

Accepted JSON shapes (all map to ``{int: str}``):

- ``{"0": "background", "1": "myocardium", ...}`` (medrefine's own ``classes.json``);
- ``{"total": {"1": "spleen", ...}, "total_mr": {...}}`` (TotalSegmentator's, choose ``task``);
- ``{"labels": {...}}`` (a MONAI decathlon datalist or ``dataset.json``);
- ``{"spleen": 1, ...}`` (name -> value, as TotalSegmentator's ``label_map``).

Background (0) is added when missing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from medrefine.errors import InputError, did_you_mean

__all__ = ["load_classes", "parse_classes", "save_classes", "default_classes", "find_classes"]


def default_classes(num_classes: int) -> dict[int, str]:
    """``{0: "background", 1: "class_1", ...}`` for ``num_classes`` classes (background included)."""
    if num_classes < 1:
        raise ValueError(f"`num_classes` must be >= 1, got {num_classes}")
    return {0: "background", **{i: f"class_{i}" for i in range(1, num_classes)}}


def parse_classes(table: Mapping, *, task: str | None = None, source: str = "classes") -> dict[int, str]:
    """Normalise one of the accepted class-table shapes to ``{int: str}`` sorted by value.

    Args:
        table: the decoded JSON object.
        task: key of the sub-table to use when ``table`` holds several (TotalSegmentator's
            ``"total"``, ``"total_mr"``); the only one is taken when there is one.
        source: name used in error messages (usually the file path).

    Raises:
        InputError: the table has none of the accepted shapes, or ``task`` is not in it.
    """
    if not isinstance(table, Mapping) or not table:
        raise InputError(f"{source}: expected a non-empty JSON object of label value -> name, got {type(table).__name__}")
    if "labels" in table and isinstance(table["labels"], Mapping):
        return parse_classes(table["labels"], source=source)
    values = list(table.values())
    if all(isinstance(v, Mapping) for v in values):
        if task is None:
            if len(table) != 1:
                raise InputError(f"{source}: holds several class tables {sorted(table)}; choose one with `task`")
            task = next(iter(table))
        if task not in table:
            raise InputError(f"{source}: no class table {task!r}; it has {sorted(table)}.{did_you_mean(task, table)}")
        return parse_classes(table[task], source=f"{source}[{task}]")
    out: dict[int, str] = {}
    try:
        if all(isinstance(v, str) for v in values):
            out = {int(k): str(v) for k, v in table.items()}
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            out = {int(v): str(k) for k, v in table.items()}
        else:
            raise ValueError
    except ValueError:
        raise InputError(
            f"{source}: expected label value -> name (e.g. {{\"1\": \"liver\"}}) or name -> value; "
            f"got entries like {next(iter(table.items()))!r}"
        ) from None
    if any(k < 0 for k in out):
        raise InputError(f"{source}: label values must be >= 0, got {min(out)}")
    out.setdefault(0, "background")
    return dict(sorted(out.items()))


def load_classes(path: str | Path, *, task: str | None = None) -> dict[int, str]:
    """Read a class table from a JSON file (see the module docstring for the shapes).

    Raises:
        InputError: the file is missing, is not JSON, or has none of the accepted shapes.
    """
    from medrefine.io import read_json

    return parse_classes(read_json(path, what="class table"), task=task, source=str(path))


def save_classes(classes: Mapping[int, str], path: str | Path) -> Path:
    """Write ``{"0": "background", ...}`` to ``path`` (atomically) and return the path."""
    from medrefine.io import atomic_write

    path = Path(path)
    text = json.dumps({str(k): v for k, v in sorted(classes.items())}, indent=1)
    with atomic_write(path) as tmp:
        Path(tmp).write_text(text + "\n")
    return path


def find_classes(*paths: str | Path) -> tuple[dict[int, str], Path] | None:
    """The class table of the dataset some files or folders belong to, and where it was found.

    Looks in each path's folder (a file's own folder) and its parent, in order, for a
    ``classes.json``, then for a ``datalist.json`` with a ``"labels"`` table: ``cohort/labels_noisy``
    finds ``cohort/classes.json``.

    Args:
        paths: files or folders of the dataset (labels first: their table wins).

    Returns:
        ``(table, file)``, or None when no folder holds one.

    Raises:
        InputError: a ``classes.json`` that cannot be read (naming it).
    """
    from medrefine.io import read_json

    seen: set[Path] = set()
    for path in paths:
        folder = Path(path).expanduser().resolve()
        folder = folder if folder.is_dir() else folder.parent
        for candidate in (folder, folder.parent):
            if candidate in seen:
                continue
            seen.add(candidate)
            if (candidate / "classes.json").is_file():
                return load_classes(candidate / "classes.json"), candidate / "classes.json"
            datalist = candidate / "datalist.json"
            if datalist.is_file():
                data = read_json(datalist, what="datalist")
                labels = data.get("labels") if isinstance(data, Mapping) else None
                if isinstance(labels, Mapping) and labels:
                    return parse_classes(labels, source=f"{datalist} 'labels'"), datalist
    return None
