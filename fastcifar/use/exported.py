"""What `fastcifar export` writes, and reading it back.

Every exported model takes float32 RGB images [N, 3, 32, 32] with values in [0, 1] (a
uint8 image divided by 255), for any N, and returns logits [N, K]. It normalises by
itself: NormalizedModel holds the training set's mean and std as buffers and computes
(x - mean) / std before the network, in float32 (the trainer's loader takes the same
values from a float64 lookup table rounded once: the inputs agree to about 1e-7).

Metadata in each file (TorchScript: the extra file fastcifar.json; ONNX: metadata_props;
safetensors: the header's __metadata__), all strings: model, dataset, num_classes,
class_names, mean and std (JSON lists), weights (ema or model), epoch and input.
"""
from __future__ import annotations

import json
import os

import torch
from torch import nn

from fastcifar.errors import UserError
from fastcifar.extras import require_module
from fastcifar.models import create_model

INPUT = "float32 RGB [N, 3, 32, 32] in [0, 1]; the model normalises by itself"
METADATA_KEYS = ("model", "dataset", "num_classes", "class_names", "mean", "std", "weights",
                 "epoch", "input")


class NormalizedModel(nn.Module):
    """A classifier that takes [0, 1] RGB images and normalises them itself."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images - self.mean) / self.std)


def require_safetensors():
    """The safetensors package. A core dependency, imported on use all the same: an install
    made with --no-deps (a GPU machine without a package index) may lack it, and only
    export needs it."""
    require_module("safetensors.torch", None, package="safetensors")
    return require_module("safetensors", None)


def export_metadata(run) -> dict[str, str]:
    return {
        "model": run.config.model,
        "dataset": run.config.dataset,
        "num_classes": str(run.num_classes),
        "class_names": json.dumps(run.class_names),
        "mean": json.dumps(list(run.mean)),
        "std": json.dumps(list(run.std)),
        "weights": run.weights,
        "epoch": str(run.epoch),
        "batch": str(run.batch),
        "input": INPUT,
    }


def load_safetensors_model(path: str | os.PathLike) -> NormalizedModel:
    """An exported .safetensors file as a NormalizedModel in eval mode: the registry model
    its metadata names, with its weights, behind its normalisation; class_names attached."""
    safetensors = require_safetensors()
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        state = safetensors.torch.load_file(str(path))
    except (safetensors.SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable safetensors file ({exc})") from None
    missing = [k for k in METADATA_KEYS if k not in metadata]
    if missing:
        raise UserError(f"{path}: not written by fastcifar export (metadata lacks "
                        f"{', '.join(missing)})")
    model = create_model(metadata["model"], num_classes=int(metadata["num_classes"]))
    model.load_state_dict(state)
    wrapped = NormalizedModel(model, json.loads(metadata["mean"]), json.loads(metadata["std"]))
    wrapped.class_names = json.loads(metadata["class_names"])
    return wrapped.eval()
