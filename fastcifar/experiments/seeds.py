"""--seeds: the same run once per seed, in RUNDIR/seed-<k>/, and the statistics over them.

    RUNDIR/seeds.json    written first: format, the seeds, and the resolved config they
                         share (`seed` aside; its `out` is RUNDIR)
    RUNDIR/seed-<k>/     an ordinary run directory per seed (config.json says seed k)
    RUNDIR/summary.json  written last: mean, std, min, max, n and per-seed values of
                         test_acc (and of time_to_target_s, epoch_to_target with a target)
                         over the seeds that finished, and the seeds that diverged

A seed that diverges (its diverged.json) does not stop the group: the other seeds run,
the statistics leave it out and say so, and --resume does not train it again (the same
seed would diverge the same way). Only a group whose every seed diverged is an error.

Seeds run one after another in this process; several at once on one GPU is not built.
`fastcifar train --resume --out RUNDIR` skips the finished seeds, resumes those with a
checkpoint and starts the rest, all with the group's saved settings. RUNDIR/run.lock is
held throughout, so `fastcifar runs` sees the group running between seeds too.
"""
from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import sys
from pathlib import Path

from fastcifar.engine import loop
from fastcifar.engine.config import TrainConfig
from fastcifar.engine.rerun import options_from_saved
from fastcifar.engine.resolve import resolve_config
from fastcifar.engine.run_dir import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    DIVERGED_NAME,
    RUN_FILES,
    SEEDS_NAME,
    SUMMARY_NAME,
    TB_DIR_NAME,
    write_json_atomic,
)
from fastcifar.engine.run_lock import LOCK_NAME, holding_run_lock
from fastcifar.errors import UserError
from fastcifar.experiments.statistics import format_line, summarize_seeds

GROUP_FORMAT = 1


def seed_dir(group: Path, seed: int) -> Path:
    return Path(group) / f"seed-{seed}"


def is_seed_group(path) -> bool:
    return path is not None and (Path(path) / SEEDS_NAME).exists()


def read_group(group: Path) -> tuple[list[int], TrainConfig]:
    """(seeds, shared config) from a group's seeds.json."""
    path = Path(group) / SEEDS_NAME
    try:
        data = json.loads(path.read_text())
        seeds, saved = [int(s) for s in data["seeds"]], data["config"]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise UserError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    if data.get("format") != GROUP_FORMAT:
        raise UserError(f"{path} has an unknown format {data.get('format')!r}")
    return seeds, TrainConfig.from_json(saved, what=f"{path} (config)")


def train_seed_group(config: TrainConfig, seeds: tuple[int, ...]) -> dict:
    """One run per seed with `config` (its seed aside) in config.out/seed-<k>/."""
    group = Path(config.out)
    created = not group.exists()
    with holding_run_lock(group):
        _claim(group, config, seeds)
        write_json_atomic(group / SEEDS_NAME, {"format": GROUP_FORMAT, "seeds": list(seeds),
                                               "config": config.to_json()})
        try:
            return _run_group(group, seeds, config, lambda seed, run_dir: dataclasses.replace(
                config, seed=seed, out=str(run_dir)))
        except BaseException:
            if not any(seed_dir(group, seed).exists() for seed in seeds):
                # No seed got going (missing data, bad option): leave nothing that blocks
                # the next attempt, as a single run does.
                (group / SEEDS_NAME).unlink(missing_ok=True)
                if created:
                    _remove_run(group)
            raise


def resume_seed_group(options: dict) -> dict:
    """--resume --out GROUP: the unfinished seeds, with the group's saved settings; only
    runtime options (as for a single run's --resume) may be given."""
    group = Path(options["out"])
    given = {k: v for k, v in options.items() if k not in ("resume", "out", "seeds")}
    for key in ("seed", "config"):
        if key in given:
            raise UserError(f"--resume continues each seed of the group {group} with its "
                            f"saved settings; leave out --{key}")
    with holding_run_lock(group):
        seeds, shared = read_group(group)
        if options.get("seeds") not in (None, tuple(seeds)):
            raise UserError(f"{group} is the group of seeds {seeds}; --resume continues "
                            "those (leave out --seeds)")
        if (group / SUMMARY_NAME).exists():
            raise UserError(f"{group} has already finished (summary.json exists); "
                            "nothing to resume")
        return _run_group(group, seeds, shared, lambda seed, run_dir: _resumed_config(
            shared, seed, run_dir, given))


