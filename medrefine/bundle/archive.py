"""Pack a bundle into a deterministic zip, and extract or install one safely.

The archive follows the MONAI model-zoo layout that ``monai.bundle.download`` unpacks: one top
folder named after the bundle, holding ``configs/``, ``docs/``, ``LICENSE``, ``models/`` and, from
medrefine, ``manifest.json`` (see :mod:`medrefine.bundle.manifest`). Installing it into ``DIR``
gives ``DIR/<name>/models/model.pt``, where ``monai.bundle.load(name, bundle_dir=DIR)`` looks.

Python's ``zipfile.extractall`` and ``shutil.unpack_archive`` trust member names; MONAI fixed the
resulting "zip slip" in its own download path. Here every member is checked before the first byte
is written (no absolute path, no ``..``, no link, one top folder, no member over a size limit),
the files go to a temporary folder beside the destination, their hashes are compared with the
manifest, and only then is the folder renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

from medrefine.bundle.manifest import MANIFEST_FILE, bundle_files, build_manifest, check_manifest, model_files, read_manifest
from medrefine.errors import InputError

__all__ = ["DEFAULT_MAX_MEMBER_MB", "extract_bundle", "install_bundle", "pack_bundle", "read_members"]

#: Largest file (MiB, decompressed) an archive may hold before it is refused as oversized.
DEFAULT_MAX_MEMBER_MB = 4096
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest zip date: every member gets it, so packing is reproducible
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_CHUNK = 1 << 20


def pack_bundle(bundle_dir: str | Path, out: str | Path | None = None, *, weights: bool = True,
                models_dir: str | Path | None = None) -> Path:
    """Write ``<name>_<version>.zip``: the bundle's configs, docs, LICENSE, trained models and manifest.

    The same files give the same archive byte for byte (sorted members, fixed time stamps and
    permissions, no time in the manifest).

    Args:
        bundle_dir: the bundle folder (``configs/metadata.json`` inside).
        out: the zip to write, or a folder (existing, or named with a trailing ``/``) to write
            ``<name>_<version>.zip`` into. Defaults to
            ``<name>_<version>.zip`` in the current folder.
        weights: include the trained models (``models/<name>.pt`` with ``<name>.json``); with
            False, pack configs and docs only. Default True.
        models_dir: where the trained models are, when not in the bundle folder: a run's
            ``<work_dir>/models`` (packed as ``models/`` all the same). Default: ``<bundle>/models``.

    Returns:
        The zip written (atomically).

    Raises:
        InputError: the metadata fails the schema, its version is not the newest entry of its
            changelog, there is no trained model (and ``weights`` is True), or ``out`` is not a
            ``.zip`` — one line each.

    Example:
        >>> pack_bundle("work/multiorgan_ct_segmentation", "shared/")  # doctest: +SKIP
    """
    from medrefine.bundle.discovery import find_bundle
    from medrefine.bundle.verify import bundle_version, verify_bundle_metadata
    from medrefine.io import atomic_write

    info = find_bundle(Path(bundle_dir))
    root = info.path
    meta_file = root / "configs" / "metadata.json"
    verify_bundle_metadata(meta_file)
    version = bundle_version(meta_file)
    models = Path(models_dir) if models_dir is not None else root / "models"
    trained = model_files(root, models) if weights else []
    if weights and not trained:
        raise InputError(f"{models}: expected a trained model (model.pt with its model.json), found none; "
                         "train the bundle first, or pass --no-weights to share the configs only")
    files = sorted(bundle_files(root, weights=False) + trained)
    sources = {rel: models / rel.split("/", 1)[1] for rel in trained}
    manifest = build_manifest(root, files, name=info.name, version=version, sources=sources)
    target = Path(out) if out is not None else Path.cwd()
    if out is None or target.is_dir() or str(out).endswith(("/", os.sep)):
        target = target / f"{info.name}_{version}.zip"
    if target.suffix != ".zip":
        raise InputError(f"{target}: expected an output file ending in .zip, found {target.suffix or 'no suffix'!r}")
    with atomic_write(target) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for rel in files:
            _add(archive, f"{info.name}/{rel}", sources.get(rel, root / rel))
        text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
        archive.writestr(_zipinfo(f"{info.name}/{MANIFEST_FILE}", len(text.encode())), text)
    return target


def _zipinfo(arcname: str, size: int) -> zipfile.ZipInfo:
    member = zipfile.ZipInfo(arcname, date_time=_FIXED_TIME)
    member.compress_type = zipfile.ZIP_DEFLATED
    member.create_system = 3  # unix, whatever the packing machine
    member.external_attr = (stat.S_IFREG | 0o644) << 16
    member.file_size = size
    return member


def _add(archive: zipfile.ZipFile, arcname: str, path: Path) -> None:
    size = path.stat().st_size
    with open(path, "rb") as src, archive.open(_zipinfo(arcname, size), "w", force_zip64=size > 2**31 - 1) as dst:
        shutil.copyfileobj(src, dst, _CHUNK)


# ----------------------------------------------------------------------------- extraction


def _open(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise InputError(f"{path}: expected a bundle archive (.zip), found no file")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise InputError(f"{path}: expected a zip archive, found unreadable content ({err})") from None


def _member_problem(member: zipfile.ZipInfo, parts: list[str], top: str) -> tuple[str, str] | None:
    """``(expected, found)`` when a member's name or kind may not be extracted, else None."""
    inside = "a relative path inside the bundle's folder"
    mode = member.external_attr >> 16
    if member.filename.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", member.filename):
        return inside, "an absolute path"
    if ".." in parts:
        return inside, "a '..' component (a path out of the destination)"
    if stat.S_ISLNK(mode):
        return "plain files", "a symbolic link"
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "plain files", f"a special file (mode {oct(stat.S_IFMT(mode))})"
    if not _NAME.match(top):
        return "one top folder named after the bundle", f"a top folder {top!r}"
    if parts[0] != top or len(parts) < 2:
        return f"every member under the top folder {top}/", f"a member outside {top}/"
    if not member.is_dir() and any(p in ("", ".") for p in parts[1:]):
        return inside, "an empty or '.' path component"
    return None


