"""``medrefine segment`` end to end: CT in any form, a trained multi-organ model, label maps out.

The TotalSegmentator-style verb over the ``multiorgan_ct_segmentation`` bundle's trained model:

1. :func:`resolve_model` finds the model: a folder holding ``model.pt`` + ``model.json`` (what
   the bundle's train writes), or an installed bundle's name whose ``models/`` holds one; without
   either it refuses with the command that trains one;
2. :func:`segment_inputs` turns a NIfTI file, a folder of images, a DICOM series folder (or a
   folder of series folders) into cases and checks every image as ``medrefine validate`` does,
   before the first output is written;
3. :func:`segment_volume` runs the model's pre-processing (RAS, ``pixdim``, HU window, read from
   ``model.json``), sliding-window inference (or :mod:`medrefine.inferers.slab`'s low-memory
   argmax, chosen by :func:`needs_low_memory` from the volume size and the free memory), and
   inverts the pre-processing (MONAI's ``Invertd``, nearest neighbour) onto the input's own grid;
4. :func:`run_segment` writes ``OUT/<case>.nii.gz`` (one multi-label map, the model's label
   values) and ``OUT/classes.json``, or with ``one_file_per_structure`` ``OUT/<case>/<name>.nii.gz``.

The bundle's ``inference.json`` does the same through ``monai.bundle``; the verb runs it in one
process so that it can read DICOM through :func:`medrefine.io.load_image` (one geometry reader
for the whole package), decide low-memory inference per case, write atomically, and show one
progress bar over the cases.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medrefine.errors import InputError

__all__ = [
    "SegmentResult",
    "TRAIN_HINT",
    "resolve_model",
    "segment_inputs",
    "logits_bytes",
    "needs_low_memory",
    "segment_volume",
    "run_segment",
]

logger = logging.getLogger(__name__)

_BUNDLE = "multiorgan_ct_segmentation"

#: How to get a model, shown when there is none.
TRAIN_HINT = (f"train one with `medrefine run {_BUNDLE} train --set dataset_dir=DATA` (optionally planned first: "
              f"`medrefine plan {_BUNDLE} --set dataset_dir=DATA -o plan.json`, then train with `--set plan=plan.json`) "
              "and pass --model multiorgan_ct_segmentation from the folder you trained in "
              "(it reads ./medrefine_runs/multiorgan_ct_segmentation/default/models), or a models folder")

#: Share of the available memory the full-volume logits may take before low-memory inference is chosen.
MEMORY_SHARE = 0.5


@dataclass
class SegmentResult:
    """What :func:`run_segment` wrote."""

    out_dir: Path
    cases: list[str]
    classes: dict[int, str]
    low_memory: dict[str, bool] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line: cases, structures, where, how long."""
        low = sum(self.low_memory.values())
        extra = f", {low} with low-memory inference" if low else ""
        return (f"segmented {len(self.cases)} case(s) into {len(self.classes) - 1} structure(s){extra}: "
                f"{self.out_dir} ({self.seconds:.1f} s)")


# ----------------------------------------------------------------------------------- model


