"""SGD whose learning rate is a tensor on the training device, safe to capture.

torch.optim.SGD in its default foreach mode applies a tensor lr as `alpha=-lr`, which
reads the value on the host: inside a CUDA graph that freezes the lr at its captured
value (or fails). This optimizer always calls the fused SGD kernel with the lr tensor
itself; the CUDA kernel dereferences it on the device, so `lr.fill_(x)` between replays
changes the next update. The same kernel runs on the CPU, so CPU tests exercise the code
path the GPU captures.

Momentum buffers are allocated (as zeros) when the optimizer is built, not on the first
step: the optimizer state exists before any warm-up or capture, and the first update
(buf = 0 * momentum + g = g) equals torch.optim.SGD's (buf = g).

Per-group lr: a group with an "lr_scale" gets its own device lr, computed inside the
step as lr x scale from a device scale tensor (a kernel, so a replayed graph sees both
a new lr and a new scale); `set_lr_scale(name, x)` changes it between steps. airbench94
uses it for the BN lr x64 and to freeze the whitening bias (scale 0) after 3 epochs.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from fastcifar.models import param_groups, whitening_layers


class SGD(torch.optim.Optimizer):
    """SGD with momentum, optional Nesterov and L2 weight decay (dampening 0):

        g = grad + weight_decay * p
        buf = momentum * buf + g
        p -= lr * (g + momentum * buf  if nesterov else  buf)

    `lr` is a one-element float32 tensor on the parameters' device, shared by all groups;
    each group may set its own weight_decay (e.g. 0 for biases and BN), a "name" and an
    "lr_scale" (its lr is then lr x lr_scale).
    """

    def __init__(self, params, lr: Tensor, momentum: float = 0.9, nesterov: bool = False,
                 weight_decay: float = 0.0):
        if not isinstance(lr, Tensor) or lr.numel() != 1 or lr.dtype != torch.float32:
            raise ValueError("lr must be a one-element float32 tensor")
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov needs a momentum above 0")
        defaults = {"momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay}
        super().__init__(params, defaults)
        self.lr = lr
        # Per group: None (the shared lr) or (scale, the group's lr), device tensors whose
        # addresses never change.
        self._scaled_lrs = [
            None if "lr_scale" not in group else
            (torch.full((), float(group["lr_scale"]), dtype=torch.float32, device=lr.device),
             torch.zeros((), dtype=torch.float32, device=lr.device))
            for group in self.param_groups
        ]
        for group in self.param_groups:
            for p in group["params"]:
                if p.device != lr.device:
                    raise ValueError(f"lr is on {lr.device} but a parameter is on {p.device}")
                if group["momentum"] != 0:
                    buf = torch.zeros_like(p, memory_format=torch.preserve_format)
                    self.state[p]["momentum_buffer"] = buf

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("this SGD takes no closure")
        for group, scaled in zip(self.param_groups, self._scaled_lrs):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            lr = self.lr
            if scaled is not None:
                scale, lr = scaled
                torch.mul(self.lr, scale, out=lr)
            momentum = group["momentum"]
            bufs = [self.state[p]["momentum_buffer"] for p in params] if momentum else []
            torch._fused_sgd_(
                params,
                [p.grad for p in params],
                bufs,
                weight_decay=group["weight_decay"],
                momentum=momentum,
                lr=lr,
                dampening=0.0,
                nesterov=group["nesterov"],
                maximize=False,
                is_first_step=False,
            )

    def set_lr_scale(self, name: str, scale: float) -> bool:
        """Set the lr scale of the group called `name`; False if there is none."""
        for group, scaled in zip(self.param_groups, self._scaled_lrs):
            if group.get("name") == name:
                if scaled is None:
                    raise ValueError(f"group {name!r} was built without an lr_scale")
                group["lr_scale"] = float(scale)
                scaled[0].fill_(scale)  # a kernel argument: no host read
                return True
        return False

    def load_state_dict(self, state_dict) -> None:
        """Load into the existing momentum buffers and lr scales, so that their addresses
        do not change (a captured step reads them)."""
        buffers = {p: s["momentum_buffer"] for p, s in self.state.items() if "momentum_buffer" in s}
        built = [{k: group[k] for k in ("name", "lr_scale") if k in group}
                 for group in self.param_groups]
        super().load_state_dict(state_dict)
        for p, buf in buffers.items():
            loaded = self.state[p].get("momentum_buffer")
            if loaded is not None:
                buf.copy_(loaded)
            self.state[p]["momentum_buffer"] = buf
        for group, scaled, keys in zip(self.param_groups, self._scaled_lrs, built):
            for key, value in keys.items():  # older checkpoints saved groups without them
                group.setdefault(key, value)
            if scaled is not None:
                scaled[0].fill_(float(group["lr_scale"]))


def build_optimizer(model: nn.Module, config, lr: Tensor) -> SGD:
    """The run's SGD over build_param_groups's groups."""
    return SGD(build_param_groups(model, config), lr=lr, momentum=config.momentum,
               nesterov=config.nesterov, weight_decay=config.weight_decay)


def build_param_groups(model: nn.Module, config) -> list[dict]:
    """Trainable parameters in named groups (empty ones left out):

    whiten_bias  the whitening stem's bias, with config.whiten_bias_epochs: lr_scale 1,
                 set to 0 from that epoch on (epoch_lr_scales)
    bn           BatchNorm parameters, with config.bn_lr_scale != 1: lr x bn_lr_scale,
                 weight decay / bn_lr_scale (lr x wd stays the other weights')
    decay        the rest, with weight decay; with config.no_decay_bias_bn the 1-D ones
    no_decay     (biases and normalisation weights, the registry's param_groups split)
                 go here, without it (also in bn and whiten_bias)
    """
    taken: set[int] = set()

    def take(params) -> list:
        chosen = [p for p in params if p.requires_grad and id(p) not in taken]
        taken.update(id(p) for p in chosen)
        return chosen

    wd = config.weight_decay
    groups = []
    if config.whiten_bias_epochs is not None:
        biases = take(layer.bias for layer in whitening_layers(model))
        groups.append({"name": "whiten_bias", "params": biases, "lr_scale": 1.0,
                       "weight_decay": 0.0 if config.no_decay_bias_bn else wd})
    if config.bn_lr_scale != 1.0:
        norms = take(p for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                     for p in m.parameters(recurse=False))
        groups.append({"name": "bn", "params": norms, "lr_scale": config.bn_lr_scale,
                       "weight_decay": 0.0 if config.no_decay_bias_bn else wd / config.bn_lr_scale})
    rest = take(model.parameters())
    if config.no_decay_bias_bn:
        kept = {id(p) for p in rest}
        for group in param_groups(model, wd):
            params = [p for p in group["params"] if id(p) in kept]
            groups.append({**group, "params": params,
                           "name": "decay" if group["weight_decay"] else "no_decay"})
    else:
        groups.append({"name": "decay", "params": rest, "weight_decay": wd})
    return [group for group in groups if group["params"]]


def epoch_lr_scales(config, epoch: int) -> dict[str, float]:
    """Group lr scales that change with the epoch (set before epoch `epoch` trains)."""
    if config.whiten_bias_epochs is None:
        return {}
    return {"whiten_bias": 1.0 if epoch < config.whiten_bias_epochs else 0.0}
