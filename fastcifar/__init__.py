"""fastcifar: a data-pipeline-first CIFAR-10/100 trainer.

Importing the package is cheap and has no side effects: torch, numba, triton and the
optional backends are imported where they are used.
"""
from fastcifar.storage import load

__version__ = "0.1.0"
__all__ = ["load", "__version__"]
