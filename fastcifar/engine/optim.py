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
"""
from __future__ import annotations

import torch
from torch import Tensor

from fastcifar.models import param_groups


class SGD(torch.optim.Optimizer):
    """SGD with momentum, optional Nesterov and L2 weight decay (dampening 0):

        g = grad + weight_decay * p
        buf = momentum * buf + g
        p -= lr * (g + momentum * buf  if nesterov else  buf)

    `lr` is a one-element float32 tensor on the parameters' device, shared by all groups;
    each group may set its own weight_decay (e.g. 0 for biases and BN).
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
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            momentum = group["momentum"]
            bufs = [self.state[p]["momentum_buffer"] for p in params] if momentum else []
            torch._fused_sgd_(
                params,
                [p.grad for p in params],
                bufs,
                weight_decay=group["weight_decay"],
                momentum=momentum,
                lr=self.lr,
                dampening=0.0,
                nesterov=group["nesterov"],
                maximize=False,
                is_first_step=False,
            )

    def load_state_dict(self, state_dict) -> None:
        """Load into the existing momentum buffers, so their addresses do not change."""
        buffers = {p: s["momentum_buffer"] for p, s in self.state.items() if "momentum_buffer" in s}
        super().load_state_dict(state_dict)
        for p, buf in buffers.items():
            loaded = self.state[p].get("momentum_buffer")
            if loaded is not None:
                buf.copy_(loaded)
            self.state[p]["momentum_buffer"] = buf


def build_optimizer(model: torch.nn.Module, config, lr: Tensor) -> SGD:
    """The run's SGD; with config.no_decay_bias_bn the groups come from the model
    registry's param_groups (no decay on biases and normalisation weights)."""
    if config.no_decay_bias_bn:
        groups = param_groups(model, config.weight_decay)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": params, "weight_decay": config.weight_decay}]
    return SGD(groups, lr=lr, momentum=config.momentum, nesterov=config.nesterov,
               weight_decay=config.weight_decay)
