"""Image files as CIFAR inputs: decoded to RGB, then resized and cropped to 32x32.

The resize is torchvision's own: transforms.v2.functional.resize(size=32, bilinear,
antialias=True), which scales the shorter side to 32 keeping the aspect ratio, then
center_crop(32): the same pixels as `Compose([Resize(32, antialias=True),
CenterCrop(32)])` gives for the uint8 image. Decoding is Pillow's, with the EXIF
orientation applied (photos from phones come out upright) and any alpha channel dropped.
A 32x32 image passes through unchanged.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from fastcifar.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
RESIZE = "torchvision Resize(32, bilinear, antialias=True) + CenterCrop(32)"
SIZE = 32


def image_paths(arguments) -> list[Path]:
    """The files named, and every image file (by suffix, sorted) in the folders named."""
    paths = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UserError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)})")
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            raise UserError(f"{path}: no such file or folder")
    if not paths:
        raise UserError("give at least one image file or folder")
    return paths


def read_image(path: Path) -> np.ndarray:
    """uint8 [32, 32, 3] RGB: decoded, resized (shorter side to 32) and center-cropped."""
    try:
        with Image.open(path) as image:
            rgb = ImageOps.exif_transpose(image).convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable image ({type(exc).__name__})") from None
    chw = torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)
    resized = TF.resize(chw, [SIZE], interpolation=InterpolationMode.BILINEAR, antialias=True)
    return TF.center_crop(resized, [SIZE, SIZE]).permute(1, 2, 0).contiguous().numpy()
