"""What `fastcifar train` runs: one run, a seed group (--seeds), or a group's --resume."""
from __future__ import annotations

from typing import Any, Mapping

from fastcifar.engine import loop
from fastcifar.engine.resolve import resolve_config
from fastcifar.errors import UserError
from fastcifar.experiments.seeds import is_seed_group, resume_seed_group, train_seed_group


def train_from_options(options: Mapping[str, Any]) -> dict:
    """`options` as the CLI parsed them (None: not given); `seeds` is a tuple or None.
    Returns the summary (a group's statistics for a seed group)."""
    options = {k: v for k, v in options.items() if v is not None}
    seeds = options.pop("seeds", None)
    if seeds is not None and "seed" in options:
        raise UserError("give --seed (one run) or --seeds (a group), not both")
    if options.get("resume") and is_seed_group(options.get("out")):
        return resume_seed_group({**options, "seeds": seeds})
    if seeds is None:
        # One run; under torchrun only rank 0 resolves a resumed run's files (loop.py).
        return loop.train_from_options(options)
    if options.get("resume"):
        raise UserError(f"--resume --seeds: {options.get('out')} is not a seed group "
                        "(it has no seeds.json)")
    return train_seed_group(resolve_config({**options, "seed": seeds[0]}), seeds)
