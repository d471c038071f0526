"""`fastcifar export`: a run's model as a TorchScript, ONNX or safetensors file.

The model exported is the run's (EMA weights when it used EMA) behind its normalisation
(exported.NormalizedModel), in float32 on the CPU, standard (NCHW) layout, with a dynamic
batch dimension. Each file is checked right after writing, before it takes its name: it
is loaded back (torch.jit.load; onnxruntime; create_model + load_state_dict) and run on
batches of 1 and 7 random images (the export traced a batch of 4, so both prove the batch
dimension is dynamic), and refused when its logits differ from the eager model's by more
than the format's tolerance, relative to the largest eager logit:

  torchscript  1e-5  the same aten kernels, run by the TorchScript interpreter
  onnx         1e-4  onnxruntime's own CPU kernels (measured: 3e-7 on resnet20)
  safetensors  0     the same weights in the same registry model: bit-identical

ONNX goes through torch.onnx.export(dynamo=True), the exporter torch develops (the
TorchScript-based one is deprecated and warns that it will be removed); it needs the
`onnx` extra (onnx, onnxscript, onnxruntime for the check). torch marks TorchScript
itself deprecated too: prefer ONNX or safetensors for new uses.
"""
from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from fastcifar.atomic import atomic_write
from fastcifar.errors import UserError
from fastcifar.extras import require_module
from fastcifar.use import EXPORT_FORMATS
from fastcifar.use.exported import (
    NormalizedModel,
    export_metadata,
    load_safetensors_model,
    require_safetensors,
)
from fastcifar.use.model import open_run
from fastcifar.use.report import check_output_path, written

RELATIVE_TOLERANCE = {"torchscript": 1e-5, "onnx": 1e-4, "safetensors": 0.0}
TRACE_BATCH = 4
CHECK_BATCHES = (1, 7)


@dataclass(frozen=True)
class ExportRequest:
    run_dir: str
    format: str
    out: str
    force: bool = False  # replace an existing file at `out`


def export(request: ExportRequest) -> dict:
    """Write and check the file; returns what was written and how close it came."""
    out = _output_path(request)
    if request.format == "onnx":  # before the slow part, one line if the extra is missing
        for package in ("onnx", "onnxscript", "onnxruntime"):
            require_module(package, "onnx")
    elif request.format == "safetensors":
        require_safetensors()

    run = open_run(request.run_dir, "cpu")
    model = NormalizedModel(run.model.to(memory_format=torch.contiguous_format),
                            run.mean, run.std).eval()
    write, read = FORMATS[request.format]
    data = write(model, export_metadata(run))
    rtol = RELATIVE_TOLERANCE[request.format]
    with written(out), atomic_write(out, "wb") as f:  # takes the name `out` once checked
        f.write(data)
        f.flush()
        difference, scale = _largest_difference(read(Path(f.name)), model)
        if not difference <= rtol * scale:
            raise UserError(
                f"export check failed: the {request.format} file's logits differ from the "
                f"model's by {difference:.3g} (tolerance {rtol * scale:.3g}); nothing was "
                "written")
    return {"format": request.format, "path": str(out), "bytes": out.stat().st_size,
            "model": run.config.model, "weights": run.weights, "epoch": run.epoch,
            "batch": run.batch,
            "check_batches": list(CHECK_BATCHES), "max_abs_difference": difference,
            "max_abs_logit": scale, "relative_tolerance": rtol}


def _output_path(request: ExportRequest) -> Path:
    if request.format not in EXPORT_FORMATS:
        raise UserError(f"unknown export format {request.format!r}; choose from: "
                        f"{', '.join(EXPORT_FORMATS)}")
    out = Path(request.out)
    check_output_path(str(out), "--out")  # a folder, no such folder, not writable
    if out.exists() and not request.force:
        raise UserError(f"{out} exists; pass --force to replace it")
    return out


@torch.no_grad()
def _largest_difference(exported, model) -> tuple[float, float]:
    """(max |exported - eager| logit, max |eager| logit) over random [0, 1] batches of the
    CHECK_BATCHES sizes; inf when the exported model gives another shape."""
    generator = torch.Generator().manual_seed(0)
    difference, scale = 0.0, 0.0
    for size in CHECK_BATCHES:
        images = torch.rand(size, 3, 32, 32, generator=generator)
        expected, got = model(images), exported(images)
        if got.shape != expected.shape:
            return float("inf"), expected.abs().max().item()
        difference = max(difference, (got - expected).abs().max().item())
        scale = max(scale, expected.abs().max().item())
    return difference, scale


def _example_batch() -> torch.Tensor:
    return torch.rand(TRACE_BATCH, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _write_torchscript(model, metadata: dict) -> bytes:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*torch\.jit.*deprecated", FutureWarning)
        traced = torch.jit.trace(model, _example_batch(), check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={"fastcifar.json": json.dumps(metadata)})
    return buffer.getvalue()


def _read_torchscript(path: Path):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*torch\.jit.*deprecated", FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu")
    return module


def _write_onnx(model, metadata: dict) -> bytes:
    batch = torch.export.Dim("batch")
    program = torch.onnx.export(model, (_example_batch(),), dynamo=True,
                                dynamic_shapes=({0: batch},), input_names=["images"],
                                output_names=["logits"], verbose=False)
    program.model.metadata_props.update(metadata)
    return program.model_proto.SerializeToString()


def _read_onnx(path: Path):
    onnxruntime = require_module("onnxruntime", "onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: torch.from_numpy(session.run(None, {"images": images.numpy()})[0])


def _write_safetensors(model, metadata: dict) -> bytes:
    # safetensors stores contiguous tensors: the registry model's own weights, no wrapper
    state = {k: v.detach().contiguous() for k, v in model.model.state_dict().items()}
    return require_safetensors().torch.save(state, metadata=metadata)


FORMATS = {
    "torchscript": (_write_torchscript, _read_torchscript),
    "onnx": (_write_onnx, _read_onnx),
    "safetensors": (_write_safetensors, load_safetensors_model),
}
