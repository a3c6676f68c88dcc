"""Load a DICOM series and a label on another grid, check the grids, resample, save.

    .venv/bin/python examples/load_and_resample.py [SERIES_DIR LABEL] [--out FILE]

Without SERIES_DIR and LABEL it uses the real CT example in ../shared/data/totalseg_example (or
$MEDREFINE_SHARED_DATA). The resampled label goes to --out, by default into a new temporary folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from medrefine.errors import GeometryError
from medrefine.io import check_same_grid, load_image, load_label, resample_to, save_nifti

EXAMPLE = Path(os.environ.get("MEDREFINE_SHARED_DATA",
                              Path(__file__).resolve().parents[1].parent / "shared" / "data" / "totalseg_example"))


def main(series: Path, label_path: Path, out: Path) -> None:
    image = load_image(series)
    label = load_label(label_path)
    print(image)
    print(label)
    try:
        check_same_grid(image, label)
    except GeometryError as err:
        print(f"\ngrids differ:\n{err}\n")
        label = resample_to(label, image, order=0)
    written = save_nifti(label, out, protect=[label_path])
    print(f"label on the series' grid: {written}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="*", metavar="SERIES_DIR LABEL", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="label file to write (default: in a new temporary folder)")
    args = parser.parse_args()
    if len(args.inputs) not in (0, 2):
        parser.error(f"expected SERIES_DIR and LABEL (or neither), got {len(args.inputs)} path(s)")
    if not args.inputs and not (EXAMPLE / "ct_dicom").is_dir():
        sys.exit(f"{Path(__file__).name}: expected the example data at {EXAMPLE}, found no ct_dicom folder; "
                 "pass SERIES_DIR LABEL")
    series, label_path = args.inputs or (EXAMPLE / "ct_dicom", EXAMPLE / "ct_dicom_seg.nii.gz")
    out = args.out or Path(tempfile.mkdtemp(prefix="medrefine_example_")) / "ct_dicom_seg_on_series.nii.gz"
    main(series, label_path, out)
