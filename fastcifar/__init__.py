"""fastcifar: a data-pipeline-first CIFAR-10/100 trainer.

Importing the package is cheap and has no side effects: torch, numba, triton and the
optional backends are imported where they are used.
"""
__version__ = "0.1.0"
__all__ = ["load", "load_model", "__version__"]


def __getattr__(name):
    # fastcifar.load (fastcifar/storage.py) is looked up on first use: it brings numpy,
    # which `fastcifar --help` does not need.
    if name == "load":
        from fastcifar.storage import load

        return load
    raise AttributeError(f"module 'fastcifar' has no attribute {name!r}")


def load_model(run_dir, device="cpu"):
    """The trained model of a run directory: a plain torch nn.Module in eval mode (EMA
    weights when the run used EMA), with class_names, normalization, model_name and
    dataset attached. See fastcifar/use/model.py."""
    # Imported on call: it loads torch, which `import fastcifar` does not.
    from fastcifar.use.model import load_model as load_run_model

    return load_run_model(run_dir, device)
