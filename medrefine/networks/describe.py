"""Modules that remember how they were built, so a trained model can describe itself.

A network (or loss) built by medrefine carries ``init_args = {"_target_": ..., **arguments}``:
the call that rebuilds it. :func:`medrefine.workflows.models.save_model` writes it to
``model.json``; inference builds the network back from there. MONAI's networks do not record
their arguments, so the builders that return them call :func:`record_init_args`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from medrefine.errors import InputError

__all__ = ["component_spec", "record_init_args", "records_init_args", "to_plain"]


def record_init_args(obj: Any, target: str, arguments: Mapping[str, Any]) -> Any:
    """Attach ``{"_target_": target, **arguments}`` to ``obj`` as ``obj.init_args``; return ``obj``.

    Builders that return MONAI modules (which do not remember their arguments) call this so that
    :func:`medrefine.workflows.models.save_model` can describe what they built.
    """
    object.__setattr__(obj, "init_args", {"_target_": str(target), **to_plain(dict(arguments), "init_args")})
    return obj


def records_init_args(target: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for a builder: what it returns remembers the call (``target`` and every argument,
    defaults included) as ``init_args``.

    Example:
        >>> @records_init_args("medrefine.networks.build_network")
        ... def build_network(name: str, out_channels: int = 2) -> nn.Module: ...  # doctest: +SKIP
    """

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(builder)

        @functools.wraps(builder)
        def build(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return record_init_args(builder(*args, **kwargs), target, dict(bound.arguments))

        return build

    return decorate


def component_spec(obj: Any) -> dict[str, Any]:
    """The ``{"_target_": ..., **arguments}`` that rebuilds ``obj`` (from its ``init_args``).

    Raises:
        InputError: ``obj`` carries no ``init_args`` (it was not built by a medrefine builder).
    """
    spec = getattr(obj, "init_args", None)
    if not isinstance(spec, Mapping) or "_target_" not in spec:
        raise InputError(
            f"cannot describe {type(obj).__name__}: it has no `init_args`; build it with a medrefine builder "
            "or pass its spec ({'_target_': ..., arguments}) explicitly"
        )
    return dict(spec)


def to_plain(value: Any, where: str) -> Any:
    """``value`` as JSON-ready data (tuples -> lists, tensors/arrays -> lists, numpy scalars -> numbers)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v, where) for v in value]
    if hasattr(value, "tolist"):  # torch tensors, numpy arrays and scalars
        return to_plain(value.tolist(), where)
    if isinstance(value, Path):
        return str(value)
    raise InputError(f"`{where}`: {type(value).__name__} cannot be written to a model description (plain values only)")
