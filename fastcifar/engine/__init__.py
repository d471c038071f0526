"""The training engine behind `fastcifar train`.

    from fastcifar.engine.resolve import resolve_config
    from fastcifar.engine.loop import train
    config = resolve_config({"model": "resnet20", "dataset": "cifar10", "epochs": 30})
    summary = train(config)      # writes RUNDIR/config.json, metrics.jsonl, checkpoint.pt,
                                 # summary.json; returns the summary

Modules: config (the TrainConfig schema), migrate (reading older run files), resolve
(recipe + flags + resume -> TrainConfig), runtime (device, dtype, graph, torchrun env),
recipes (named defaults), schedule (lr as a pure function of the step), optim (SGD with a
device-tensor lr and per-group lr scales), step (the train step over static buffers;
eager and CUDA-graph runners), evaluate (with TTA levels), ema, lookahead (airbench's),
checkpoint (the file), resume (what a trainer saves and gets back, mid-epoch included),
dist (process groups), workers (local multi-process launch), torchrun (runs started by
torchrun), signals (SIGTERM/SIGINT), checks (the agreed stop/divergence check), build
(model/loaders/wrapping and the data-dependent init), progress, run_dir, summary, loop
(the epochs).

This package file imports nothing, so the CLI can read recipes and schedules (plain
data) without loading torch.
"""
