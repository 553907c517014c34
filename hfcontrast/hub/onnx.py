"""ONNX export of an encoder's backbone with torch's exporter, and int8 dynamic quantisation with onnxruntime.

``onnx/model.onnx`` holds the backbone of the standard folder (text: ``input_ids``, ``attention_mask``,
``token_type_ids`` -> ``last_hidden_state``, the layout sentence-transformers' ONNX backend reads, with the pooling,
head and normalisation left to its modules; images: ``pixel_values`` -> ``last_hidden_state``, ``pooler_output``),
dynamic in batch and length. ``quantize="int8"`` adds ``onnx/model_qint8.onnx``: weights in int8, activations
quantised on the fly (``onnxruntime.quantization.quantize_dynamic``). Needs ``pip install 'hfcontrast[onnx]'``.

sentence-transformers loads such a folder with ``backend="onnx"`` through optimum, whose releases on PyPI (optimum-onnx
0.1.0) require transformers < 4.58: with the transformers 5 that hfcontrast needs, that loader cannot be installed, so
the files are read with onnxruntime directly (``docs/publishing.md``).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

ONNX_DIR = "onnx"
ONNX_MODEL = "model.onnx"
QUANTIZED_MODEL = "model_qint8.onnx"


class _Outputs(nn.Module):
    """The backbone's outputs as a tuple (what the exporter traces)."""

    def __init__(self, backbone: nn.Module, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.backbone, self.inputs, self.outputs = backbone, inputs, outputs

    def forward(self, *values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        result = self.backbone(**dict(zip(self.inputs, values, strict=True)), return_dict=True)
        return tuple(getattr(result, name) for name in self.outputs)


def export_onnx(model: Any, output_dir: str, processing_class: Any = None, *, quantize: str | None = None) -> list[str]:
    """Write ``onnx/model.onnx`` (and ``onnx/model_qint8.onnx`` with ``quantize="int8"``) for a text or image
    encoder; returns the written paths."""
    kind = getattr(model.config, "model_type", None)
    backbone = model.backbone
    names: tuple[str, ...]
    outputs: tuple[str, ...]
    if kind == "hfcontrast-text":
        vocab = int(backbone.config.vocab_size)
        ids = torch.randint(5, max(6, vocab - 1), (2, 8))
        inputs: tuple[torch.Tensor, ...] = (ids, torch.ones_like(ids), torch.zeros_like(ids))
        names, outputs = ("input_ids", "attention_mask", "token_type_ids"), ("last_hidden_state",)
        dims: dict[int, Any] = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence", min=2)}
        shapes: tuple[Any, ...] = (dims,) * 3
    elif kind == "hfcontrast-vision":
        size = int(getattr(backbone.config, "image_size", 32) or 32)
        inputs = (torch.rand(2, int(getattr(backbone.config, "num_channels", 3)), size, size),)
        names, outputs = ("pixel_values",), ("last_hidden_state", "pooler_output")
        shapes = ({0: torch.export.Dim("batch")},)
    else:
        raise ValueError(f"ONNX export covers text and image encoders, not {type(model).__name__}")
    folder = os.path.join(output_dir, ONNX_DIR)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, ONNX_MODEL)
    wrapper = _Outputs(backbone, names, outputs).eval()
    device = next(backbone.parameters()).device
    with torch.no_grad():
        torch.onnx.export(wrapper, tuple(x.to(device) for x in inputs), path, input_names=list(names),
                          output_names=list(outputs), dynamic_shapes=(shapes,), dynamo=True, external_data=False)  # fmt: skip
    written = [path]
    if quantize == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = os.path.join(folder, QUANTIZED_MODEL)
        quantize_dynamic(path, quantized, weight_type=QuantType.QInt8)
        written.append(quantized)
    elif quantize is not None:
        raise ValueError(f"quantize must be 'int8' or None, got {quantize!r}")
    return written


class OnnxBackbone(nn.Module):
    """A text backbone that runs an ONNX file with onnxruntime (CPU) and answers like the torch one."""

    def __init__(self, path: str, config: Any) -> None:
        super().__init__()
        import onnxruntime

        self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.config, self.names = config, {i.name for i in self.session.get_inputs()}
        self.device_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)  # model.device: the CPU, where it runs

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> Any:
        from transformers.modeling_outputs import BaseModelOutput

        if attention_mask.dim() == 4:  # the prepared SDPA mask: back to the 2-D one the file takes
            attention_mask = attention_mask[:, 0, 0, :]
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask.long(),
                 "token_type_ids": kwargs.get("token_type_ids", torch.zeros_like(input_ids))}  # fmt: skip
        arrays = {name: value.cpu().numpy() for name, value in feeds.items() if name in self.names}
        (hidden,) = self.session.run(["last_hidden_state"], arrays)
        return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden))


def load_onnx_text_model(folder: str, file: str = QUANTIZED_MODEL) -> Any:
    """The standard text folder's model (pooling, head, normalisation: ``ContrastiveTextModel.from_pretrained``)
    with its backbone replaced by ``onnx/<file>`` under onnxruntime: the ONNX (or int8) model's embeddings, for an
    evaluation of what the export serves."""
    from ..models import ContrastiveTextModel

    model = ContrastiveTextModel.from_pretrained(folder).eval()
    model.backbone = OnnxBackbone(os.path.join(folder, ONNX_DIR, file), model.backbone.config)
    return model
