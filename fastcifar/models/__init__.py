"""The model zoo: plain nn.Modules registered by name.

    model = create_model("resnext29_16x64d", num_classes=100, zero_init_residual=True)
"""
# Importing the family modules registers their models.
from . import (  # noqa: F401
    airbench,
    fast_nets,
    preact_resnet,
    resnet50_cifar,
    resnet_cifar,
    resnext,
    wide_resnet,
)
from .counting import count_flops, count_params, format_model_table, model_info, param_groups
from .layers import DropPath
from .registry import create_model, get_builder, list_models, model_options, register_model
from .whitening import init_whitening, whitening_layers

__all__ = [
    "DropPath",
    "count_flops",
    "count_params",
    "create_model",
    "format_model_table",
    "get_builder",
    "init_whitening",
    "list_models",
    "model_info",
    "model_options",
    "param_groups",
    "register_model",
    "whitening_layers",
]
