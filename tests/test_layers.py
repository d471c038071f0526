"""Layers point one way: data -> augment -> models -> pipelines -> engine -> use -> bench ->
cli.

Each layer's modules are imported in a fresh interpreter, which must then hold no module
of a higher layer. Every module of the package belongs to a layer by its name: a new
subpackage must be placed in LAYERS (or it counts as the data layer, the strictest).
"""
from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import fastcifar
import fastcifar.pipelines

pytestmark = pytest.mark.slow  # processes that start torch: seconds each

# (layer, module-name prefixes), lowest first; a module takes the first layer that matches.
LAYERS = (
    ("cli", ("fastcifar.cli", "fastcifar.__main__")),
    ("bench", ("fastcifar.bench",)),
    ("experiments", ("fastcifar.experiments",)),
    ("use", ("fastcifar.use",)),
    ("engine", ("fastcifar.engine",)),
    ("pipelines", ("fastcifar.pipelines",)),
    ("models", ("fastcifar.models",)),
    ("augment", ("fastcifar.augment",)),
    ("data", ("fastcifar",)),
)
ORDER = [name for name, _ in reversed(LAYERS)]
# Optional packages: imported where a feature needs them, never on import. (Not triton:
# torch's own flop counter imports it where it is installed.)
OPTIONAL = ("ffcv", "nvidia.dali", "matplotlib", "tensorboard", "onnx", "onnxscript",
            "onnxruntime", "safetensors")


def layer_of(module: str) -> str:
    for name, prefixes in LAYERS:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return name
    raise AssertionError(module)


def all_modules() -> list[str]:
    # fastcifar.pipelines lives in the top-level pipelines/ folder (setup.py's package_dir),
    # so it is walked on its own.
    names = ["fastcifar", "fastcifar.pipelines"]
    for package in (fastcifar, fastcifar.pipelines):
        prefix = package.__name__ + "."
        names += [info.name for info in pkgutil.walk_packages(package.__path__, prefix)]
    return sorted(set(names))


def loaded_after_importing(modules: list[str]) -> list[str]:
    code = ("import importlib, json, sys\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            "print(json.dumps(sorted(sys.modules)))")
    env = {**os.environ, "PYTHONPATH": str(Path(fastcifar.__file__).parents[1])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("layer", ORDER)
def test_a_layer_imports_nothing_above_it(layer):
    modules = [m for m in all_modules() if layer_of(m) == layer]
    assert modules
    loaded = loaded_after_importing(modules)
    higher = ORDER[ORDER.index(layer) + 1:]
    above = [m for m in loaded if m.startswith("fastcifar") and layer_of(m) in higher]
    assert not above, f"{layer} imports higher layers: {above}"
    optional = [m for m in OPTIONAL if m in loaded]
    assert not optional, f"{layer} imports optional packages at import time: {optional}"
    if layer == "data":  # `fastcifar prepare` and `import fastcifar` stay torch-free
        assert "torch" not in loaded


def test_the_package_and_the_cli_import_without_torch():
    loaded = loaded_after_importing(["fastcifar", "fastcifar.cli"])
    assert not [m for m in ("torch", "numba", "triton") + OPTIONAL if m in loaded]
