"""Optional packages: one place that imports them or says, in one line, how to install them.

Core dependencies (torch, numpy, numba, click, tqdm) are imported at the top of the
modules that use them. Packages that only some features need (ffcv, nvidia.dali, triton
on machines without it, matplotlib, onnxruntime, tensorboard) are imported through
`require_module`, at the point of use, so that `import fastcifar` and every command that
does not need them work without them.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from fastcifar.errors import MissingExtraError


def has_module(import_name: str) -> bool:
    """Whether `import_name` can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec(import_name) is not None
    except (ModuleNotFoundError, ValueError):  # a dotted name whose parent is missing
        return False


def require_module(import_name: str, extra: str | None,
                   package: str | None = None) -> ModuleType:
    """Import `import_name`, or raise MissingExtraError naming `pip install 'fastcifar[extra]'`
    (or `pip install <package>` when extra is None)."""
    try:
        return importlib.import_module(import_name)
    except ImportError:
        raise MissingExtraError(package or import_name.split(".")[0], extra) from None
