"""Check a bundle's ``metadata.json`` with MONAI's ``verify_metadata``.

``verify_metadata`` downloads the schema named in the metadata's ``schema`` field. medrefine ships
a copy of the model-zoo requirements (``meta_schema.json``: the required top-level keys and the
``network_data_format`` fields of MONAI's bundle specification) and places it where MONAI looks
first, so the check runs offline.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from medrefine.errors import InputError

__all__ = ["verify_bundle_metadata", "SCHEMA_FILE"]

SCHEMA_FILE = Path(__file__).with_name("meta_schema.json")


def verify_bundle_metadata(meta_file: str | Path) -> None:
    """Validate ``meta_file`` against the bundle metadata schema.

    Raises:
        InputError: the file is missing or does not satisfy the schema (the message names it).
    """
    from monai.bundle import verify_metadata

    meta_file = Path(meta_file)
    if not meta_file.is_file():
        raise InputError(f"{meta_file}: bundle metadata not found")
    with tempfile.TemporaryDirectory() as tmp:
        schema = Path(tmp) / "schema.json"
        shutil.copyfile(SCHEMA_FILE, schema)  # present -> download_url() skips the download
        try:
            verify_metadata(meta_file=str(meta_file), filepath=str(schema))
        except ValueError as err:
            raise InputError(f"{meta_file}: metadata does not satisfy the bundle schema: {err}") from None