def _resumed_config(shared: TrainConfig, seed: int, run_dir: Path, given: dict) -> TrainConfig:
    if (run_dir / CHECKPOINT_NAME).exists():  # resolve.py checks --resume as for one run
        return resolve_config({**given, "resume": True, "out": str(run_dir)})
    config = resolve_config({**options_from_saved(shared, given), "seed": seed,
                             "out": str(run_dir)})
    config = dataclasses.replace(config, from_config=shared.from_config)
    expected = dataclasses.replace(shared, seed=seed).identity()
    changed = [f"{key} (saved {value!r}, now {getattr(config, key)!r})"
               for key, value in expected.items() if getattr(config, key) != value]
    if changed:
        raise UserError("--resume continues a seed group with its saved settings; these "
                        "differ: " + "; ".join(changed))
    return config


def _diverged(group: Path, seed: int) -> bool:
    return (seed_dir(group, seed) / DIVERGED_NAME).exists()


def _run_group(group: Path, seeds: list[int], shared: TrainConfig, config_for) -> dict:
    # Every unfinished seed's config first: a bad option fails before any training. A
    # seed that diverged is an outcome (the same seed diverges again), not unfinished.
    todo = {seed: config_for(seed, seed_dir(group, seed)) for seed in seeds
            if not (seed_dir(group, seed) / SUMMARY_NAME).exists()
            and not _diverged(group, seed)}
    if shared.tensorboard:
        # TensorBoard finds every seed's RUNDIR/seed-<k>/tb below the group: one run each.
        print(f"tensorboard: tensorboard --logdir {shlex.quote(str(group))}", flush=True)
    for index, seed in enumerate(seeds, 1):
        done = "" if seed in todo else \
            " (diverged before)" if _diverged(group, seed) else " (finished before)"
        print(f"seed {seed} ({index}/{len(seeds)}): {seed_dir(group, seed)}{done}", flush=True)
        if seed in todo:
            try:
                loop.train(todo[seed])
            except UserError as exc:
                if not _diverged(group, seed):
                    raise
                # The others still run: the group's statistics say how many diverged.
                print(f"seed {seed}: {exc}", file=sys.stderr, flush=True)
    diverged = [seed for seed in seeds if _diverged(group, seed)]
    finished = [seed for seed in seeds if seed not in diverged]
    if not finished:
        raise UserError(f"every seed of the group {group} diverged (see "
                        f"{seed_dir(group, seeds[0]) / DIVERGED_NAME}); try a lower --lr "
                        "or a longer --warmup-epochs")
    summaries = {seed: json.loads((seed_dir(group, seed) / SUMMARY_NAME).read_text())
                 for seed in finished}
    summary = {
        "seeds": list(seeds),
        "diverged": diverged,
        "model": shared.model,
        "dataset": shared.dataset,
        "recipe": shared.recipe,
        "epochs": shared.epochs,
        "target_acc": shared.target_acc,
        **summarize_seeds(summaries, shared.target_acc),
        "runs": {str(seed): seed_dir(group, seed).name for seed in seeds},
    }
    write_json_atomic(group / SUMMARY_NAME, summary)
    print(format_line("test_acc", summary["test_acc"]), flush=True)
    if diverged:
        print(f"{len(diverged)} of {len(seeds)} seeds diverged ({', '.join(map(str, diverged))}"
              f"): not counted above", flush=True)
    if shared.target_acc is not None:
        time = summary["time_to_target_s"]
        reached = f"{time['n']} of {len(seeds)} seeds reached test_acc {shared.target_acc:g}"
        print(f"{format_line('time_to_target_s', time, digits=2)}; {reached}" if time["n"]
              else reached, flush=True)
    print(f"seed group in {group}", flush=True)
    return summary


def _claim(group: Path, config: TrainConfig, seeds) -> None:
    """May the group be (re)started in `group`? --force clears a previous group."""
    if (group / CONFIG_NAME).exists():
        raise UserError(f"{group} holds a single run (config.json); choose another --out "
                        "for a seed group")
    if not (group / SEEDS_NAME).exists():
        return
    if not config.force:
        state = "a finished" if (group / SUMMARY_NAME).exists() else "an unfinished"
        hint = "--force to overwrite it" if state == "a finished" else \
            "--resume to continue it or --force to start over"
        raise UserError(f"{group} holds {state} seed group; pass {hint}")
    (group / SUMMARY_NAME).unlink(missing_ok=True)
    old_seeds, _ = read_group(group)
    for seed in set(old_seeds) - set(seeds):  # not rerun: their files would mislead
        _remove_run(seed_dir(group, seed))


def _remove_run(run_dir: Path) -> None:
    for name in (*RUN_FILES, LOCK_NAME):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / TB_DIR_NAME, ignore_errors=True)
    try:
        run_dir.rmdir()
    except OSError:
        pass  # something else is in there: left as it was
