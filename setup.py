"""fastcifar: a data-pipeline-first CIFAR-10/100 trainer.

The top-level ``pipelines/`` folder is installed as ``fastcifar.pipelines`` (see
``package_dir``) so the loaders sit beside the package in the source tree and still
import as part of it, in normal and editable installs alike.
"""
from setuptools import find_packages, setup

# safetensors: `fastcifar export --format safetensors` (a 0.5 MB wheel without dependencies;
# the weights format anyone can load without running code from the file).
CORE = ["torch>=2.4", "torchvision", "numpy", "numba", "click>=8", "tqdm", "safetensors>=0.4"]
EXTRAS = {
    "dali": ["nvidia-dali-cuda130==2.4.0"],
    "ffcv": ["ffcv==1.0.2", "opencv-python-headless"],
    "plot": ["matplotlib"],
    "tb": ["tensorboard>=2.16"],
    # `fastcifar export --format onnx`: torch.onnx.export(dynamo=True) needs onnx and
    # onnxscript; onnxruntime runs the exported file to check it (versions tested together).
    "onnx": ["onnx==1.23.2", "onnxscript==0.7.2", "onnxruntime==1.32.0"],
    # airbench: the reference tests/test_airbench_parity.py holds --recipe airbench94 to
    "dev": ["pytest>=7", "matplotlib", "ruff==0.17.6", "airbench==0.1.8"],
}

setup(
    name="fastcifar",
    version="0.1.0",
    description="Data-pipeline-first CIFAR-10/100 training: GPU-resident loaders, "
    "fused augmentation, CUDA-graph-captured steps.",
    python_requires=">=3.10",
    packages=find_packages(include=["fastcifar", "fastcifar.*"]) + ["fastcifar.pipelines"],
    package_dir={"fastcifar.pipelines": "pipelines"},
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["fastcifar = fastcifar.cli:main"]},
)