def read_members(archive: zipfile.ZipFile, where: str | Path, *,
                 max_member_mb: float = DEFAULT_MAX_MEMBER_MB) -> tuple[str, list[tuple[zipfile.ZipInfo, str]]]:
    """Check every member of a bundle archive before anything is extracted.

    Refused: an absolute path or drive, a ``..`` component, a symbolic link (or any member that
    is not a plain file or folder), a member over ``max_member_mb`` MiB, a name given twice,
    members outside one top folder, and a top folder that is not a plain bundle name.

    Returns:
        The bundle's name (the top folder) and ``(member, path inside the bundle)`` of each file.

    Raises:
        InputError: ``<archive>: <member>: expected ..., found ...; refused`` for the first bad member.
    """
    limit = int(max_member_mb * 2**20)
    top: str | None = None
    seen: set[str] = set()
    files: list[tuple[zipfile.ZipInfo, str]] = []
    for member in archive.infolist():
        parts = member.filename.replace("\\", "/").split("/")
        top = top or parts[0]
        rel = "/".join(parts[1:])
        problem = _member_problem(member, parts, top)
        if problem is None and not member.is_dir():
            if member.file_size > limit:
                problem = f"members of at most {max_member_mb:g} MiB", f"{member.file_size} bytes"
            elif rel in seen:
                problem = "each file once", "the name a second time"
        if problem is not None:
            raise InputError(f"{where}: {member.filename}: expected {problem[0]}, found {problem[1]}; refused")
        if not member.is_dir():
            seen.add(rel)
            files.append((member, rel))
    if top is None:
        raise InputError(f"{where}: expected a bundle folder in the archive, found an empty archive")
    return top, files


