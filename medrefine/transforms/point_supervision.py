"""Dictionary transforms that bring point annotations into a MONAI pipeline.

PA-Seg expands its points once, on the stored image, before training. In a bundle the image is
first re-oriented, resampled and normalised, and a point map cannot follow it: resampling a map
with nearest-neighbour interpolation drops single-voxel points whenever the new grid is
coarser. So the points travel as world coordinates (a :class:`~medrefine.points.PointSet`):

1. :class:`LoadPointsd` reads a JSON list or a point map next to the freshly loaded image and
   checks it against the image's **own** grid (a map must share it; every point must lie inside;
   at least one foreground point), each error naming the file;
2. the image goes through the usual spatial and intensity transforms (the points are untouched);
3. :class:`PointSeedsd` places the points on the image's current grid and expands them there
   (:func:`~medrefine.transforms.expand_point_set`), giving the partial label
   (0 background, c foreground, 255 unlabeled) as a ``MetaTensor`` on the image's grid.

:class:`SimulatePointsd` makes the points from a full label instead (PA-Seg's seven-point
protocol, :func:`~medrefine.points.simulate_points`), for experiments and tests on fully
labelled data. MONAI has no point-annotation transforms.
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.transforms import MapTransform

from medrefine.errors import InputError
from medrefine.points.pointset import PointSet
from medrefine.transforms.seed_expansion import _affine_of, _name_of

__all__ = ["LoadPointsd", "PointSeedsd", "SimulatePointsd"]


def _grid_of(image) -> tuple[tuple[int, ...], np.ndarray]:
    """Spatial shape and (4, 4) affine of a channel-first image (MetaTensor affine, else identity)."""
    affine = _affine_of(image)
    return tuple(int(s) for s in image.shape[1:4]), np.eye(4) if affine is None else affine


def _one_per_key(output_keys, keys) -> list:
    out = [output_keys] if isinstance(output_keys, (str, int)) else list(output_keys)
    if len(out) != len(keys):
        raise ValueError(f"`output_keys` must name one key per key in `keys` ({len(keys)}), got {out}")
    return out


class LoadPointsd(MapTransform):
    """Replace a points file path by its checked :class:`~medrefine.points.PointSet`.

    The file is a JSON point list (world mm) or a PA-Seg point map (NIfTI: 1 background point,
    2 foreground point, 1 + c foreground of class c). Put this right after the image is loaded
    (``LoadImaged`` + ``EnsureChannelFirstd``), while the image is on its stored grid.

    Args:
        keys: keys holding points file paths.
        image_key: key of the loaded channel-first image (a ``MetaTensor``). Default ``"image"``.
        allow_missing_keys: skip absent keys. Default ``False``.

    Raises:
        InputError: unreadable file, no foreground point, a point outside the image (naming the file).
        GeometryError: a point map on another grid than the image (naming both files).
    """

    def __init__(self, keys: Hashable | Sequence[Hashable], image_key: Hashable = "image", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        from medrefine.io import Volume
        from medrefine.points.files import load_points

        d = dict(data)
        image = d[self.image_key]
        shape, affine = _grid_of(image)
        name = _name_of(image, "the image")
        reference = Volume(np.empty(shape, dtype=np.uint8), affine, path=Path(name))
        for key in self.key_iterator(d):
            value = d[key]
            if isinstance(value, PointSet):
                value.voxel_indices(shape, affine, image_name=name)
                continue
            d[key] = load_points(Path(str(value)), image=reference)
        return d


class SimulatePointsd(MapTransform):
    """Simulate PA-Seg's seven points per class from a full label (:func:`~medrefine.points.simulate_points`).

    The points of a case are drawn from ``numpy.random.default_rng([seed, crc32(case)])`` (the
    case id under ``case_key``, else the label's file name), so they do not change from one epoch
    or run to the next. Use a deterministic transform position (before any random transform).

    Args:
        keys: keys of the full labels (channel-first ``MetaTensor``).
        output_keys: where to store each :class:`~medrefine.points.PointSet`, one per key. Default ``"points"``.
        classes: classes to annotate; default every class present.
        seed: base seed. Default 0.
        jitter_mm: standard deviation of the jitter of each point (mm). Default 0.
        case_key: key of the case id. Default ``"case"``.
    """

    def __init__(
        self,
        keys: Hashable | Sequence[Hashable],
        output_keys: Hashable | Sequence[Hashable] = "points",
        classes: Sequence[int] | None = None,
        seed: int = 0,
        jitter_mm: float = 0.0,
        case_key: Hashable = "case",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_keys = _one_per_key(output_keys, self.keys)
        self.classes = None if classes is None else [int(c) for c in classes]
        self.seed = int(seed)
        self.jitter_mm = float(jitter_mm)
        self.case_key = case_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        from medrefine.points.simulate import simulate_points

        d = dict(data)
        for key, out_key in zip(self.key_iterator(d), self.output_keys):
            label = d[key]
            shape, affine = _grid_of(label)
            name = _name_of(label, str(key))
            case = str(d.get(self.case_key, Path(name).name))
            rng = np.random.default_rng([self.seed & 0xFFFFFFFF, zlib.crc32(case.encode())])
            array = np.asarray(torch.as_tensor(label).detach().cpu()).reshape(shape).astype(np.int64)
            d[out_key] = simulate_points(array, affine, classes=self.classes, seed=rng, jitter_mm=self.jitter_mm, source=name)
        return d


class PointSeedsd(MapTransform):
    """Expand the points under ``keys`` into PA-Seg's partial label on the image's current grid.

    Points are placed on the nearest voxel of the image's current grid (its ``MetaTensor``
    affine); a point that re-orientation or resampling moved just past the border (by rounding)
    is put on the border voxel. Each output is ``(1, X, Y, Z)`` ``uint8``: 0 background, ``c``
    foreground of class ``c``, 255 unlabeled (see :func:`~medrefine.transforms.expand_point_set`).

    Args:
        keys: keys holding :class:`~medrefine.points.PointSet` s (from :class:`LoadPointsd` or
            :class:`SimulatePointsd`).
        output_keys: where to write the partial labels, one per key. Default ``"seeds"``.
        image_key: the image the distance runs on. Default ``"image"``.
        threshold, margin_mm, lambda_geodesic, num_passes, background_threshold, smooth_mm: see
            :func:`~medrefine.transforms.expand_seeds`.
        class_values: map each point class to an output value (e.g. ``{3: 1}`` to expand class 3 of a
            multi-class point list as a binary target); points of other classes are dropped.
            Default ``None`` (keep the classes).
    """

    def __init__(
        self,
        keys: Hashable | Sequence[Hashable],
        output_keys: Hashable | Sequence[Hashable] = "seeds",
        image_key: Hashable = "image",
        threshold: float = 0.2,
        margin_mm: float = 0.0,
        lambda_geodesic: float = 0.5,
        num_passes: int = 4,
        class_values: Mapping[int, int] | None = None,
        allow_missing_keys: bool = False,
        background_threshold: float | None = None,
        smooth_mm: float = 0.0,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_keys = _one_per_key(output_keys, self.keys)
        self.image_key = image_key
        self.kwargs = {"threshold": float(threshold), "margin_mm": float(margin_mm),
                       "lambda_geodesic": float(lambda_geodesic), "num_passes": int(num_passes),
                       "background_threshold": None if background_threshold is None else float(background_threshold),
                       "smooth_mm": float(smooth_mm)}
        self.class_values = None if class_values is None else {int(k): int(v) for k, v in dict(class_values).items()}

    def _select(self, points: PointSet) -> PointSet:
        if self.class_values is None:
            return points
        keep = np.array([(not f and c == 0) or int(c) in self.class_values for f, c in zip(points.foreground, points.classes)])
        kept = points.subset(keep)
        classes = np.array([self.class_values.get(int(c), 0) if (f or c) else 0 for f, c in zip(kept.foreground, kept.classes)])
        if not kept.foreground.any():
            raise InputError(f"{points.name}: expected foreground points of class(es) {sorted(self.class_values)}, "
                             f"found classes {points.foreground_classes}")
        return PointSet(kept.world, kept.foreground, classes.astype(np.int64), source=points.source)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        from monai.data import MetaTensor

        from medrefine.transforms.seed_expansion import expand_point_set

        d = dict(data)
        image = d[self.image_key]
        shape, affine = _grid_of(image)
        array = np.asarray(torch.as_tensor(image).detach().cpu(), dtype=np.float32)
        for key, out_key in zip(self.key_iterator(d), self.output_keys):
            points = d[key]
            if not isinstance(points, PointSet):
                raise InputError(f"`{key}` must hold points (use LoadPointsd or SimulatePointsd first), got {type(points).__name__}")
            points = self._select(points)
            voxels = np.clip(np.rint(points.to_voxel(affine)), 0, np.asarray(shape) - 1)
            placed = PointSet.from_voxel(voxels, affine, points.foreground, points.classes, source=points.source)
            label = expand_point_set(array, placed, affine, image_name=_name_of(image, "the image"), **self.kwargs)
            meta = dict(getattr(image, "meta", {}) or {})
            meta["affine"] = torch.as_tensor(affine)
            d[out_key] = MetaTensor(torch.from_numpy(label[None].astype(np.uint8)), meta=meta)
        return d
