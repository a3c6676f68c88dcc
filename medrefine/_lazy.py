"""Attribute access that imports a package's submodules on first use (PEP 562).

``import medrefine`` stays cheap, yet ``medrefine.workflows.near.load_model`` works in a
bundle's ``$`` expressions after a plain ``$import medrefine``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from types import ModuleType


def lazy_submodules(package: str, names: Iterable[str]) -> tuple[Callable[[str], ModuleType], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` that import ``package.<name>`` when first accessed."""
    known = frozenset(names)

    def __getattr__(name: str) -> ModuleType:
        if name in known:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(known)

    return __getattr__, __dir__
