"""Self-describing trained models: ``model.pt`` (weights only) + ``model.json`` (what they are).

Every bundle writes its trained model as two files in one folder:

- ``model.pt``: the network's state dict, tensors only, read with ``torch.load(weights_only=True)``;
- ``model.json``: the network's class and constructor arguments, the class table, the case order
  (auto-decoders: which latent belongs to which case), the training loss and its arguments, the
  pre-processing (intensity window, resolution, spacing, ...) and the medrefine version.

Inference and evaluate configs build the network from ``model.json`` and read the pre-processing
from it, so they repeat nothing of the training config; a value a config does set is compared
with the model's by :func:`check_config`, which refuses a contradiction in one line naming the
key, both values and the file. MONAI's bundle format keeps the architecture in the config and the
weights in ``model.pt``; a model that travels without its config (or with a config edited since)
then fails only at ``load_state_dict`` time, which is what this description prevents.

Example:
    >>> save_model(net, "models", classes={0: "background", 1: "liver"},
    ...            preprocessing={"window": [-100, 500]})  # doctest: +SKIP
    >>> model = read_model("models")  # doctest: +SKIP
    >>> network = model.load_network(device="cpu")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrefine.errors import InputError
from medrefine.networks.describe import component_spec, record_init_args
from medrefine.networks.describe import to_plain as _plain

__all__ = [
    "DESCRIPTION_FILE",
    "MODEL_FILE",
    "ModelDescription",
    "check_config",
    "component_spec",
    "load_weights",
    "read_model",
    "record_init_args",
    "save_model",
    "write_description",
]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
DESCRIPTION_FILE = "model.json"
FORMAT_VERSION = 1

# ``_target_`` values model.json may name: a description is data, so it may only build networks
# and losses from these packages (never ``os.system`` or the like).
_ALLOWED_TARGETS = ("medrefine.", "monai.networks.", "monai.losses.", "torch.nn.")
_MISSING = object()  # ModelDescription.value: raise when the key is not recorded
_ABSENT = object()  # check_config: a key the model does not record


# ------------------------------------------------------------------------------- specs


def _resolve_target(target: str, where: str) -> Any:
    if not isinstance(target, str) or not target.startswith(_ALLOWED_TARGETS):
        raise InputError(f"{where}: `_target_` must name a class or builder under {list(_ALLOWED_TARGETS)}, got {target!r}")
    module_name, _, attr = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise InputError(f"{where}: `_target_` {target!r} not found ({err})") from None
    return obj


def _build(spec: Mapping[str, Any], where: str) -> Any:
    spec = dict(spec)
    target = spec.pop("_target_", None)
    factory = _resolve_target(target, where)
    try:
        built = factory(**spec)
    except (TypeError, ValueError) as err:
        raise InputError(f"{where}: cannot build {factory.__name__} from its description ({err})") from None
    if getattr(built, "init_args", None) is None:
        record_init_args(built, target, spec)
    return built


# --------------------------------------------------------------------------- description


@dataclass(frozen=True)
class ModelDescription:
    """What ``model.json`` says about a trained model (see the module docstring).

    Attributes:
        network: ``{"_target_": ..., **arguments}`` of the network.
        classes: class table ``{index: name}`` (background included) or None.
        cases: training case ids in the model's order (auto-decoders: latent order) or None.
        loss: ``{"_target_": ..., **arguments}`` of the training loss, or None.
        preprocessing: intensity window, resolution, spacing, ... keyed by the config's names.
        extra: anything else the bundle records (e.g. the formulation, training epochs).
        medrefine_version: the version that wrote the model.
        path: the ``model.json`` read, or None for a description not read from a file.
    """

    network: dict[str, Any]
    classes: dict[int, str] | None = None
    cases: list[str] | None = None
    loss: dict[str, Any] | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    medrefine_version: str = ""
    path: Path | None = None

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else DESCRIPTION_FILE

    @property
    def weights_path(self) -> Path | None:
        """The weights file this description belongs to (``model.json`` -> ``model.pt``)."""
        return None if self.path is None else self.path.with_suffix(".pt")

    @property
    def num_classes(self) -> int | None:
        """Classes (background included): from the class table, else the network's ``out_channels``."""
        if self.classes:
            return max(self.classes) + 1
        value = self.network.get("out_channels")
        return int(value) if value is not None else None

    def value(self, key: str, default: Any = _MISSING) -> Any:
        """The model's value of a config key: ``num_classes``, ``classes``, ``cases``, then the
        pre-processing, the network's arguments, the loss's arguments and ``extra``, in that order."""
        if key == "num_classes":
            return self.num_classes
        if key in ("classes", "cases"):
            return getattr(self, key)
        for part in (self.preprocessing, {k: v for k, v in self.network.items() if k != "_target_"},
                     {k: v for k, v in (self.loss or {}).items() if k != "_target_"}, self.extra):
            if key in part:
                return part[key]
        if default is _MISSING:
            raise InputError(f"{self.where}: the model does not record {key!r}")
        return default

    def build_network(self, device: Any = None) -> Any:
        """A fresh network of the described architecture (untrained weights), on ``device``."""
        network = _build(self.network, f"{self.where} (network)")
        return network.to(device) if device is not None else network

    def load_network(self, device: Any = None, *, eval_mode: bool = True) -> Any:
        """The network with its trained weights from the ``.pt`` file beside the description."""
        return self.load_into(self.build_network(), device=device, eval_mode=eval_mode)

    def load_into(self, network: Any, device: Any = None, *, eval_mode: bool = True) -> Any:
        """Load the trained weights into ``network`` (built from this description, e.g. by a
        config's ``network_def``) and return it on ``device``."""
        if self.path is None:
            raise InputError("this model description was not read from a folder: no weights to load")
        load_weights(network, self.weights_path, device=device)
        if device is not None:
            network = network.to(device)
        return network.eval() if eval_mode else network

    def build_loss(self, device: Any = None) -> Any:
        """The training loss with its training arguments (e.g. the class weights), or None."""
        if self.loss is None:
            return None
        loss = _build(self.loss, f"{self.where} (loss)")
        return loss.to(device) if device is not None and hasattr(loss, "to") else loss

    def to_dict(self) -> dict[str, Any]:
        """The JSON content of ``model.json``."""
        return {
            "format": FORMAT_VERSION,
            "medrefine_version": self.medrefine_version,
            "network": _plain(self.network, "network"),
            "classes": None if self.classes is None else {str(k): str(v) for k, v in sorted(self.classes.items())},
            "cases": None if self.cases is None else [str(c) for c in self.cases],
            "loss": _plain(self.loss, "loss"),
            "preprocessing": _plain(self.preprocessing, "preprocessing"),
            "extra": _plain(self.extra, "extra"),
        }


