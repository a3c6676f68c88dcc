"""The sources file of a metrics run: which volumes each case's metrics were computed from.

``medrefine evaluate --out metrics.csv`` writes ``metrics.sources.json`` next to the CSV::

    {"classes": {"1": "liver", ...},
     "cases": {"case_000": {"pred": "/abs/pred.nii.gz", "ref": "/abs/ref.nii.gz", "image": "/abs/ct.nii.gz" | null}}}

Relative paths are read relative to the JSON file's folder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from medrefine.errors import InputError

__all__ = ["Sources", "load_sources", "sources_path_for"]

_ROLES = ("pred", "ref", "image")


@dataclass
class Sources:
    """Parsed sources: class names and, per case, the paths of prediction, reference and image."""

    classes: dict[int, str] = field(default_factory=dict)
    cases: dict[str, dict[str, Path | None]] = field(default_factory=dict)
    path: Path | None = None


def sources_path_for(metrics_csv: str | Path) -> Path:
    """``<stem>.sources.json`` next to a metrics CSV (it may not exist)."""
    p = Path(metrics_csv)
    return p.with_name(f"{p.stem}.sources.json")


def load_sources(sources: Mapping | str | Path | Sources) -> Sources:
    """Read and check a sources mapping or JSON file.

    Args:
        sources: the decoded mapping, a path to the JSON file, or a :class:`Sources`.

    Returns:
        :class:`Sources` with absolute paths (``None`` where a role is null or absent).

    Raises:
        InputError: the file is missing or not JSON, or ``cases`` is missing or malformed.

    Example:
        >>> src = load_sources("metrics.sources.json")  # doctest: +SKIP
        >>> src.cases["case_000"]["ref"]  # doctest: +SKIP
    """
    if isinstance(sources, Sources):
        return sources
    path: Path | None = None
    name = "sources"
    if isinstance(sources, (str, Path)):
        path = Path(sources)
        name = str(path)
        if not path.is_file():
            raise InputError(f"{name}: sources file not found")
        try:
            sources = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"{name}: cannot read the sources JSON ({err})") from None
    if not isinstance(sources, Mapping):
        raise InputError(f"{name}: expected a JSON object with a \"cases\" mapping, got {type(sources).__name__}")
    cases = sources.get("cases")
    if not isinstance(cases, Mapping):
        raise InputError(f"{name}: expected a \"cases\" object mapping case -> {{\"pred\", \"ref\", \"image\"}}, got {type(cases).__name__}")
    classes: dict[int, str] = {}
    if sources.get("classes"):
        from medrefine.data.classes import parse_classes

        classes = parse_classes(sources["classes"], source=f"{name}[classes]")
    base = path.parent if path is not None else Path.cwd()
    parsed: dict[str, dict[str, Path | None]] = {}
    for case, entry in cases.items():
        if not isinstance(entry, Mapping):
            raise InputError(f"{name}: case {case!r} must map to an object with \"pred\", \"ref\", \"image\", got {entry!r}")
        roles: dict[str, Path | None] = {}
        for role in _ROLES:
            value = entry.get(role)
            if value not in (None, "") and not isinstance(value, str):
                raise InputError(f"{name}: case {case!r} {role!r} must be a path string or null, got {value!r}")
            roles[role] = None if value in (None, "") else (base / Path(value)).resolve() if not Path(value).is_absolute() else Path(value)
        parsed[str(case)] = roles
    return Sources(classes=classes, cases=parsed, path=path)
