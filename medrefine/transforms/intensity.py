"""Intensity normalisation chosen from the image: a CT window for CT, robust percentiles otherwise.

The rule (:func:`intensity_mode`, mode ``"auto"``):

1. the image's metadata names its modality (DICOM tag ``0008|0060`` or a ``modality`` entry, as
   MONAI's readers fill them): ``CT`` -> ``"ct"``, anything else -> ``"percentile"``;
2. otherwise its values decide: an image whose 0.5th percentile is at most -100 (fat is about
   -100 HU, air -1000 HU; MR magnitudes are not negative beyond noise) and whose values lie in
   [-3100, 4000] at the 0th / 99.5th percentile (scanner padding -3024, dense bone and contrast
   below 4000) holds Hounsfield units -> ``"ct"``;
3. everything else (MR, ultrasound, phantoms, images already scaled) -> ``"percentile"``.

``"ct"`` clips to a HU window (default [-200, 300], the abdomen's soft tissue) and scales it to
[0, 1]; ``"percentile"`` maps the image's 0.5th..99.5th percentiles to [0, 1] and clips, so an MR
lands in the same range as a windowed CT and the recipes' intensity parameters mean the same on
both; ``"zscore"`` (PA-Seg's choice) subtracts the mean and divides by the standard deviation.

MONAI has each of the three (``ScaleIntensityRange``, ``ScaleIntensityRangePercentiles``,
``NormalizeIntensity``) but nothing that picks one from the image; these classes pick and then
call MONAI's.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from medrefine.errors import InputError

__all__ = ["CT_WINDOW", "INTENSITY_MODES", "ModalityIntensity", "ModalityIntensityd", "check_intensity_mode", "intensity_mode", "looks_like_ct"]

INTENSITY_MODES = ("auto", "ct", "percentile", "zscore")
CT_WINDOW = (-200.0, 300.0)
PERCENTILES = (0.5, 99.5)
_MODALITY_KEYS = ("0008|0060", "modality", "Modality")


def check_intensity_mode(mode: str) -> str:
    from medrefine.errors import did_you_mean

    if mode not in INTENSITY_MODES:
        raise InputError(f"`intensity` must be one of {', '.join(INTENSITY_MODES)}, got {mode!r}." + did_you_mean(str(mode), INTENSITY_MODES))
    return mode


def _sample(values: np.ndarray, limit: int = 2_000_000) -> np.ndarray:
    flat = values.reshape(-1)
    return flat[:: max(1, flat.size // limit)]


def looks_like_ct(image: Any, meta: Mapping[str, Any] | None = None) -> bool:
    """Whether ``image`` is a CT by the rule of the module docstring (metadata first, then HU range).

    Args:
        image: the image array or tensor (any shape; a MONAI ``MetaTensor`` brings its ``meta``).
        meta: metadata to read the modality from (default: ``image.meta`` when present).

    Example:
        >>> looks_like_ct(np.array([-1000.0, -90.0, 40.0, 300.0] * 100))
        True
        >>> looks_like_ct(np.array([0.0, 80.0, 400.0, 800.0] * 100))
        False
    """
    meta = meta if meta is not None else getattr(image, "meta", None)
    for key in _MODALITY_KEYS:
        if meta and key in meta and meta[key] is not None:
            return str(np.asarray(meta[key]).reshape(-1)[0]).strip().upper() == "CT"
    values = _sample(np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float32))
    values = values[np.isfinite(values)]
    if values.size == 0:
        return False
    low, bottom, top = np.percentile(values, [PERCENTILES[0], 0.0, PERCENTILES[1]])
    return bool(low <= -100.0 and bottom >= -3100.0 and top <= 4000.0)


def intensity_mode(image: Any, mode: str = "auto", meta: Mapping[str, Any] | None = None) -> str:
    """The normalisation for ``image``: ``mode`` itself, or for ``"auto"`` ``"ct"`` / ``"percentile"``.

    Raises:
        InputError: ``mode`` is not one of ``auto``, ``ct``, ``percentile``, ``zscore``.
    """
    if check_intensity_mode(mode) != "auto":
        return mode
    return "ct" if looks_like_ct(image, meta) else "percentile"


class ModalityIntensity(Transform):
    """Normalise an image by its modality (see the module docstring for the rule).

    Args:
        mode: ``"auto"`` (the rule), ``"ct"``, ``"percentile"`` or ``"zscore"``. Default ``"auto"``.
        window: the HU window of ``"ct"``, ``(a_min, a_max)``; ``None`` = ``CT_WINDOW`` (-200, 300).
        percentiles: the ``(lower, upper)`` percentiles of ``"percentile"``. Default (0.5, 99.5).

    Raises:
        InputError: an unknown ``mode``, a window or percentiles not increasing.

    Example:
        >>> ModalityIntensity("ct")(torch.tensor([[-300.0, 50.0, 400.0]])).tolist()
        [[0.0, 0.5, 1.0]]
    """

    def __init__(self, mode: str = "auto", window: Sequence[float] | None = None,
                 percentiles: Sequence[float] = PERCENTILES) -> None:
        self.mode = check_intensity_mode(mode)
        self.window = tuple(float(v) for v in (CT_WINDOW if window is None else window))
        if len(self.window) != 2 or not self.window[0] < self.window[1]:
            raise InputError(f"the CT window must be [a_min, a_max] with a_min < a_max, got {list(window or [])!r}")
        self.percentiles = tuple(float(v) for v in percentiles)
        if len(self.percentiles) != 2 or not 0.0 <= self.percentiles[0] < self.percentiles[1] <= 100.0:
            raise InputError(f"`percentiles` must be [lower, upper] with 0 <= lower < upper <= 100, got {list(percentiles)!r}")

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        from monai.transforms import NormalizeIntensity, ScaleIntensityRange, ScaleIntensityRangePercentiles

        mode = intensity_mode(img, self.mode)
        if mode == "ct":
            return ScaleIntensityRange(a_min=self.window[0], a_max=self.window[1], b_min=0.0, b_max=1.0, clip=True)(img)
        if mode == "percentile":
            return ScaleIntensityRangePercentiles(lower=self.percentiles[0], upper=self.percentiles[1], b_min=0.0,
                                                  b_max=1.0, clip=True, channel_wise=True)(img)
        return NormalizeIntensity(channel_wise=True)(img)


class ModalityIntensityd(MapTransform):
    """Dictionary form of :class:`ModalityIntensity`.

    Args:
        keys: the image keys.
        mode, window, percentiles: as :class:`ModalityIntensity`.
        allow_missing_keys: skip absent keys. Default False.
    """

    def __init__(self, keys: KeysCollection, mode: str = "auto", window: Sequence[float] | None = None,
                 percentiles: Sequence[float] = PERCENTILES, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = ModalityIntensity(mode, window, percentiles)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d
