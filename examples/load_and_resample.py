"""Load a DICOM series and a label on another grid, check the grids, resample, save.

    .venv/bin/python examples/load_and_resample.py [SERIES_DIR LABEL OUT]

Without arguments it uses the real CT example in ../shared/data/totalseg_example.
"""

from __future__ import annotations

import sys
from pathlib import Path

from medrefine.errors import GeometryError
from medrefine.io import check_same_grid, load_image, load_label, resample_to, save_nifti

EXAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "totalseg_example"


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
    if len(sys.argv) == 4:
        main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
    elif (EXAMPLE / "ct_dicom").is_dir():
        main(EXAMPLE / "ct_dicom", EXAMPLE / "ct_dicom_seg.nii.gz", Path("ct_dicom_seg_on_series.nii.gz"))
    else:
        sys.exit(f"usage: {Path(__file__).name} SERIES_DIR LABEL OUT  (example data not found at {EXAMPLE})")
