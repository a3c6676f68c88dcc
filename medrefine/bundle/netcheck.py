"""Run a bundle's trained network on a tensor shaped from ``network_data_format``, and export it.

This is the model zoo's ``verify_net_in_out`` and ``ckpt_export`` idea (``ci/verify_bundle.py``)
for medrefine's self-describing models: the network is built from ``model.json`` (whose
``_target_`` may only name medrefine, MONAI or torch classes, see
:mod:`medrefine.workflows.models`), its weights are loaded with ``weights_only=True``, and it runs
on a random tensor of the input's channels, spatial shape and dtype. The output's channels, spatial
shape and dtype are compared with the metadata's outputs. Then a TorchScript round trip (or, for
networks TorchScript cannot compile, a ``torch.export`` one) must give the same output.

MONAI's ``verify_net_in_out`` builds the network from the config's ``network_def``, which for
medrefine's configs is computed from the training data (class count, case count) or read from
``model.json``, and it cannot tell a network that needs more than one tensor; so it did not serve.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from medrefine.errors import InputError

__all__ = ["NetCheck", "check_network", "plain_tensor_input"]

#: Largest difference accepted between the eager and the exported network's outputs.
EXPORT_ATOL = 1e-5


@dataclass(frozen=True)
class NetCheck:
    """What :func:`check_network` found: a line for the run, a line for the export."""

    run: str
    export: str


def plain_tensor_input(meta: Mapping[str, Any]) -> tuple[str, tuple[int, ...], str] | str:
    """The single plain tensor input of ``network_data_format``, or why the network needs more.

    Returns:
        ``(key, (channels, *spatial), dtype)`` when there is one input with a numeric spatial
        shape; otherwise a sentence saying what the network takes instead.
    """
    inputs = (meta.get("network_data_format") or {}).get("inputs") or {}
    if len(inputs) != 1:
        return (f"takes {len(inputs)} inputs ({', '.join(inputs)}), not one plain tensor"
                + (" (an auto-decoder: it needs a training case's index)" if "case_index" in inputs else ""))
    key, spec = next(iter(inputs.items()))
    shape = spec.get("spatial_shape") or []
    if not shape or not all(isinstance(s, int) and s > 0 for s in shape):
        return f"input {key!r} has no fixed spatial shape ({shape}), not a plain tensor"
    return key, (int(spec.get("num_channels", 1)), *shape), str(spec.get("dtype", "float32"))


def _expected_output(meta: Mapping[str, Any]) -> tuple[str, int, tuple[int, ...] | None, str]:
    outputs = (meta.get("network_data_format") or {}).get("outputs") or {}
    if len(outputs) != 1:
        raise InputError(f"network_data_format: expected one output, found {len(outputs)} ({', '.join(outputs)})")
    key, spec = next(iter(outputs.items()))
    shape = list(spec.get("spatial_shape") or [])
    if shape in ([], [1]):
        out_spatial: tuple[int, ...] | None = ()
    elif all(isinstance(s, int) for s in shape):
        out_spatial = tuple(shape)
    else:
        out_spatial = None  # symbolic: channels and dtype only
    return key, int(spec.get("num_channels", 1)), out_spatial, str(spec.get("dtype", "float32"))


def _tensor(output: Any) -> Any:
    import torch

    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (list, tuple)) and output and isinstance(output[0], torch.Tensor):
        return output[0]  # deep supervision and the like: the first is the prediction
    if isinstance(output, Mapping) and output:
        return _tensor(next(iter(output.values())))
    raise InputError(f"expected the network to return a tensor, found {type(output).__name__}")


def _export_round_trip(network: Any, sample: Any, reference: Any) -> str:
    """Script (or export) ``network``, save and load it in memory, and compare its output."""
    import torch

    errors: list[str] = []
    try:
        scripted = torch.jit.script(network)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        buffer.seek(0)
        loaded, how = torch.jit.load(buffer, map_location="cpu"), "TorchScript"
    except Exception as err:  # noqa: BLE001 - any compile error means "not scriptable"
        errors.append(f"TorchScript: {_first_line(err)}")
        try:
            program = torch.export.export(network, (sample,))
            buffer = io.BytesIO()
            torch.export.save(program, buffer)
            buffer.seek(0)
            loaded, how = torch.export.load(buffer).module(), "torch.export"
        except Exception as err2:  # noqa: BLE001
            errors.append(f"torch.export: {_first_line(err2)}")
            return "not exportable (" + "; ".join(errors) + ")"
    with torch.no_grad():
        again = _tensor(loaded(sample))
    if again.shape != reference.shape:
        raise InputError(f"{how} round trip: expected output shape {tuple(reference.shape)}, found {tuple(again.shape)}")
    diff = float((again.float() - reference.float()).abs().max()) if reference.numel() else 0.0
    if diff > EXPORT_ATOL:
        raise InputError(f"{how} round trip: expected the eager output, found a difference of {diff:.3g}")
    return f"{how} round trip: saved, loaded, same output (max difference {diff:.1g})"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:120] if text else ''}"


def check_network(model: Any, meta: Mapping[str, Any], *, seed: int = 0, export: bool = True) -> NetCheck | str:
    """Run the trained network of ``model`` on a tensor shaped from ``meta``'s ``network_data_format``.

    Args:
        model: a :class:`~medrefine.workflows.models.ModelDescription` read from a bundle's ``models/``.
        meta: the bundle's metadata.
        seed: seed of the random input.
        export: also check a TorchScript / ``torch.export`` round trip.

    Returns:
        A :class:`NetCheck`, or a sentence saying why the network does not take a plain tensor.

    Raises:
        InputError: the network fails on the input, or its output's channels, spatial shape or
            dtype differ from the metadata (one line naming ``model.json``).
    """
    import torch

    found = plain_tensor_input(meta)
    if isinstance(found, str):
        return found
    key, shape, dtype = found
    where = model.where
    network = model.load_network(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    sample = torch.rand((1, *shape), generator=generator).to(getattr(torch, dtype))
    try:
        with torch.no_grad():
            output = _tensor(network(sample))
    except Exception as err:  # noqa: BLE001 - report any failure of the forward pass in one line
        raise InputError(f"{where}: expected the network to run on {key!r} of shape {(1, *shape)} "
                         f"({dtype}) from network_data_format, found {_first_line(err)}") from None
    out_key, channels, out_spatial, out_dtype = _expected_output(meta)
    recorded = model.network.get("out_channels")
    if isinstance(recorded, int) and recorded != channels:
        channels = recorded  # the class count follows the training data; model.json records it
    expected = (1, channels, *out_spatial) if out_spatial is not None else None
    if expected is not None and tuple(output.shape) != expected:
        raise InputError(f"{where}: expected output {out_key!r} of shape {expected} for input {(1, *shape)}, "
                         f"found {tuple(output.shape)}")
    if expected is None and (output.ndim < 2 or output.shape[1] != channels):
        raise InputError(f"{where}: expected output {out_key!r} with {channels} channels, found shape {tuple(output.shape)}")
    if str(output.dtype).removeprefix("torch.") != out_dtype:
        raise InputError(f"{where}: expected output {out_key!r} of dtype {out_dtype}, found {output.dtype}")
    run = (f"{model.path.name}: {key} {(1, *shape)} {dtype} -> {out_key} {tuple(output.shape)} "
           f"{str(output.dtype).removeprefix('torch.')}")
    return NetCheck(run=run, export=_export_round_trip(network, sample, output) if export else "export not checked")
