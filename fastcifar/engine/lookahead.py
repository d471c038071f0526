"""airbench's lookahead: every few steps the weights are pulled back towards a slow copy.

After every `every`-th optimizer step n (n steps done), with N the run's steps,

    d = decay ** every * (n / N) ** 3
    slow = d * slow + (1 - d) * model      (every float parameter and buffer)
    model = slow

and after the last step the model takes the slow copy once more (airbench's final
`update(decay=1.0)`). Early on d is near 0 and the slow copy follows the model; towards
the end it averages over the last few hundred steps. Unlike EMA (ema.py), the model
itself is reset to the average, so training continues from it.

Like EMA, the update is two multi-tensor kernels outside the captured step, with d a
Python float kernel argument: no host read, and copies land in the parameters' own
storage, which a captured graph keeps reading.
"""
from __future__ import annotations

import torch
from torch import nn


class Lookahead:
    def __init__(self, model: nn.Module, *, total_steps: int, decay: float = 0.95,
                 every: int = 5):
        self.total_steps = total_steps
        self.decay = decay
        self.every = every
        state = dict(model.named_parameters())
        state.update(model.named_buffers())
        # airbench averages every float tensor of the state dict (BN statistics too).
        self._names = [name for name, tensor in state.items() if tensor.is_floating_point()]
        self._live = [state[name] for name in self._names]
        self._slow = [tensor.detach().clone() for tensor in self._live]

    def decay_at(self, steps_done: int) -> float:
        return self.decay ** self.every * (steps_done / self.total_steps) ** 3

    @torch.no_grad()
    def maybe_update(self, steps_done: int) -> None:
        """Call after each optimizer step, with the number of steps done so far."""
        if steps_done % self.every == 0:
            self.update(self.decay_at(steps_done))
        if steps_done == self.total_steps:
            self.update(1.0)

    @torch.no_grad()
    def update(self, decay: float) -> None:
        torch._foreach_lerp_(self._slow, self._live, 1.0 - decay)
        torch._foreach_copy_(self._live, self._slow)

    def state_dict(self) -> dict:
        return dict(zip(self._names, self._slow))

    def load_state_dict(self, state: dict) -> None:
        missing = set(self._names) - set(state)
        if missing:
            raise KeyError(f"lookahead state lacks {sorted(missing)[0]!r}")
        with torch.no_grad():
            for name, slow in zip(self._names, self._slow):
                slow.copy_(state[name])
