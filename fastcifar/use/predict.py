"""`fastcifar predict`: the top classes of image files with their probabilities.

The images go through images.read_image (decode, resize, crop to 32x32) and then the
same path as a test set held in memory (inference.array_loader: the loader's
normalisation, the run's dtype, layout and TTA), so a saved test image gets exactly the
prediction the model makes on those pixels in `fastcifar eval`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fastcifar.errors import UserError
from fastcifar.use.images import RESIZE, image_paths, read_image
from fastcifar.use.inference import InferenceSettings, array_loader, iter_logits
from fastcifar.use.model import open_run


@dataclass(frozen=True)
class PredictRequest:
    run_dir: str
    paths: tuple[str, ...]  # image files and folders of them
    top_k: int = 3
    tta: int | None = None  # level; None: the run's choice
    device: str = "auto"
    dtype: str | None = None
    batch_size: int | None = None
    progress: bool | None = False  # None: when stderr is a terminal


def predict(request: PredictRequest) -> dict:
    """{"run", "model", "tta", "resize", "predictions": [{"file", "top": [{"class",
    "index", "probability"}, ...]}, ...]} with predictions in the order of the files."""
    if request.top_k < 1:
        raise UserError(f"--top-k must be at least 1, got {request.top_k}")
    files = image_paths(request.paths)
    images = np.stack([read_image(path) for path in files])  # every file checked first
    run = open_run(request.run_dir, request.device)
    settings = InferenceSettings.for_run(run, dtype=request.dtype, tta=request.tta,
                                         batch_size=request.batch_size,
                                         progress=request.progress)
    loader = array_loader(run, settings, images, np.zeros(len(files), dtype=np.int64))
    probabilities = torch.cat([logits.softmax(dim=1) for logits, _ in
                               iter_logits(run.model, loader, settings, "predict")]).cpu()
    values, indices = probabilities.topk(min(request.top_k, run.num_classes), dim=1)
    predictions = [
        {"file": str(path),
         "top": [{"class": run.class_names[i], "index": i, "probability": p}
                 for i, p in zip(row_indices.tolist(), row_values.tolist())]}
        for path, row_values, row_indices in zip(files, values, indices)
    ]
    return {"run": str(run.run_dir), "model": run.config.model, "tta": settings.tta,
            "dtype": settings.dtype, "resize": RESIZE, "predictions": predictions}
