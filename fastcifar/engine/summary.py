"""summary.json: what a finished run reports, and the checksum that proves ranks agree."""
from __future__ import annotations

import hashlib

import torch

from fastcifar.models import count_params


def summarize(config, history: list[dict], model) -> dict:
    last = history[-1]
    best = max(history, key=lambda r: r["test_acc"])
    train_seconds = sum(r["epoch_seconds"] for r in history)
    images = sum(r["images_per_sec"] * r["epoch_seconds"] for r in history)
    return {
        "model": config.model,
        "dataset": config.dataset,
        "recipe": config.recipe,
        "epochs": last["epoch"],
        "steps": last["step"],
        "test_acc": last["test_acc"],
        "test_loss": last["test_loss"],
        "train_acc": last["train_acc"],
        "train_loss": last["train_loss"],
        "best_test_acc": best["test_acc"],
        "best_epoch": best["epoch"],
        "train_seconds": train_seconds,
        "images_per_sec": images / max(train_seconds, 1e-9),
        "params": count_params(model),
        "device": config.device,
        "world_size": config.world_size,
        "dtype": config.dtype,
        "global_batch_size": config.batch_size,
        "peak_lr": config.peak_lr,
    }


def state_checksum(model) -> str:
    """sha256 of every parameter and buffer (layout-independent): equal across ranks
    exactly when their models are bit-identical."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
