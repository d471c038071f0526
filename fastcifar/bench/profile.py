"""Where a training step's time goes: the trainer's step under torch.profiler, by layer kind.

    python -m fastcifar.bench.profile --model resnext29_16x64d --device cuda \
        --batch-size 128 --json OUT/profile.json --markdown OUT/profile.md

The step is the one `fastcifar train` runs (bench.training.build_step), eager, so that
every device kernel has the aten op that launched it, with that op's shapes (a captured
graph replays kernels with no op around them; its kernels are the same ones). Each
kernel's time goes to the nearest enclosing op that has a kind: convolutions by their
weight (3x3 grouped, 3x3, 1x1, other) and direction (forward; backward split into dgrad
and wgrad by the cuDNN kernel's name where it says, else one "backward" row), batch norm,
activations and adds, the loss, the optimizer step; the rest is "other". On the CPU the
ops' own CPU time stands in for kernel time (what tests check). An op inside another
op with a kind belongs to the outer one (batch norm's own adds stay batch norm's).

FLOPs come from the convolution shapes (multiply-add = 2; dgrad and wgrad each cost
what the forward costs), so each convolution row has its achieved TFLOP/s; the other rows
get an approximate GB/s (the op's inputs read, one output of its first input's size
written).
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch.profiler import ProfilerActivity, profile

from fastcifar.bench.report import write_json
from fastcifar.bench.training import build_step, kernel_settings_restored, train_config

CONV_OPS = ("aten::convolution", "aten::convolution_backward")
NORM_OPS = ("aten::batch_norm", "aten::native_batch_norm_backward",
            "aten::cudnn_batch_norm_backward", "aten::miopen_batch_norm_backward")
ACTIVATION_OPS = ("aten::relu", "aten::relu_", "aten::threshold_backward", "aten::gelu",
                  "aten::gelu_backward", "aten::add", "aten::add_", "aten::max_pool2d",
                  "aten::max_pool2d_with_indices_backward", "aten::adaptive_avg_pool2d",
                  "aten::mean")
LOSS_OPS = ("aten::cross_entropy_loss", "aten::_log_softmax_backward_data",
            "aten::nll_loss_backward")
OPTIMIZER_OPS = ("aten::_fused_sgd_",)
OPTIMIZER_ANNOTATIONS = ("Optimizer.step", "Optimizer.zero_grad")  # torch's record_function


@dataclass
class KindTotals:
    seconds: float = 0.0
    flops: float = 0.0
    bytes: float = 0.0
    calls: int = 0
    shapes: set = field(default_factory=set)


def conv_kind(weight_shape, in_channels: int) -> str:
    """'conv 3x3 grouped' | 'conv 3x3' | 'conv 1x1' | 'conv other' from [Cout, Cin/g, kh, kw]."""
    _, per_group, kh, kw = weight_shape
    groups = in_channels // per_group if per_group else 1
    if (kh, kw) == (3, 3):
        return "conv 3x3 grouped" if groups > 1 else "conv 3x3"
    return "conv 1x1" if (kh, kw) == (1, 1) else "conv other"


def conv_forward_flops(input_shape, weight_shape, stride, padding, dilation) -> float:
    """2 x N x Cout x Hout x Wout x (Cin / groups) x kh x kw."""
    n, _, h, w = input_shape
    c_out, per_group, kh, kw = weight_shape
    h_out = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    w_out = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return 2.0 * n * c_out * h_out * w_out * per_group * kh * kw


def _conv_row(event) -> tuple[str, float, str]:
    """(kind, forward FLOPs, shape label) of a convolution or convolution_backward event."""
    shapes, args = event.input_shapes, event.concrete_inputs
    if event.name == "aten::convolution":  # input, weight, bias, stride, padding, dilation
        x, weight = shapes[0], shapes[1]
        stride, padding, dilation = args[3], args[4], args[5]
    else:  # grad_output, input, weight, bias_sizes, stride, padding, dilation, ...
        x, weight = shapes[1], shapes[2]
        stride, padding, dilation = args[4], args[5], args[6]
    flops = conv_forward_flops(x, weight, stride, padding, dilation)
    return conv_kind(weight, x[1]), flops, f"{list(x)}*{list(weight)}/s{stride[0]}"


def _kind_of(event) -> str | None:
    name = event.name
    if name in CONV_OPS:
        return _conv_row(event)[0] + (" fwd" if name == "aten::convolution" else " bwd")
    if name in NORM_OPS:
        return "batchnorm"
    if name in ACTIVATION_OPS:
        return "activation/add/pool"
    if name in LOSS_OPS:
        return "loss"
    if name in OPTIMIZER_OPS or name.startswith(OPTIMIZER_ANNOTATIONS):
        return "optimizer"
    return None


def _owner(event):
    """The outermost event (itself or an ancestor) that has a kind, or None: an add_
    inside batch norm is batch norm's, one inside the optimizer step is the optimizer's."""
    owner = None
    while event is not None:
        if _kind_of(event) is not None:
            owner = event
        event = event.cpu_parent
    return owner


def _tensor_bytes(event) -> float:
    sizes = {"float": 4, "c10::BFloat16": 2, "c10::Half": 2, "double": 8, "long int": 8,
             "int": 4}
    total = 0.0
    for shape, dtype in zip(event.input_shapes, event.input_dtypes):
        if shape and dtype in sizes:
            count = 1
            for dim in shape:
                count *= dim
            total += count * sizes[dtype]
    first = next((s for s in event.input_shapes if s), None)
    if first is not None and event.input_dtypes and event.input_dtypes[0] in sizes:
        count = 1
        for dim in first:
            count *= dim
        total += count * sizes[event.input_dtypes[0]]  # the output it writes
    return total


def group_by_kind(events, device_type: str, steps: int) -> dict[str, KindTotals]:
    """Per kind: seconds per step, FLOPs per step, bytes per step, calls per step."""
    totals: dict[str, KindTotals] = defaultdict(KindTotals)
    counted = set()
    for event in events:
        if device_type == "cuda":
            pieces = [(kernel.name, kernel.duration / 1e6) for kernel in event.kernels]
        else:
            pieces = [("", event.self_cpu_time_total / 1e6)]
        owner = _owner(event)
        kind = _kind_of(owner) if owner is not None else "other"
        for kernel_name, seconds in pieces:
            row = kind
            if kind.endswith(" bwd") and ("dgrad" in kernel_name or "wgrad" in kernel_name):
                row = kind[:-3] + ("dgrad" if "dgrad" in kernel_name else "wgrad")
            totals[row].seconds += seconds / steps
        if owner is None or id(owner) in counted:
            continue
        counted.add(id(owner))
        total = totals[kind]
        total.calls += 1
        if owner.name in CONV_OPS:
            _, flops, label = _conv_row(owner)
            mask = owner.concrete_inputs[-1] if owner.name != "aten::convolution" else None
            directions = 1 if mask is None else int(bool(mask[0])) + int(bool(mask[1]))
            total.flops += flops * directions / steps
            total.shapes.add(label)
        else:
            total.bytes += _tensor_bytes(owner) / steps
    for kind in list(totals):  # dgrad/wgrad rows share their op's FLOPs half and half
        if kind.endswith((" dgrad", " wgrad")):
            base = totals[kind[:-6] + " bwd"]
            totals[kind].flops = base.flops / 2
            totals[kind].shapes = base.shapes
    for kind in [k for k in totals if k.endswith(" bwd")]:
        if totals[kind].seconds == 0 and (kind[:-4] + " dgrad") in totals:
            del totals[kind]
    for total in totals.values():
        total.calls = round(total.calls / steps)
    return dict(totals)


def profile_step(model: str, *, device: str = "cuda", batch_size: int = 128,
                 dtype: str | None = None, dataset: str = "cifar10", steps: int = 5,
                 warmup: int = 3) -> dict:
    """Profile `steps` eager training steps of `model` after `warmup`; returns the table."""
    options = {"batch_size": batch_size, "graph": False, "channels_last": True}
    if dtype:
        options["dtype"] = dtype
    config = train_config(model, dataset, device, **options)
    device_type = torch.device(config.device).type
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device_type == "cuda"
                                           else [])
    with kernel_settings_restored():
        built = build_step(config)

        def run():
            built.runner(built.buffers.images, built.buffers.targets)

        for _ in range(warmup):
            run()
        if device_type == "cuda":
            torch.cuda.synchronize()
        with profile(activities=activities, record_shapes=True) as prof:
            for _ in range(steps):
                run()
            if device_type == "cuda":
                torch.cuda.synchronize()
        events = prof.events()
    kinds = group_by_kind(events, device_type, steps)
    step_seconds = sum(k.seconds for k in kinds.values())
    rows = []
    for kind, total in sorted(kinds.items(), key=lambda item: -item[1].seconds):
        row = {"kind": kind, "ms_per_step": 1e3 * total.seconds,
               "share": total.seconds / step_seconds if step_seconds else 0.0,
               "calls_per_step": total.calls}
        if total.flops:
            row["gflop_per_step"] = total.flops / 1e9
            row["tflops"] = total.flops / total.seconds / 1e12 if total.seconds else None
            row["shapes"] = sorted(total.shapes)[:6]
        elif total.bytes:
            row["gb_per_s"] = total.bytes / total.seconds / 1e9 if total.seconds else None
        rows.append(row)
    return {"model": model, "device": device_type, "dtype": config.dtype,
            "batch_size": config.per_rank_batch_size, "steps": steps,
            "ms_per_step": 1e3 * step_seconds,
            "images_per_sec": config.per_rank_batch_size / step_seconds if step_seconds else 0,
            "time_source": "device kernels" if device_type == "cuda" else "CPU op self time",
            "rows": rows}


def format_markdown(report: dict) -> str:
    lines = [f"{report['model']}, {report['device']} {report['dtype']}, batch "
             f"{report['batch_size']}: {report['ms_per_step']:.2f} ms per step "
             f"({report['time_source']}, eager, {report['steps']} steps)", "",
             "| kind | ms/step | share | calls | GFLOP/step | TFLOP/s | GB/s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in report["rows"]:
        lines.append(f"| {row['kind']} | {row['ms_per_step']:.3f} | {100 * row['share']:.1f}% "
                     f"| {row['calls_per_step']} | {_cell(row, 'gflop_per_step', '.1f')} | "
                     f"{_cell(row, 'tflops', '.1f')} | {_cell(row, 'gb_per_s', '.0f')} |")
    return "\n".join(lines) + "\n"


def _cell(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    return format(value, fmt) if value is not None else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastcifar.bench.profile",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnext29_16x64d")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--dtype", choices=("bf16", "fp32", "fp16"))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--markdown")
    args = parser.parse_args(argv)
    report = profile_step(args.model, device=args.device, batch_size=args.batch_size,
                          dtype=args.dtype, steps=args.steps)
    table = format_markdown(report)
    print(table)
    if args.json_path:
        write_json(args.json_path, report)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
