"""Multi-modal lesion crops: each modality cut around its own centre, plus a lesion-mask sphere.

:class:`LesionCropd` turns a lesion record of :func:`medrefine.data.lesions.load_lesions` into the
network's inputs: ``image`` ``(M, *size)`` (one channel per modality, each resampled around its
own world-space centre onto a common grid of ``spacing_mm``, so a few millimetres of
misregistration between sequences are undone), ``mask`` ``(1, *size)`` (a sphere of the lesion's
diameter at the centre), ``presence`` ``(M,)`` (1: the modality exists, 0: its channel is zeros)
and ``label`` ``(T,)`` (class index per target, -1 = not labelled). The resampling is MONAI's
:class:`~monai.transforms.SpatialResample`; what MONAI lacks is the record -> crop step itself
(one destination grid per modality, centred where that modality sees the lesion).

:class:`ModalityDropout` / :class:`ModalityDropoutd` zero whole modalities at random and clear
their presence flags (augmentation for missing sequences), keeping at least one.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform, Transform

from medrefine.errors import InputError

__all__ = ["LesionCropd", "ModalityDropout", "ModalityDropoutd", "crop_around", "lesion_sphere"]


def _triple(value: float | Sequence[float], name: str, cast: type) -> tuple:
    values = [value] * 3 if np.isscalar(value) else list(value)
    if len(values) != 3 or any(float(v) <= 0 for v in values):
        raise ValueError(f"`{name}` must be one or three positive values, got {value!r}")
    return tuple(cast(v) for v in values)


def crop_around(array: np.ndarray, affine: np.ndarray, centre_world: Sequence[float], *,
                spacing_mm: Sequence[float], size: Sequence[int], mode: str = "bilinear",
                padding: str = "border") -> np.ndarray:
    """Resample ``array`` onto a world-aligned grid of ``size`` voxels of ``spacing_mm`` centred at
    ``centre_world`` (RAS mm).

    Where the grid reaches past the image, ``padding="border"`` (the default) repeats the image's
    edge voxels; ``"zeros"`` writes 0. Lesion images are often small regions of interest, and a
    rim of zeros around an MR or diffusion crop is a dark frame that dominates the crop's
    z-score (on 36 mm regions cropped to 40 mm, a quarter of the voxels), shrinking the lesion's
    contrast to a fraction of what the image shows.

    Args:
        array: ``(X, Y, Z)`` image.
        affine: its voxel-to-world (RAS) matrix.
        centre_world: ``(3,)`` the grid's centre in mm.
        spacing_mm: output voxel size (3 values).
        size: output shape (3 values).
        mode: interpolation (``"bilinear"`` or ``"nearest"``).
        padding: ``"border"`` or ``"zeros"`` (see above).

    Returns:
        ``(*size)`` float32 array.
    """
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    spacing = np.asarray(spacing_mm, dtype=float)
    shape = np.asarray(size, dtype=int)
    dst = np.diag([*spacing, 1.0])
    dst[:3, 3] = np.asarray(centre_world, dtype=float) - spacing * (shape - 1) / 2.0
    image = MetaTensor(torch.as_tensor(np.asarray(array, dtype=np.float32))[None], affine=torch.as_tensor(affine))
    if padding not in ("border", "zeros"):
        raise ValueError(f"`padding` must be 'border' or 'zeros', got {padding!r}")
    out = SpatialResample(mode=mode, padding_mode=padding)(image, dst_affine=torch.as_tensor(dst),
                                                           spatial_size=tuple(int(s) for s in shape))
    return np.asarray(out[0].detach().cpu().numpy(), dtype=np.float32)


def lesion_sphere(size: Sequence[int], spacing_mm: Sequence[float], diameter_mm: float) -> np.ndarray:
    """``(*size)`` float32 mask: 1 inside the sphere of ``diameter_mm`` centred in the grid."""
    axes = [(np.arange(n) - (n - 1) / 2.0) * s for n, s in zip(size, spacing_mm)]
    grid = np.meshgrid(*axes, indexing="ij")
    radius2 = sum(g**2 for g in grid)
    return (radius2 <= (diameter_mm / 2.0) ** 2).astype(np.float32)


class LesionCropd(Transform):
    """Lesion record -> ``image``, ``mask``, ``presence``, ``label`` (see the module docstring).

    Args:
        modalities: modality names, in channel order.
        targets: ``{name: [class values]}`` (the cohort's target table), in output order.
        spacing_mm: common voxel size of the crops. Default 1 mm.
        size: crop shape in voxels. Default ``(32, 32, 32)``.
        nan_policy: ``"refuse"`` (default) an image with NaN/Inf voxels, or ``"zero"``: set them
            to 0 before cropping (a bundle's ``nan_policy`` key).

    Example:
        >>> crop = LesionCropd(cohort.modalities, cohort.targets, spacing_mm=1.0, size=32)  # doctest: +SKIP
        >>> sample = crop(cohort.records[0]); sample["image"].shape  # doctest: +SKIP
        torch.Size([3, 32, 32, 32])
    """

    def __init__(self, modalities: Sequence[str], targets: Mapping[str, Sequence[str]], *,
                 spacing_mm: float | Sequence[float] = 1.0, size: int | Sequence[int] = 32,
                 nan_policy: str = "refuse") -> None:
        from medrefine.data.validate import refuses_nonfinite

        if not modalities:
            raise ValueError("`modalities` must name at least one modality, got none")
        self.modalities = tuple(modalities)
        self.targets = {str(k): [str(v) for v in values] for k, values in targets.items()}
        self.spacing_mm = _triple(spacing_mm, "spacing_mm", float)
        self.size = _triple(size, "size", int)
        self.finite = refuses_nonfinite(nan_policy)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[str, Any]:
        from medrefine.data.lesions import voxel_centre
        from medrefine.io import load_image
        from medrefine.workflows.preflight import zero_nonfinite

        channels, presence = [], []
        for modality in self.modalities:
            path = data["images"].get(modality)
            if path is None:
                channels.append(np.zeros(self.size, dtype=np.float32))
                presence.append(0.0)
                continue
            volume = load_image(path, finite=self.finite)
            array = volume.array if self.finite else zero_nonfinite(np.asarray(volume.array))
            voxel = voxel_centre(data, modality, volume.affine)
            world = (volume.affine @ np.append(voxel, 1.0))[:3]
            channels.append(crop_around(array, volume.affine, world, spacing_mm=self.spacing_mm, size=self.size))
            presence.append(1.0)
        labels = []
        for name, values in self.targets.items():
            value = data["targets"].get(name)
            if value is not None and value not in values:
                raise InputError(f"{data.get('source', data.get('case'))}: expected {name!r} in {values}, found {value!r}")
            labels.append(-1 if value is None else values.index(value))
        from monai.data import MetaTensor

        grid = torch.diag(torch.tensor([*self.spacing_mm, 1.0], dtype=torch.float64))  # crop grid, centred at 0
        grid[:3, 3] = -torch.tensor(self.spacing_mm, dtype=torch.float64) * (torch.tensor(self.size) - 1) / 2.0
        mask = lesion_sphere(self.size, self.spacing_mm, float(data["diameter_mm"]))[None]
        return {
            "case": str(data["case"]),
            "patient": str(data.get("patient", data["case"])),
            "image": MetaTensor(torch.from_numpy(np.stack(channels)), affine=grid.clone()),
            "mask": MetaTensor(torch.from_numpy(mask), affine=grid.clone()),
            "presence": torch.tensor(presence, dtype=torch.float32),
            "label": torch.tensor(labels, dtype=torch.int64),
        }


class ModalityDropout(RandomizableTransform):
    """Zero each present modality with probability ``prob`` (keeping at least ``keep`` present ones)
    and clear its presence flag; channels already absent are zeroed too.

    Args:
        prob: per-modality drop probability in [0, 1]. Default 0.2.
        keep: modalities that always stay (the present ones drawn last survive). Default 1.
    """

    def __init__(self, prob: float = 0.2, keep: int = 1) -> None:
        if not 0.0 <= float(prob) <= 1.0:
            raise ValueError(f"`prob` must be in [0, 1], got {prob!r}")
        if int(keep) < 0:
            raise ValueError(f"`keep` must be >= 0, got {keep!r}")
        RandomizableTransform.__init__(self, prob=1.0)
        self.drop_prob = float(prob)
        self.keep = int(keep)
        self._drop: np.ndarray = np.zeros(0, dtype=bool)

    def randomize(self, presence: np.ndarray) -> None:  # type: ignore[override]
        present = np.flatnonzero(presence > 0)
        drop = self.R.random_sample(len(presence)) < self.drop_prob
        drop &= presence > 0
        kept = [i for i in present if not drop[i]]
        if len(kept) < min(self.keep, len(present)):
            order = self.R.permutation(present)
            for i in order[: min(self.keep, len(present)) - len(kept)]:
                drop[i] = False
        self._drop = drop

    def __call__(self, image: torch.Tensor, presence: torch.Tensor, randomize: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``image (M, *spatial)``, ``presence (M,)`` -> both with the dropped modalities cleared."""
        flags = torch.as_tensor(presence, dtype=torch.float32).clone()
        if flags.ndim != 1 or flags.shape[0] != image.shape[0]:
            raise ValueError(f"`presence` must have one flag per channel of `image` ({image.shape[0]}), got shape {tuple(flags.shape)}")
        if randomize:
            self.randomize(flags.cpu().numpy())
        flags[torch.as_tensor(self._drop, dtype=torch.bool)] = 0.0
        scale = flags.reshape(-1, *([1] * (image.ndim - 1))).to(image.dtype)
        return image * scale, flags


class ModalityDropoutd(RandomizableTransform, MapTransform):
    """Dictionary form of :class:`ModalityDropout` on ``keys`` (images) with ``presence_key``."""

    def __init__(self, keys: KeysCollection = "image", presence_key: str = "presence", prob: float = 0.2,
                 keep: int = 1, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=1.0)
        self.presence_key = presence_key
        self.dropout = ModalityDropout(prob=prob, keep=keep)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> ModalityDropoutd:
        super().set_random_state(seed, state)
        self.dropout.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        presence = torch.as_tensor(d[self.presence_key], dtype=torch.float32)
        self.dropout.randomize(presence.cpu().numpy())
        flags = presence
        for key in self.key_iterator(d):
            d[key], flags = self.dropout(d[key], presence, randomize=False)
        d[self.presence_key] = flags
        return d
