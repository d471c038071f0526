"""The training engine behind `fastcifar train`.

    from fastcifar.engine import resolve_config, train
    config = resolve_config({"model": "resnet20", "dataset": "cifar10", "epochs": 30})
    summary = train(config)      # writes RUNDIR/config.json, metrics.jsonl, checkpoint.pt,
                                 # summary.json; returns the summary

Modules: config (TrainConfig, resolve_config), recipes (named defaults), schedule (lr as
a pure function of the step), optim (SGD with a device-tensor lr), step (the train step
over static buffers; eager and CUDA-graph runners), evaluate, ema, checkpoint, dist
(process groups and local launch), build (model/loaders/wrapping), progress, run_dir,
loop (the epochs). Importing this package does not import torch.
"""
from fastcifar.engine.config import TrainConfig, resolve_config
from fastcifar.engine.recipes import RECIPES, Recipe


def train(config: TrainConfig) -> dict:
    """Run training as `config` says; see fastcifar.engine.loop.train."""
    from fastcifar.engine.loop import train as run

    return run(config)


__all__ = ["RECIPES", "Recipe", "TrainConfig", "resolve_config", "train"]
