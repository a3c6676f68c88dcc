"""``--set KEY=VALUE`` overrides: parse the values as the bundle READMEs write them, refuse unknown keys.

``python -m monai.bundle run --epochs 2`` adds any key it is given to the config: a typo
(``one_file_per_structur=true``) is silently ignored and the run goes on with the default. Here
every key must name an entry of the merged config (nested keys with ``#``, checked level by
level) or is refused before anything runs, with a did-you-mean. A key that is meant to be new
(a ``$@...`` expression in a layered config reads it) is written ``+key=value``.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medrefine.errors import InputError, did_you_mean

__all__ = ["NEW_KEY_PREFIX", "check_overrides", "merged_config", "parse_override_value", "parse_overrides"]

#: An override key written ``+key`` adds a key the config does not have (otherwise refused).
NEW_KEY_PREFIX = "+"
#: Keys every bundle run accepts whether or not its configs name them (the runner sets them).
ALWAYS_ACCEPTED = frozenset({"bundle_root"})


def parse_override_value(value: str) -> Any:
    """A ``--set`` value: JSON, else a Python literal, else the plain string.

    ``2`` -> 2, ``[8,16]`` -> [8, 16], ``true`` -> True (JSON), ``['liver','spleen']`` ->
    ['liver', 'spleen'] and ``{'a': 1}`` -> {'a': 1} (Python literals, as the READMEs quote them),
    ``/data/x`` and ``unet2.5d`` stay strings.
    """
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        pass
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return value
    if isinstance(parsed, tuple):
        parsed = list(parsed)
    if isinstance(parsed, (list, dict, int, float, bool, str)) or parsed is None:
        return parsed  # containers, numbers, True/None, a quoted 'string'
    return value  # sets, bytes, complex numbers: not config values, kept as written


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["epochs=2", "net#channels=[8,16]", "structures=['liver']"]`` -> ``{"epochs": 2, ...}``.

    Values are parsed by :func:`parse_override_value`. A key written ``+key`` keeps its ``+``
    (it marks a key the config may lack; :func:`check_overrides` removes it).

    Raises:
        InputError: an item has no ``=`` or an empty key.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.lstrip(NEW_KEY_PREFIX):
            raise InputError(f"override {item!r} must look like key=value (nested keys with '#', "
                             "e.g. network_def#channels=[8,16]; a new key as +key=value)")
        out[key] = parse_override_value(value)
    return out


def _children(node: Any) -> list[str]:
    if isinstance(node, Mapping):
        return [str(k) for k in node]
    if isinstance(node, Sequence) and not isinstance(node, str):
        return [str(i) for i in range(len(node))]
    return []


def _lookup(config: Any, key: str) -> tuple[bool, str, list[str]]:
    """Whether ``key`` (``a#b#0``) names an entry of ``config``; else the path that exists and the
    keys beside the missing part."""
    node, walked = config, []
    for part in key.split("#"):
        children = _children(node)
        if part not in children:
            return False, "#".join(walked), children
        node = node[part] if isinstance(node, Mapping) else node[int(part)]
        walked.append(part)
    return True, key, []


def check_overrides(config: Mapping[str, Any], overrides: Mapping[str, Any], *,
                    where: str = "the config", accepted: Iterable[str] = ()) -> dict[str, Any]:
    """``overrides`` with every key checked against ``config`` (the merged, unparsed config).

    Args:
        config: the merged config (``ConfigParser.get()``).
        overrides: ``{key: value}``; ``key`` may be nested with ``#`` and may start with ``+``
            (a new key: accepted as it is, the ``+`` removed).
        where: names the config in the message (e.g. ``bundle 'x' mode 'train' (train.json)``).
        accepted: more keys accepted although the config lacks them.

    Returns:
        The overrides with the ``+`` prefixes removed.

    Raises:
        InputError: one line naming the first unknown key, the config, and the closest key.
    """
    allowed = ALWAYS_ACCEPTED | set(accepted)
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        key = str(key)
        if key.startswith(NEW_KEY_PREFIX):
            out[key.lstrip(NEW_KEY_PREFIX)] = value
            continue
        found, parent, siblings = _lookup(config, key)
        if not found and key not in allowed:
            missing = key[len(parent) + 1:] if parent else key
            name = missing.split("#")[0]
            inside = f" under {parent!r}" if parent else ""
            hint = did_you_mean(name, siblings)
            raise InputError(
                f"--set {key}: {where} has no key {name!r}{inside}.{hint} "
                f"(to add a new key on purpose write --set {NEW_KEY_PREFIX}{key}=...)"
            )
        out[key] = value
    return out


def merged_config(files: Sequence[str | Path]) -> dict[str, Any]:
    """The config layers merged as MONAI merges them, unparsed (no ``$`` evaluated)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    return parser.get()
