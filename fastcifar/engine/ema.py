"""Exponential moving average of a model's weights (and BN statistics).

Updated with two multi-tensor kernels after a step, never inside the captured graph, and
with a Python-float weight that is a kernel argument: no host read of device values.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of `model` tracking ema = d * ema + (1 - d) * model.

    Called every `every` steps, each update uses d = decay ** every, so the averaging
    horizon in steps does not depend on `every`. With warmup, d is capped at
    (1 + n) / (10 + n) for the n-th update (TensorFlow's num_updates rule), so a short
    run's average is not dominated by the initial weights. Integer buffers (BN's
    num_batches_tracked) are copied.
    """

    def __init__(self, model: nn.Module, decay: float, every: int = 1, warmup: bool = True):
        self.decay = decay
        self.every = every
        self.warmup = warmup
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        source = _state_tensors(model)
        target = _state_tensors(self.model)
        floats = [k for k, t in source.items() if t.is_floating_point()]
        self._src_float = [source[k] for k in floats]
        self._dst_float = [target[k] for k in floats]
        others = [k for k, t in source.items() if not t.is_floating_point()]
        self._src_other = [source[k] for k in others]
        self._dst_other = [target[k] for k in others]

    def maybe_update(self, step: int) -> None:
        """Update after optimizer step `step` (0-based) when it is an update step."""
        if (step + 1) % self.every == 0:
            self.update()

    def current_decay(self) -> float:
        decay = self.decay**self.every
        if self.warmup:
            decay = min(decay, (1 + self.updates) / (10 + self.updates))
        return decay

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self._dst_float, self._src_float, 1.0 - self.current_decay())
        if self._dst_other:  # the foreach kernels refuse empty lists
            torch._foreach_copy_(self._dst_other, self._src_other)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])


def _state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers by name, as live tensors (not detached copies)."""
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    return tensors
