"""One way to export a PyTorch module to ONNX: the served model and the trunk cached for
training go through the same exporter, opset and settings, so they compute the same thing."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

ONNX_OPSET = 17


def export_module(
    module: torch.nn.Module,
    sample: torch.Tensor,
    path: Path,
    *,
    input_name: str,
    output_names: list[str],
) -> None:
    """``module`` (eval mode) traced on ``sample`` into ``path``; the batch axis of the input
    and of every output is dynamic."""
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated (DeprecationWarning) but, unlike the
        # torch.export one, handles these plain CNNs with no extra dependencies or log noise.
        warnings.simplefilter("ignore", DeprecationWarning)
        # EfficientNet's constant "SAME" pads: the exporter reverses their order with a
        # Slice it cannot fold and says so; the graph is correct (parity is checked).
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        torch.onnx.export(
            module,
            (sample,),
            str(path),
            input_names=[input_name],
            output_names=output_names,
            dynamic_axes={name: {0: "batch"} for name in [input_name, *output_names]},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
