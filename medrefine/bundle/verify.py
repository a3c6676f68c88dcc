"""Check a bundle: its metadata, its files against the manifest, its networks and its code.

:func:`verify_bundle` is what ``medrefine bundle verify`` runs, on a bundle folder or a packed
archive; :func:`verify_bundle_metadata` is the metadata part, which the test harness runs on every
shipped bundle.

MONAI's ``verify_metadata`` downloads the schema named in the metadata's ``schema`` field;
medrefine ships a copy of the model-zoo requirements (``meta_schema.json``: the required top-level keys and the
``network_data_format`` fields of MONAI's bundle specification) and places it where MONAI looks
first, so the check runs offline.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrefine.errors import InputError

__all__ = ["SCHEMA_FILE", "BundleReport", "bundle_version", "config_expressions", "verify_bundle", "verify_bundle_metadata"]

SCHEMA_FILE = Path(__file__).with_name("meta_schema.json")


@contextlib.contextmanager
def _quiet_monai() -> Iterator[None]:
    """Hide MONAI's input summary and its "no hash value" warning about the local schema copy."""
    loggers = [logging.getLogger(name) for name in ("monai.bundle.scripts", "monai.apps")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No hash value provided")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def verify_bundle_metadata(meta_file: str | Path) -> None:
    """Validate ``meta_file`` against the bundle metadata schema.

    Raises:
        InputError: the file is missing or does not satisfy the schema (the message names it).
    """
    from monai.bundle import verify_metadata

    meta_file = Path(meta_file)
    if not meta_file.is_file():
        raise InputError(f"{meta_file}: bundle metadata not found")
    with tempfile.TemporaryDirectory() as tmp, _quiet_monai():
        schema = Path(tmp) / "schema.json"
        shutil.copyfile(SCHEMA_FILE, schema)  # present -> download_url() skips the download
        try:
            verify_metadata(meta_file=str(meta_file), filepath=str(schema))
        except ValueError as err:
            raise InputError(f"{meta_file}: metadata does not satisfy the bundle schema: {err}") from None


def _version_key(version: str) -> tuple:
    from packaging.version import InvalidVersion, Version

    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def bundle_version(meta_file: str | Path) -> str:
    """The bundle's version: metadata's ``version``, which must be the newest entry of its ``changelog``.

    Raises:
        InputError: ``<metadata.json>: expected version 0.2.0 in the changelog, found ...`` when the
            version has no changelog entry or a newer entry exists.
    """
    from medrefine.io import read_json

    meta = read_json(meta_file, what="bundle metadata")
    version = str(meta.get("version", ""))
    changelog = meta.get("changelog") or {}
    if version not in changelog:
        raise InputError(f"{meta_file}: expected version {version!r} to have a changelog entry, "
                         f"found entries for {sorted(changelog) or 'no version'}; add one saying what changed")
    newest = max(changelog, key=_version_key)
    if newest != version:
        raise InputError(f"{meta_file}: expected version {version!r} to be the newest in the changelog, "
                         f"found {newest!r}; set version to {newest!r} or drop that entry")
    return version


def config_expressions(root: str | Path) -> list[tuple[str, str, str]]:
    """Every ``$`` expression of the bundle's configs: ``(file, key path, expression)``, in file order.

    MONAI's config parser runs these with Python's ``eval`` (and ``exec`` for ``$import``); they
    are code, to be read before a bundle from elsewhere is run.
    """
    root = Path(root)
    found: list[tuple[str, str, str]] = []

    def walk(node: Any, path: str, rel: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}#{key}" if path else str(key), rel)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}#{index}" if path else str(index), rel)
        elif isinstance(node, str) and node.lstrip().startswith("$"):
            found.append((rel, path, node.strip()))

    for path in sorted((root / "configs").glob("*")):
        if path.name == "metadata.json" or path.suffix not in (".json", ".yaml", ".yml"):
            continue
        rel = path.relative_to(root).as_posix()
        try:
            if path.suffix == ".json":
                content = json.loads(path.read_text())
            else:
                import yaml

                content = yaml.safe_load(path.read_text())
        except Exception as err:  # noqa: BLE001 - JSON and YAML raise their own kinds
            raise InputError(f"{path}: expected a JSON or YAML config, found unreadable content ({err})") from None
        walk(content, "", rel)
    return found


@dataclass
class BundleReport:
    """What :func:`verify_bundle` checked (``checks``: one line each) and the code the configs hold."""

    name: str
    version: str
    checks: list[str] = field(default_factory=list)
    expressions: list[tuple[str, str, str]] = field(default_factory=list)


def _verify_folder(root: Path, where: str, *, export: bool) -> BundleReport:
    from medrefine.bundle.manifest import MANIFEST_FILE, check_manifest, model_files, read_manifest
    from medrefine.bundle.netcheck import check_network
    from medrefine.io import read_json
    from medrefine.workflows.models import read_model

    meta_file = root / "configs" / "metadata.json"
    if (root / MANIFEST_FILE).is_file():
        manifest = read_manifest(root / MANIFEST_FILE)
        count = check_manifest(root, manifest, where=where)
        hashes = f"files: {count} match {MANIFEST_FILE} (sha256 and size), none unlisted"
    else:
        hashes = f"files: no {MANIFEST_FILE} (a bundle not packed): hashes not checked"
    verify_bundle_metadata(meta_file)
    version = bundle_version(meta_file)
    meta = read_json(meta_file, what="bundle metadata")
    report = BundleReport(name=root.name, version=version)
    report.checks += [hashes, f"metadata: satisfies the bundle schema; version {version} is the newest in the changelog"]
    descriptions = [root / rel for rel in model_files(root) if rel.endswith(".json")]
    if not descriptions:
        report.checks.append("network: no trained model in models/ (packed with --no-weights?): not run")
    for description in descriptions:
        result = check_network(read_model(description), meta, export=export)
        if isinstance(result, str):
            report.checks.append(f"network: {description.name}: not run on a tensor: the network {result}")
        else:
            report.checks.append(f"network: {result.run}")
            if export:
                report.checks.append(f"export: {description.name}: {result.export}")
    report.expressions = config_expressions(root)
    files = sorted({f for f, _, _ in report.expressions})
    report.checks.append(f"code: {len(report.expressions)} '$' expressions in {len(files)} config files "
                         "(Python that MONAI evaluates when the bundle runs; listed below)")
    return report


def verify_bundle(path: str | Path, *, export: bool = True, max_member_mb: float | None = None) -> BundleReport:
    """Check a bundle folder or a packed bundle archive.

    In order: the files against ``manifest.json`` (sha256 and size of each, nothing missing or
    unlisted; a folder without a manifest is reported, not refused); the metadata against the
    offline schema, and its version against the changelog; each trained model's network run on a
    tensor shaped from ``network_data_format`` (output channels, spatial shape and dtype checked),
    and exported and reloaded with TorchScript or ``torch.export`` where the network allows; last,
    the ``$`` expressions of the configs are listed, since MONAI evaluates them as Python.

    An archive is checked member by member (no absolute path, ``..``, link or oversized member)
    and extracted into a temporary folder first; nothing of it is run but the network, which is
    built from ``model.json`` (medrefine, MONAI and torch classes only) with weights-only loading.

    Args:
        path: a bundle folder, or a ``.zip`` from ``medrefine bundle pack``.
        export: check the export round trip. Default True.
        max_member_mb: largest archive member accepted, in MiB (default
            :data:`~medrefine.bundle.archive.DEFAULT_MAX_MEMBER_MB`).

    Returns:
        A :class:`BundleReport`.

    Raises:
        InputError: the first failed check, one line naming the file (e.g.
            ``b.zip: configs/train.json: expected sha256 ..., found ... (changed since it was packed); refused``).
    """
    from medrefine.bundle.archive import DEFAULT_MAX_MEMBER_MB, extract_bundle
    from medrefine.bundle.manifest import MANIFEST_FILE

    path = Path(path)
    if path.is_dir():
        if not (path / "configs" / "metadata.json").is_file():
            raise InputError(f"{path}: expected a bundle folder (configs/metadata.json inside) or a .zip, found neither")
        return _verify_folder(path, str(path), export=export)
    with tempfile.TemporaryDirectory(prefix="medrefine-verify-") as tmp:
        root = extract_bundle(path, tmp, max_member_mb=max_member_mb or DEFAULT_MAX_MEMBER_MB)
        if not (root / MANIFEST_FILE).is_file():
            raise InputError(f"{path}: {root.name}/{MANIFEST_FILE}: expected the manifest of the packed bundle, found none; refused")
        return _verify_folder(root, str(path), export=export)