def _description(
    network: Any,
    *,
    classes: Mapping[int, str] | None = None,
    cases: Sequence[str] | None = None,
    loss: Any = None,
    preprocessing: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ModelDescription:
    from medrefine import __version__

    network_spec = dict(network) if isinstance(network, Mapping) else component_spec(network)
    loss_spec = None if loss is None else (dict(loss) if isinstance(loss, Mapping) else component_spec(loss))
    return ModelDescription(
        network=_plain(network_spec, "network"),
        classes=None if classes is None else {int(k): str(v) for k, v in dict(classes).items()},
        cases=None if cases is None else [str(c) for c in cases],
        loss=_plain(loss_spec, "loss"),
        preprocessing=_plain(dict(preprocessing or {}), "preprocessing"),
        extra=_plain(dict(extra or {}), "extra"),
        medrefine_version=__version__,
    )


def write_description(model_dir: str | Path, network: Any, *, name: str = "model", **parts: Any) -> Path:
    """Write the description only (e.g. at the start of training, before the weights exist).

    Args:
        model_dir: the model folder.
        network: the network (with ``init_args``) or its spec ``{"_target_": ..., **arguments}``.
        name: file stem: ``<name>.json`` describes ``<name>.pt``. Defaults to ``"model"``.
        **parts: ``classes``, ``cases``, ``loss``, ``preprocessing``, ``extra`` (see :class:`ModelDescription`).

    Returns:
        Path of ``<name>.json``.
    """
    from medrefine.io import atomic_write

    description = _description(network, **parts)
    path = Path(model_dir) / f"{name}.json"
    with atomic_write(path) as tmp:
        Path(tmp).write_text(json.dumps(description.to_dict(), indent=1) + "\n")
    return path


def save_model(network: Any, model_dir: str | Path, **parts: Any) -> Path:
    """Write ``model.pt`` (the state dict, on CPU) and ``model.json`` atomically.

    Args:
        network: the trained network; it must carry ``init_args`` (see :func:`record_init_args`),
            or pass ``spec=`` with its description.
        model_dir: the model folder (created).
        **parts: ``name`` (file stem, default ``"model"``), ``spec`` (overrides the network's own),
            ``classes``, ``cases``, ``loss`` (a module with ``init_args`` or a spec),
            ``preprocessing``, ``extra``.

    Returns:
        Path of ``<name>.pt``.
    """
    import torch

    from medrefine.io import atomic_write

    spec = parts.pop("spec", None)
    name = parts.pop("name", "model")
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    write_description(model_dir, spec if spec is not None else network, name=name, **parts)
    with atomic_write(model_dir / f"{name}.pt") as tmp:
        torch.save({k: v.detach().cpu() for k, v in network.state_dict().items()}, tmp)
    return model_dir / f"{name}.pt"


def read_model(model: str | Path) -> ModelDescription:
    """Read a model description: a model folder (its ``model.json``), a description file, or a
    weights file (``stage1_unet.pt`` -> ``stage1_unet.json``).

    Raises:
        InputError: naming the file, when it is missing, not JSON, or lacks the network.
    """
    path = Path(model)
    if path.suffix == ".pt":
        path = path.with_suffix(".json")
    elif path.is_dir() or path.suffix != ".json":
        path = path / DESCRIPTION_FILE
    if not path.is_file():
        legacy = path.parent / "cases.json"
        hint = (" (this folder holds a model of medrefine 0.1 without a description: train it again)"
                if legacy.is_file() else "; train the bundle first: it writes model.pt and model.json")
        raise InputError(f"{path}: model description not found{hint}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: expected a JSON model description, found unreadable content ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("network"), dict) or "_target_" not in data["network"]:
        raise InputError(f"{path}: expected a 'network' entry with a '_target_', found keys {sorted(data) if isinstance(data, dict) else type(data).__name__}")
    fmt = data.get("format", FORMAT_VERSION)
    if fmt != FORMAT_VERSION:
        raise InputError(f"{path}: model description format {fmt} is not supported (this medrefine reads {FORMAT_VERSION})")
    classes = data.get("classes")
    try:
        classes = None if classes is None else {int(k): str(v) for k, v in classes.items()}
    except (AttributeError, ValueError):
        raise InputError(f"{path}: 'classes' must map class indices to names, found {classes!r}") from None
    return ModelDescription(
        network=dict(data["network"]),
        classes=classes,
        cases=None if data.get("cases") is None else [str(c) for c in data["cases"]],
        loss=data.get("loss"),
        preprocessing=dict(data.get("preprocessing") or {}),
        extra=dict(data.get("extra") or {}),
        medrefine_version=str(data.get("medrefine_version", "")),
        path=path,
    )


def load_weights(network: Any, path: str | Path, *, device: Any = None, key: str | None = None) -> Any:
    """Load a state dict saved with ``torch.save`` into ``network`` (``weights_only=True``).

    Args:
        network: the module to fill.
        path: the weights file.
        device: ``map_location``; defaults to CPU.
        key: for a checkpoint dict holding several objects, the entry of the network
            (e.g. ``"model"``); by default a dict with a single module entry is unwrapped.

    Returns:
        ``network``.

    Raises:
        InputError: one line naming the file when it is missing, unreadable, needs more than plain
            tensors to load (a pickle payload is never executed), or does not fit the network.
    """
    from medrefine.io.torchfile import load_plain

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: trained weights not found; run the bundle's train config first")
    state = load_plain(path, map_location=device or "cpu")
    if key is not None:
        if not isinstance(state, Mapping) or key not in state:
            raise InputError(f"{path}: expected an entry {key!r}, found {sorted(state) if isinstance(state, Mapping) else type(state).__name__}")
        state = state[key]
    elif isinstance(state, Mapping) and len(state) == 1 and isinstance(next(iter(state.values())), Mapping):
        state = next(iter(state.values()))
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise InputError(f"{path}: does not fit the network ({first})") from None
    return network


def check_config(model: ModelDescription, **values: Any) -> ModelDescription:
    """Refuse config values that contradict the model; returns ``model``.

    Each keyword is a config key and the value the config holds (``None`` = not set). The first
    one the model records with another value raises.

    Raises:
        InputError: ``"<model.json>: config key `window` is [0, 1] but the model was trained with
            [-100, 500]; ..."``.
    """
    for key, configured in values.items():
        if configured is None:
            continue
        recorded = model.value(key, default=_ABSENT)
        if recorded is _ABSENT:
            continue
        if not _same(configured, recorded):
            raise InputError(
                f"{model.where}: config key `{key}` is {_show(configured)} but the model was trained with "
                f"{_show(recorded)}; drop the key (the model's value is used) or train a model with it"
            )
    return model


def _same(a: Any, b: Any) -> bool:
    a, b = _plain(_normalise(a), "value"), _plain(_normalise(b), "value")
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _normalise(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    return value


def _show(value: Any) -> str:
    text = json.dumps(_plain(_normalise(value), "value"))
    return text if len(text) <= 80 else text[:77] + "..."