def resolve_model(model: str | Path | None) -> Any:
    """The trained model to segment with: a model folder or an installed bundle's ``models/``.

    Args:
        model: a folder with ``model.json`` + ``model.pt`` (or the ``model.json`` itself), or the
            name of a bundle: the model its default run trained here
            (``./medrefine_runs/<bundle>/default/models``), else the bundle's own ``models/`` (an
            installed, trained bundle); None refuses with :data:`TRAIN_HINT`.

    Returns:
        The :class:`~medrefine.workflows.models.ModelDescription` (weights checked to exist).

    Raises:
        InputError: no model given, or the folder / bundle holds no trained model (one line, with
            the training command).
    """
    from medrefine.workflows.models import read_model

    if model is None:
        raise InputError(f"--model: expected a trained model folder or bundle name, found none; {TRAIN_HINT}")
    path = Path(model).expanduser()
    if not path.exists():
        from medrefine.bundle.discovery import find_bundle

        try:
            bundle = find_bundle(str(model))
        except InputError as err:
            raise InputError(f"--model {model}: expected a model folder or a bundle name, found neither ({err})") from None
        from medrefine.bundle.workdir import default_work_dir, trained_model_dir

        path = Path(trained_model_dir(default_work_dir(bundle.name), bundle.path))  # ./medrefine_runs/<bundle>/default/models, else the bundle's own
        if not (path / "model.json").is_file() or not (path / "model.pt").is_file():
            raise InputError(f"{path}: bundle {bundle.name!r} holds no trained model (model.pt + model.json); "
                             f"{TRAIN_HINT}")
    description = read_model(path)
    if description.weights_path is None or not description.weights_path.is_file():
        raise InputError(f"{description.weights_path}: trained weights not found beside {description.where}; {TRAIN_HINT}")
    for key in ("network_name", "formulation", "pixdim", "hu_window", "roi_size"):
        description.value(key)  # a description written by another bundle lacks them: refused here, naming the file
    if not description.classes:
        raise InputError(f"{description.where}: expected a class table ('classes'), found none")
    return description


# ----------------------------------------------------------------------------------- inputs


def segment_inputs(source: str | Path, *, nan_policy: str = "refuse") -> list[dict[str, str]]:
    """The images to segment, each checked as ``medrefine validate`` checks it.

    Args:
        source: one image file (NIfTI, NRRD, MHA), a folder of image files and/or DICOM series
            folders, one DICOM series folder, or any dataset :func:`~medrefine.data.cohort.load_cohort`
            reads (TotalSegmentator case folders, a datalist, ...; only the images are used).
        nan_policy: ``"refuse"`` NaN/Inf voxels (default) or ``"zero"`` them.

    Returns:
        ``[{"case": id, "image": absolute path}, ...]`` sorted by case id.

    Raises:
        InputError: not an image or dataset, or an image that would be refused (one line naming the file).
    """
    from medrefine.data.cohort import Cohort
    from medrefine.data.datalist import case_id
    from medrefine.data.validate import require_valid

    path = Path(source).expanduser()
    if path.is_file() and not path.name.lower().endswith(".json"):
        cohort = Cohort(cases=[{"case": case_id(path), "image": str(path.resolve())}], classes=None,
                        layout="image_folder", root=path.resolve().parent, source=path)
        require_valid(cohort, keys=("image",), nan_policy=nan_policy)
        return list(cohort.cases)
    from medrefine.workflows.segmentation import inference_cases

    return inference_cases(path, key="training", nan_policy=nan_policy)


def _check_outputs(cases: Sequence[Mapping[str, str]], out: Path, source: Path) -> None:
    inputs = {Path(c["image"]).resolve() for c in cases}
    folders = {p if p.is_dir() else p.parent for p in inputs}
    source = source.expanduser().resolve()
    if source.is_dir():
        folders.add(source)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: expected an output folder, found a file")
    for folder in sorted(folders):
        if out == folder:
            raise InputError(f"{out}: expected an output folder apart from the inputs, found the input folder itself; "
                             "choose another -o")
    for image in inputs:
        if image == out or out in image.parents:
            raise InputError(f"{out}: expected an output folder apart from the inputs, found the input {image} in it")


# ----------------------------------------------------------------------------------- memory


def logits_bytes(shape: Sequence[int], num_channels: int) -> int:
    """Bytes MONAI's sliding-window inference holds for a volume: float32 logits plus the count map,
    and the same again for the argmax / softmax of the post-processing.

    Example:
        >>> logits_bytes((100, 100, 100), 41)
        336000000
    """
    voxels = int(np.prod([int(s) for s in shape]))
    return 2 * (int(num_channels) + 1) * voxels * 4


def needs_low_memory(shape: Sequence[int], num_channels: int, *, available_bytes: int | None = None,
                     share: float = MEMORY_SHARE) -> bool:
    """Whether the full-volume logits would take more than ``share`` of the available memory.

    Args:
        shape: the volume's shape after resampling to the model's spacing ``(X, Y, Z)``.
        num_channels: the network's output channels.
        available_bytes: free memory; default ``psutil.virtual_memory().available``.
        share: the part of it the logits may take. Defaults to 0.5.
    """
    if available_bytes is None:
        import psutil

        available_bytes = int(psutil.virtual_memory().available)
    return logits_bytes(shape, num_channels) > share * float(available_bytes)