def _extract_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, where: str | Path, limit: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with archive.open(member) as src, open(target, "xb") as dst:
            for chunk in iter(lambda: src.read(_CHUNK), b""):
                written += len(chunk)
                if written > min(member.file_size, limit):  # a header that lies about the size
                    raise InputError(f"{where}: {member.filename}: expected {member.file_size} bytes, "
                                     "found more when decompressing; refused")
                dst.write(chunk)
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise InputError(f"{where}: {member.filename}: expected an intact member, found a damaged one ({err}); refused") from None


def extract_bundle(archive_path: str | Path, dest: str | Path, *, max_member_mb: float = DEFAULT_MAX_MEMBER_MB) -> Path:
    """Extract a bundle archive into ``dest/<name>`` after checking every member (:func:`read_members`).

    ``dest/<name>`` must not exist. Hashes are not checked here (see :func:`install_bundle`).

    Returns:
        The extracted bundle folder.

    Raises:
        InputError: a refused member, a damaged archive, or ``dest/<name>`` already there.
    """
    archive_path, dest = Path(archive_path), Path(dest)
    with _open(archive_path) as archive:
        name, files = read_members(archive, archive_path, max_member_mb=max_member_mb)
        root = dest / name
        if root.exists():
            raise InputError(f"{root}: expected a free destination for the bundle, found an existing folder")
        base = dest.resolve()
        for member, rel in files:
            target = root / rel
            if base not in target.resolve().parents:  # read_members already refuses this; kept as a second lock
                raise InputError(f"{archive_path}: {member.filename}: expected a path inside {dest}, found one outside; refused")
            _extract_member(archive, member, target, archive_path, int(max_member_mb * 2**20))
    return root


def install_bundle(archive_path: str | Path, to: str | Path, *, force: bool = False,
                   max_member_mb: float = DEFAULT_MAX_MEMBER_MB) -> Path:
    """Install a bundle archive as ``to/<name>``: checked, extracted aside, verified, then renamed in.

    Steps: every member is checked (:func:`read_members`); the files are extracted into a hidden
    temporary folder inside ``to``; each is compared with the manifest (size and sha256, nothing
    missing, nothing unlisted) and the metadata with the bundle schema; only then is the folder
    renamed to ``to/<name>``. A refused archive leaves ``to`` as it was.

    Args:
        archive_path: the ``.zip`` written by :func:`pack_bundle`.
        to: the folder to install into (created); ``monai.bundle.load(name, bundle_dir=to)``
            then finds ``to/<name>/models/model.pt``.
        force: replace an installed bundle of the same name. Default False (refuse).
        max_member_mb: largest member accepted, in MiB.

    Returns:
        The installed bundle folder.

    Raises:
        InputError: one line naming the archive and the member, for every refusal.

    Example:
        >>> install_bundle("multiorgan_ct_segmentation_0.1.0.zip", "~/bundles")  # doctest: +SKIP
    """
    from medrefine.bundle.verify import verify_bundle_metadata

    archive_path, to = Path(archive_path), Path(to).expanduser()
    with _open(archive_path) as archive:
        name, _ = read_members(archive, archive_path, max_member_mb=max_member_mb)
    target = to / name
    if target.exists() and not force:
        raise InputError(f"{target}: expected a free destination, found bundle {name!r} already installed; "
                         "pass --force to replace it")
    to.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.install-", dir=to))
    try:
        root = extract_bundle(archive_path, staging, max_member_mb=max_member_mb)
        manifest = read_manifest(root / MANIFEST_FILE)
        if manifest.get("name") != name:
            raise InputError(f"{archive_path}: {name}/{MANIFEST_FILE}: expected the bundle name {name!r}, "
                             f"found {manifest.get('name')!r}; refused")
        check_manifest(root, manifest, where=str(archive_path))
        verify_bundle_metadata(root / "configs" / "metadata.json")
        if target.exists():  # force: move the old one aside first, drop it once the new one is in place
            target.rename(staging / f"{name}.replaced")
        root.rename(target)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
    return target
