"""Per-sample policy draws on the device: each step of each sample as one entry.

    entries = sample_policy(config, batch_size, generator, device)   # int32 [B, steps]

An entry packs (op, magnitude bin, negated) as policy_space.py describes; entry 0 is a
step that does nothing. Draws follow torchvision's per-image rules: AutoAugment picks a
sub-policy uniformly and applies each of its two steps when a uniform draw is <= the
step's probability; RandAugment picks each of its N ops uniformly at bin M; TrivialAugment
picks one op and one bin uniformly; a signed op's magnitude is negated with probability
1/2. Nothing is read back to the host, so sampling can run ahead on the loader's stream.
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import torch

from fastcifar.augment.config import AugmentConfig
from fastcifar.augment.policy_space import CIFAR10_POLICY, SPACES


class _DeviceTables(NamedTuple):
    signed: torch.Tensor  # bool [num ops]: the op's magnitude sign is drawn
    # AutoAugment's 25 sub-policies of 2 steps (None for the other policies):
    sub_ops: torch.Tensor | None  # int64 [25, 2]: op indices
    sub_levels: torch.Tensor | None  # int64 [25, 2]: bins (0 where the op has none)
    sub_probability: torch.Tensor | None  # float32 [25, 2]


def sample_policy(config: AugmentConfig, batch_size: int, generator: torch.Generator | None,
                  device: torch.device | str) -> torch.Tensor:
    """int32 [batch_size, config.policy_steps] entries of config.augment_policy."""
    device = torch.device(device)
    policy, steps = config.augment_policy, config.policy_steps
    space = SPACES[policy]
    tables = _tables(policy, device)
    kw = dict(generator=generator, device=device)
    if policy == "autoaugment":
        sub_policy = torch.randint(len(CIFAR10_POLICY), (batch_size,), **kw)
        applied = torch.rand(batch_size, steps, **kw) <= tables.sub_probability[sub_policy]
        op = torch.where(applied, tables.sub_ops[sub_policy], 0)  # op 0: Identity
        level = torch.where(applied, tables.sub_levels[sub_policy], 0)  # not applied: entry 0
    elif policy == "randaugment":
        op = torch.randint(len(space.ops), (batch_size, steps), **kw)
        level = torch.full_like(op, config.ra_m)
    elif policy == "trivialaugment":
        op = torch.randint(len(space.ops), (batch_size, steps), **kw)
        level = torch.randint(space.num_bins, (batch_size, steps), **kw)
    else:
        raise ValueError(f"no policy to sample for augment_policy={policy!r}")
    negated = (torch.rand(batch_size, steps, **kw) < 0.5) & tables.signed[op]
    return ((op * space.num_bins + level) * 2 + negated).int()


@lru_cache(maxsize=16)
def _tables(policy: str, device: torch.device) -> _DeviceTables:
    """Built once per (policy, device): building copies from the host, never per batch."""
    space = SPACES[policy]
    signed = torch.tensor([space.signed(op) for op in space.ops], device=device)
    if policy != "autoaugment":
        return _DeviceTables(signed, None, None, None)
    ops = [[space.ops.index(op) for op, _, _ in sub] for sub in CIFAR10_POLICY]
    levels = [[level or 0 for _, _, level in sub] for sub in CIFAR10_POLICY]
    probability = [[p for _, p, _ in sub] for sub in CIFAR10_POLICY]
    return _DeviceTables(
        signed=signed, sub_ops=torch.tensor(ops, device=device),
        sub_levels=torch.tensor(levels, device=device),
        sub_probability=torch.tensor(probability, dtype=torch.float32, device=device))
