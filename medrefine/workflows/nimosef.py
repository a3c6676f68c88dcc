"""Cardiac motion bundle (NIMOSEF): pre-processing, model export, code fitting and outputs, evaluation.

Banus et al., NIMOSEF (MICCAI 2025). What the bundle configs call:

- :func:`check_cine`: every file a mode reads, opened and checked as ``medrefine validate`` checks
  a cine cohort, before anything is written (the list :func:`~medrefine.workflows.preflight.preflight`
  compares the outputs with);
- :func:`prepare_cohort`: validate every subject, then write ``implicit/`` arrays (+ parquet) and
  the seeded 70/15/15 ``dataset_manifest.json`` under the run folder;
- :func:`export_model`: ``model.pt`` + ``model.json`` (network, classes, training subjects in code
  order, intensity window, coordinate scale) via :func:`~medrefine.workflows.models.save_model`;
- :func:`infer_cine`: fit a code per subject with the network frozen (from the image, optionally
  with the label; training subjects may keep their trained code), then write in the input's
  geometry ``{id}_rec.nii.gz`` (4D intensity), ``{id}_seg.nii.gz`` (4D labels), optionally at
  ``res_factor_z`` times the slices, ``{id}_pred_boundaries.parquet`` (x, y, z, t, frame, label)
  and ``{id}_displacement.parquet`` (ED boundary points, x, y, z, t, frame, label, dx, dy, dz in mm);
- :func:`evaluate_cine`: the same, then Dice/HD95 per frame, volume curves, EDV/ESV/EF and mass of
  prediction and reference, ``metrics.csv``, ``function.csv`` and an HTML report.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medrefine.errors import InputError

__all__ = ["check_cine", "evaluate_cine", "export_model", "format_summary", "infer_cine", "prepare_cohort", "write_subject_outputs"]

logger = logging.getLogger(__name__)


def check_cine(dataset_dir: str | Path, *, key: str | None = None, num_classes: int | None = None,
               use_label: bool = True, require_transform: bool = False, nan_policy: str = "refuse") -> list[dict[str, Any]]:
    """The cases of a cine cohort (BIDS-like, or a datalist of 4D pairs), every file opened and checked
    with the checks of ``medrefine validate``: readable, 4D, finite unless ``nan_policy="zero"``, the
    label (``use_label``) with the image's frames and grid and values below ``num_classes``, each
    transform readable, and present when ``require_transform``.

    Returns:
        One dict per subject naming its files (``case``, ``image``, ``label``, ``transform``).

    Raises:
        InputError: the first problem, one line naming the file: ``<file>: expected ..., found ...``.
    """
    from medrefine.data.cohort import load_cohort
    from medrefine.data.validate import require_valid

    require = ("image", "label") if use_label else ("image",)
    require += ("transform",) if require_transform else ()
    cohort = load_cohort(dataset_dir, key=key, require=require, strict=False)
    require_valid(cohort, num_classes=num_classes, keys=(*require, "transform"), spatial_dims=4, nan_policy=nan_policy)
    return [dict(case) for case in cohort.cases]


def prepare_cohort(dataset_dir: str | Path, work_dir: str | Path, *, seed: int = 0, window: Sequence[float] = (1.0, 99.0),
                   require_transform: bool = False, write_parquet: bool = True, nan_policy: str = "refuse") -> dict[str, Any]:
    """Pre-process a cine cohort into ``work_dir`` and return its manifest (see :mod:`medrefine.data.cine_implicit`)."""
    from medrefine.data.cine_implicit import preprocess_cine, read_manifest

    path = preprocess_cine(dataset_dir, work_dir, seed=seed, window=window, require_transform=require_transform,
                           write_parquet=write_parquet, nan_policy=nan_policy)
    return read_manifest(path)


def export_model(trainer: Any, cases: Sequence[Mapping[str, Any]], model_dir: str | Path, *,
                 classes: Mapping[int, str], preprocessing: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> Path:
    """Write the trained network and its description; ``scale_mm`` is added to the pre-processing."""
    from medrefine.workflows.models import save_model

    prep = dict(preprocessing)
    prep["scale_mm"] = float(trainer.scale_mm)
    return save_model(trainer.network, model_dir, classes=dict(classes), cases=[str(c["case"]) for c in cases],
                      preprocessing=prep, extra=dict(extra or {}))


def _world_points(affine: np.ndarray, shape: Sequence[int], flat_idx: np.ndarray) -> np.ndarray:
    ijk = np.stack(np.unravel_index(flat_idx, tuple(shape)), axis=-1).astype(np.float64)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def write_subject_outputs(network: torch.nn.Module, code: torch.Tensor, case: Mapping[str, Any], output_dir: str | Path,
                          *, scale_mm: float, res_factor_z: float = 1.0, chunk_size: int = 65536,
                          write_parquet: bool = True) -> dict[str, Any]:
    """Decode one subject on its grid (or ``res_factor_z`` times the slices) and write its outputs.

    Returns:
        ``{"case", "seg" (X, Y, Z', T) uint8, "affine", "files": [...]}``.
    """
    import pandas as pd

    from medrefine.data.cine_implicit import local_coordinates
    from medrefine.engines.nimosef import _boundary
    from medrefine.inferers.nimosef import decode_frames, upsampled_grid
    from medrefine.io import atomic_write, save_nifti

    out = Path(output_dir)
    cid = str(case["case"])
    frames = int(case["image"].shape[3])
    ed = int(case.get("ed_frame", 0))
    affine, shape = upsampled_grid(case["affine"], case["image"].shape[:3], res_factor_z)
    local = local_coordinates(affine, shape, case["local_to_world"]).reshape(-1, 3) / float(scale_mm)
    device = code.device
    coords = torch.from_numpy(local).to(device)
    phases = [f / frames for f in range(frames)]
    decoded = decode_frames(network, code, coords, phases, ed / frames, chunk_size=chunk_size, heads=("seg", "intensity"))
    seg = decoded["seg"].cpu().numpy().astype(np.uint8).reshape(frames, *shape).transpose(1, 2, 3, 0)
    rec = decoded["intensity"].cpu().numpy().astype(np.float32).reshape(frames, *shape).transpose(1, 2, 3, 0)
    files = [save_nifti(rec, out / f"{cid}_rec.nii.gz", affine=affine),
             save_nifti(np.ascontiguousarray(seg), out / f"{cid}_seg.nii.gz", affine=affine)]
    if write_parquet:
        rows = []
        for f in range(frames):
            idx = np.flatnonzero(_boundary(seg[..., f]))
            xyz = _world_points(affine, shape, idx)
            rows.append(pd.DataFrame({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "t": f / frames, "frame": f,
                                      "label": seg[..., f].reshape(-1)[idx]}))
        with atomic_write(out / f"{cid}_pred_boundaries.parquet") as tmp:
            pd.concat(rows, ignore_index=True).to_parquet(tmp, index=False)
        files.append(out / f"{cid}_pred_boundaries.parquet")
        idx = np.flatnonzero(_boundary(seg[..., ed]))
        ed_xyz = _world_points(affine, shape, idx)
        pts = coords[torch.from_numpy(idx).to(device)]
        disp = decode_frames(network, code, pts, phases, ed / frames, chunk_size=chunk_size,
                             heads=("displacement",))["displacement"].cpu().numpy()
        rotation = np.asarray(case["local_to_world"])[:3, :3]
        moved = disp * float(scale_mm) @ rotation.T  # (F, N, 3) world mm
        labels = seg[..., ed].reshape(-1)[idx]
        table = pd.DataFrame({
            "x": np.tile(ed_xyz[:, 0], frames), "y": np.tile(ed_xyz[:, 1], frames), "z": np.tile(ed_xyz[:, 2], frames),
            "t": np.repeat(np.asarray(phases), len(idx)), "frame": np.repeat(np.arange(frames), len(idx)),
            "label": np.tile(labels, frames),
            "dx": moved[..., 0].reshape(-1), "dy": moved[..., 1].reshape(-1), "dz": moved[..., 2].reshape(-1)})
        with atomic_write(out / f"{cid}_displacement.parquet") as tmp:
            table.to_parquet(tmp, index=False)
        files.append(out / f"{cid}_displacement.parquet")
    return {"case": cid, "seg": seg, "affine": affine, "files": [str(f) for f in files]}


def _load_cases(dataset_dir: str | Path, model: Any, *, key: str | None, use_label: bool,
                require_transform: bool, nan_policy: str = "refuse",
                subjects: Sequence[str] | None = None) -> list[dict[str, Any]]:
    from medrefine.data.cine import load_cine_cases, load_cine_subject
    from medrefine.data.cine_implicit import prepare_subject

    cases = load_cine_cases(dataset_dir, key=key, require_label=use_label, require_transform=require_transform)
    if subjects is not None:  # a shard: only these subjects' volumes are read
        wanted = {str(s) for s in subjects}
        unknown = sorted(wanted - {str(c["case"]) for c in cases})
        if unknown:
            raise InputError(f"{dataset_dir}: expected subjects {unknown[:5]} among the cohort's, found none of that name")
        cases = [c for c in cases if str(c["case"]) in wanted]
    if not use_label:  # what the mode declares it reads: a label beside the image is neither read nor used
        cases = [{k: v for k, v in c.items() if k != "label"} for c in cases]
    subjects = [load_cine_subject(c, num_classes=model.num_classes, require_label=use_label,
                                  require_transform=require_transform, nan_policy=nan_policy)
                for c in cases]  # all checked first
    return [prepare_subject(s, model.value("window")) for s in subjects]


def infer_cine(network: torch.nn.Module, model: Any, dataset_dir: str | Path, output_dir: str | Path, *,
               key: str | None = None, fit_steps: int = 200, fit_lr: float = 1e-2, fit_points: int = 4096,
               use_label: bool = False, use_trained_codes: bool = False, res_factor_z: float = 1.0,
               chunk_size: int = 65536, write_parquet: bool = True, require_transform: bool = False,
               device: Any = "cpu", seed: int = 0, cases: Sequence[Mapping[str, Any]] | None = None,
               nan_policy: str = "refuse", subjects: Sequence[str] | None = None,
               codes_json: str | Path | None = None) -> list[dict[str, Any]]:
    """Fit codes (network frozen) and write every subject's outputs (see the module docstring).

    Args:
        network: the trained network (``model.load_into(...)``).
        model: its :class:`~medrefine.workflows.models.ModelDescription`.
        dataset_dir: a cine cohort (BIDS-like, or a datalist of 4D pairs); images suffice unless ``use_label``.
        output_dir: output folder (created).
        use_label: fit the label too (without it a label beside the image is not read; the ED frame is frame 0).
            use_trained_codes: training subjects keep their trained code.
        res_factor_z: slices multiplied by this factor in the outputs.
        cases: already prepared cases (skips reading ``dataset_dir``).
        nan_policy: ``"refuse"`` NaN/Inf image voxels (default) or set them to ``"zero"``.
        subjects: only these subject ids of ``dataset_dir`` (a shard, see
            :func:`medrefine.engines.sharding.shard_cases`); default all.
        codes_json: where the fitted codes go; default ``output_dir/codes.json`` (a sharded run
            writes a part per rank, :func:`medrefine.engines.sharding.part_path`).

    Returns:
        Per subject: ``case``, ``seg``, ``affine``, ``files`` and its ``code`` (list).
    """
    from medrefine.engines.nimosef import CineTensors
    from medrefine.engines.nimosef_fit import fit_codes
    from medrefine.io import atomic_write

    device = torch.device(device)
    prepared = list(cases) if cases is not None else _load_cases(dataset_dir, model, key=key, use_label=use_label,
                                                                  require_transform=require_transform,
                                                                  nan_policy=nan_policy, subjects=subjects)
    if not prepared:
        raise InputError(f"{dataset_dir}: expected cine subjects, found none")
    scale = float(model.value("scale_mm"))
    network = network.to(device)
    data = CineTensors(prepared, scale, device)
    codes = fit_codes(network, data, steps=fit_steps, lr=fit_lr, num_points=fit_points, use_label=use_label,
                      seed=seed, device=device)
    if use_trained_codes and model.cases:
        for i, case in enumerate(prepared):
            if str(case["case"]) in model.cases:
                codes[i] = network.latents.weight[model.cases.index(str(case["case"]))].detach()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for i, case in enumerate(prepared):
        record = write_subject_outputs(network, codes[i : i + 1], case, out, scale_mm=scale, res_factor_z=res_factor_z,
                                       chunk_size=chunk_size, write_parquet=write_parquet)
        record["code"] = codes[i].cpu().tolist()
        results.append(record)
    with atomic_write(Path(codes_json) if codes_json is not None else out / "codes.json") as tmp:
        tmp.write_text(json.dumps({r["case"]: r["code"] for r in results}, indent=1) + "\n")
    logger.info("wrote the outputs of %d subject(s) to %s", len(results), out)
    return results


def evaluate_cine(network: torch.nn.Module, model: Any, dataset_dir: str | Path, output_dir: str | Path, *,
                  report: bool = True, **kwargs: Any) -> dict[str, Any]:
    """Infer (as :func:`infer_cine`), then score against the labels: per-frame Dice/HD95 and cardiac function.

    Writes ``metrics.csv`` (case, frame, structure, dice, hd95, status), ``function.csv`` (case,
    source = pred | ref, EDV/ESV/EF/mass) and, with ``report``, ``report/report.html``.

    Returns:
        ``{"metrics": DataFrame, "function": DataFrame, "summary": {...}}``.
    """
    import pandas as pd

    from medrefine.io import atomic_write
    from medrefine.metrics.cardiac import cardiac_function, frame_metrics, volume_curves

    kwargs.setdefault("res_factor_z", 1.0)
    prepared = _load_cases(dataset_dir, model, key=kwargs.pop("key", None), use_label=True,
                           require_transform=kwargs.get("require_transform", False),
                           nan_policy=kwargs.pop("nan_policy", "refuse"))
    results = infer_cine(network, model, dataset_dir, Path(output_dir) / "predictions", cases=prepared,
                         **{k: v for k, v in kwargs.items() if k != "require_transform"})
    metric_tables, function_rows, curves = [], [], {}
    for case, result in zip(prepared, results):
        spacing = np.linalg.norm(case["affine"][:3, :3], axis=0)
        pred = result["seg"]
        if pred.shape != case["label"].shape:  # super-resolved: score on the input slices
            factor = pred.shape[2] // case["label"].shape[2]
            pred = pred[:, :, factor // 2 :: factor][:, :, : case["label"].shape[2]]
        table = frame_metrics(pred, case["label"], spacing)
        table.insert(0, "case", case["case"])
        metric_tables.append(table)
        for source, label in (("pred", pred), ("ref", case["label"])):
            vol = volume_curves(label, spacing)
            curves[(case["case"], source)] = vol
            function_rows.append({"case": case["case"], "source": source,
                                  **cardiac_function(vol, ed_frame=case["ed_frame"])})
    metrics = pd.concat(metric_tables, ignore_index=True)
    function = pd.DataFrame(function_rows)
    out = Path(output_dir)
    with atomic_write(out / "metrics.csv") as tmp:
        metrics.to_csv(tmp, index=False)
    with atomic_write(out / "function.csv") as tmp:
        function.to_csv(tmp, index=False)
    pred_f = function[function["source"] == "pred"].set_index("case")
    ref_f = function[function["source"] == "ref"].set_index("case")
    summary = {f"dice_{s}": float(metrics.loc[metrics["structure"] == s, "dice"].mean())
               for s in dict.fromkeys(metrics["structure"])}
    summary["lv_ef_abs_error"] = float((pred_f["lv_ef"] - ref_f["lv_ef"]).abs().mean())
    if "rv_ef" in pred_f:
        summary["rv_ef_abs_error"] = float((pred_f["rv_ef"] - ref_f["rv_ef"]).abs().mean())
    if report:
        from medrefine.reports.cardiac import write_cardiac_report

        codes = {r["case"]: r["code"] for r in results}
        write_cardiac_report(out / "report", metrics, function, curves, codes, summary,
                             motion=(results[0]["seg"], prepared[0]["case"]))
    return {"metrics": metrics, "function": function, "summary": summary}


def format_summary(evaluation: Mapping[str, Any]) -> str:
    """One line per summary value, for the console."""
    return "\n".join(f"{k}: {v:.4f}" for k, v in evaluation["summary"].items())