def _resampled_shape(volume: Any, pixdim: Sequence[float]) -> tuple[int, ...]:
    spacing = np.asarray(volume.spacing, float)
    target = np.where(np.asarray(pixdim, float) > 0, np.asarray(pixdim, float), spacing)
    return tuple(int(np.ceil(n * s / t)) for n, s, t in zip(volume.shape, spacing, target))


# ----------------------------------------------------------------------------------- inference


def _preprocessing(pixdim: Sequence[float], hu_window: Sequence[float]) -> Any:
    """The pre-processing of the bundle's ``inference.json`` (after loading): RAS, ``pixdim``, HU window."""
    from monai.transforms import Compose, EnsureTyped, Orientationd, ScaleIntensityRanged, Spacingd

    return Compose([
        Orientationd(keys="image", axcodes="RAS"),
        Spacingd(keys="image", pixdim=[float(p) for p in pixdim], mode="bilinear"),
        ScaleIntensityRanged(keys="image", a_min=float(hu_window[0]), a_max=float(hu_window[1]), b_min=0.0, b_max=1.0,
                             clip=True),
        EnsureTyped(keys="image", dtype=np.float32),
    ])  # fmt: skip


def segment_volume(
    volume: Any,
    network: Any,
    model: Any,
    *,
    device: Any = "cpu",
    low_memory: bool | None = None,
    sw_batch_size: int = 4,
    overlap: float = 0.25,
) -> tuple[np.ndarray, bool]:
    """Segment one volume with a trained model; the label map on the volume's own grid.

    Args:
        volume: a :class:`~medrefine.io.Volume` (array ``(X, Y, Z)``, RAS affine).
        network: the trained network, on ``device``, in eval mode.
        model: its :class:`~medrefine.workflows.models.ModelDescription` (pre-processing, classes).
        device: where inference runs.
        low_memory: slab-wise argmax (:class:`~medrefine.inferers.slab.SlabSlidingWindowInferer`);
            None chooses it by :func:`needs_low_memory` (3D multi-class networks only).
        sw_batch_size, overlap: of the sliding windows.

    Returns:
        ``(labels, low_memory_used)``: labels ``(X, Y, Z)`` int16 with the model's class values.

    Raises:
        InputError: ``low_memory=True`` with a 2D or multi-label model.
    """
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Invertd

    from medrefine.workflows.segmentation import build_inferer, spatial_dims, to_label_map

    name, formulation = str(model.value("network_name")), str(model.value("formulation"))
    possible = spatial_dims(name) == 3 and formulation == "multiclass"
    if low_memory and not possible:
        raise InputError(f"{model.where}: --low-memory needs a 3D multi-class model, found network {name!r} "
                         f"({formulation}); run without it")
    if low_memory is None:
        low_memory = possible and needs_low_memory(_resampled_shape(volume, model.value("pixdim")),
                                                   int(model.network.get("out_channels", model.num_classes)))
    preprocessing = _preprocessing(model.value("pixdim"), model.value("hu_window"))
    image = MetaTensor(torch.as_tensor(np.asarray(volume.array, np.float32)[None]),
                       affine=torch.as_tensor(np.asarray(volume.affine, np.float64)))
    data = preprocessing({"image": image})
    inferer = build_inferer(name, roi_size=model.value("roi_size"), sw_batch_size=sw_batch_size, overlap=overlap,
                            low_memory=bool(low_memory))
    device = torch.device(device)
    with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
        pred = inferer(data["image"][None].to(device), network)[0]
    label = to_label_map(formulation, model.classes)(pred.cpu())
    data["pred"] = MetaTensor(label.as_subclass(torch.Tensor), meta=data["image"].meta)
    data = Invertd(keys="pred", transform=preprocessing, orig_keys="image", nearest_interp=True, to_tensor=True)(data)
    labels = np.asarray(data["pred"][0].detach().cpu().numpy()).round().astype(np.int16)
    if labels.shape != tuple(volume.shape):
        raise RuntimeError(f"inverted label map has shape {labels.shape}, expected the input's {tuple(volume.shape)}")
    return labels, bool(low_memory)


