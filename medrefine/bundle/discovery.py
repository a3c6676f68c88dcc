"""Locate bundles and compose their config layers for a mode."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from medrefine.errors import InputError, did_you_mean

__all__ = ["BundleInfo", "bundles_root", "packaged_bundles", "list_bundles", "find_bundle", "config_files", "workflow_type", "MODES", "WORKFLOW_TYPES"]

CONFIG_SUFFIXES = (".json", ".yaml", ".yml")

# mode -> config layers, applied left to right (later files override earlier ones), following
# the model-zoo convention that evaluate and multi_gpu_train are override files on train.
MODES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "evaluate": ("train", "evaluate"),
    "inference": ("inference",),
    "multi_gpu_train": ("train", "multi_gpu_train"),
    "stage2": ("train", "stage2"),
    "cross_validation": ("train", "cross_validation"),
    "multi_gpu_stage2": ("train", "multi_gpu_train", "stage2", "multi_gpu_stage2"),
    "multi_gpu_inference": ("inference", "multi_gpu_inference"),
}

# mode -> MONAI workflow type, whose required properties (monai.bundle.properties.TrainProperties /
# InferProperties) the mode's merged config must define; a config stem run on its own is not checked.
WORKFLOW_TYPES: dict[str, str] = {
    "train": "train",
    "multi_gpu_train": "train",
    "stage2": "train",
    "cross_validation": "train",
    "multi_gpu_stage2": "train",
    "evaluate": "infer",
    "inference": "infer",
    "multi_gpu_inference": "infer",
}


def workflow_type(mode: str) -> str | None:
    """MONAI's workflow type of ``mode`` (``"train"`` or ``"infer"``), None for a bare config stem."""
    return WORKFLOW_TYPES.get(mode)


@dataclass(frozen=True)
class BundleInfo:
    """What ``configs/metadata.json`` says about a bundle."""

    name: str
    path: Path
    version: str
    description: str
    task: str
    modes: tuple[str, ...]


def packaged_bundles() -> Path:
    """``medrefine/bundles`` inside the installed package (a wheel carries the bundles there)."""
    from importlib.resources import files

    return Path(str(files("medrefine"))) / "bundles"


def bundles_root() -> Path:
    """The folder holding the bundles.

    ``$MEDREFINE_BUNDLES`` when set; else ``bundles/`` inside the installed package (a wheel:
    ``site-packages/medrefine/bundles``); else ``bundles/`` beside the package (a source checkout
    or an editable install); else ``./bundles``.
    """
    env = os.environ.get("MEDREFINE_BUNDLES")
    if env:
        return Path(env)
    for candidate in (packaged_bundles(), Path(__file__).resolve().parents[2] / "bundles"):
        if candidate.is_dir():
            return candidate
    return Path.cwd() / "bundles"


def _config_file(configs: Path, stem: str) -> Path | None:
    for suffix in CONFIG_SUFFIXES:
        candidate = configs / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _read_info(path: Path) -> BundleInfo:
    meta_file = path / "configs" / "metadata.json"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{meta_file}: cannot read the bundle's metadata ({err})") from None
    configs = path / "configs"
    modes = tuple(m for m, layers in MODES.items() if all(_config_file(configs, s) for s in layers))
    return BundleInfo(
        name=path.name,
        path=path,
        version=str(meta.get("version", "?")),
        description=str(meta.get("description", "")),
        task=str(meta.get("task", "")),
        modes=modes,
    )


def list_bundles(root: str | Path | None = None) -> list[BundleInfo]:
    """Every folder under ``root`` with a ``configs/metadata.json``, sorted by name."""
    root = Path(root) if root is not None else bundles_root()
    if not root.is_dir():
        return []
    return [_read_info(p) for p in sorted(root.iterdir()) if (p / "configs" / "metadata.json").is_file()]


def find_bundle(name_or_path: str | Path, root: str | Path | None = None) -> BundleInfo:
    """A bundle by folder path or by name under ``root``.

    Raises:
        InputError: no such bundle (the message lists the ones there are).
    """
    path = Path(name_or_path)
    if (path / "configs" / "metadata.json").is_file():
        return _read_info(path)
    found = {b.name: b for b in list_bundles(root)}
    if str(name_or_path) in found:
        return found[str(name_or_path)]
    have = ", ".join(found) or "none"
    raise InputError(
        f"no bundle {str(name_or_path)!r} in {Path(root) if root else bundles_root()} (bundles: {have})."
        + did_you_mean(str(name_or_path), found)
    )


def config_files(bundle: BundleInfo | str | Path, mode: str, extra: list[str | Path] | None = None) -> list[Path]:
    """The config layers for ``mode``, in the order MONAI should merge them.

    Args:
        bundle: a bundle, its name or its folder.
        mode: one of :data:`MODES` (``train``, ``evaluate``, ``inference``, ``multi_gpu_train``),
            or the stem of any config file in ``configs/`` (run on its own).
        extra: more config files layered on top (e.g. a site-specific override), each a path or
            the stem of one of the bundle's own configs (``"smoke"``: ``configs/smoke.json``).

    Raises:
        InputError: the mode has no config file in this bundle.
    """
    info = bundle if isinstance(bundle, BundleInfo) else find_bundle(bundle)
    configs = info.path / "configs"
    stems = MODES.get(mode, (mode,))
    files = []
    for stem in stems:
        found = _config_file(configs, stem)
        if found is None:
            present = sorted(p.stem for p in configs.iterdir() if p.suffix in CONFIG_SUFFIXES and p.stem != "metadata")
            raise InputError(
                f"bundle {info.name!r} has no configs/{stem}.json for mode {mode!r} (configs: {', '.join(present)})."
                + did_you_mean(mode, list(MODES) + present)
            )
        files.append(found)
    present = sorted(p.stem for p in configs.iterdir() if p.suffix in CONFIG_SUFFIXES and p.stem != "metadata")
    for item in extra or []:
        path = Path(item)
        if not path.is_file():
            named = _config_file(configs, str(item)) if os.sep not in str(item) and "/" not in str(item) else None
            if named is None:
                raise InputError(f"{item}: expected an extra config file or the name of one of bundle {info.name!r}'s "
                                 f"configs ({', '.join(present)}), found neither." + did_you_mean(str(item), present))
            path = named
        files.append(path)
    return files