# ----------------------------------------------------------------------------------- run


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def run_segment(
    source: str | Path,
    out_dir: str | Path,
    *,
    model: str | Path | None,
    roi_subset: Sequence[str] | None = None,
    one_file_per_structure: bool = False,
    low_memory: bool | None = None,
    device: str | None = None,
    nan_policy: str = "refuse",
    echo: Callable[[str], None] = print,
    progress: bool = True,
) -> SegmentResult:
    """Segment every image of ``source`` with a trained multi-organ model (``medrefine segment``).

    Args:
        source: see :func:`segment_inputs`.
        out_dir: output folder (refused when it is an input folder or holds an input); receives
            ``<case>.nii.gz`` per case and ``classes.json`` (label value -> structure name), or with
            ``one_file_per_structure`` ``<case>/<name>.nii.gz`` (0/1) per structure.
        model: see :func:`resolve_model`.
        roi_subset: structure names to keep (the others become background); unknown names are
            refused with a did-you-mean.
        one_file_per_structure: write one mask per structure instead of one label map per case.
        low_memory: force (True) or forbid (False) slab-wise inference; None decides per case.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; default CUDA when present.
        nan_policy: ``"refuse"`` or ``"zero"`` NaN/Inf image voxels.
        echo: where the plan line goes.
        progress: show one progress bar over the cases.

    Returns:
        The :class:`SegmentResult`.

    Raises:
        InputError: no model, an unknown structure, a refused image or output folder, all before
            anything is written.
    """
    import torch
    from tqdm.auto import tqdm

    from medrefine.data.classes import save_classes
    from medrefine.io import load_image, save_nifti
    from medrefine.workflows.segmentation import select_structures

    start = time.perf_counter()
    description = resolve_model(model)
    classes = select_structures(description.classes, list(roi_subset) if roi_subset else None)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: expected a CUDA device, found none; use --device cpu")
    cases = segment_inputs(source, nan_policy=nan_policy)
    out = Path(out_dir).expanduser().resolve()
    _check_outputs(cases, out, Path(source))
    network = description.load_network(device=device)
    mode = {None: "chosen per case from the free memory", True: "on", False: "off"}[low_memory]
    echo(f"segment: {len(cases)} case(s) with {description.where} ({description.value('network_name')}, "
         f"{len(classes) - 1} of {len(description.classes) - 1} structures), {device}, low-memory inference {mode}")
    keep = np.array(sorted(classes), dtype=np.int16)
    result = SegmentResult(out_dir=out, cases=[c["case"] for c in cases], classes=classes)
    out.mkdir(parents=True, exist_ok=True)
    inputs = [c["image"] for c in cases]
    for case in tqdm(cases, desc="segmenting", unit="case", disable=not progress):
        volume = load_image(case["image"], finite=nan_policy == "refuse")
        if nan_policy != "refuse":
            volume = volume.with_array(np.nan_to_num(volume.array, nan=0.0, posinf=0.0, neginf=0.0))
        labels, used = segment_volume(volume, network, description, device=device, low_memory=low_memory)
        labels[~np.isin(labels, keep)] = 0
        result.low_memory[case["case"]] = used
        dtype = np.uint8 if int(keep.max()) < 256 else np.int16
        if one_file_per_structure:
            for value, name in classes.items():
                if value:
                    result.written.append(save_nifti((labels == value).astype(np.uint8), out / case["case"] /
                                                     f"{_safe_name(name)}.nii.gz", affine=volume.affine, protect=inputs))
        else:
            result.written.append(save_nifti(labels.astype(dtype), out / f"{case['case']}.nii.gz", affine=volume.affine,
                                             protect=inputs))
    result.written.append(save_classes(classes, out / "classes.json"))
    result.seconds = time.perf_counter() - start
    return result
