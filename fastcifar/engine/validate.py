"""check_config: one UserError line for the first value of a resolved TrainConfig that
cannot work (resolve.py calls it on every config it builds)."""
from __future__ import annotations

import math

from fastcifar.augment_policies import check_policy
from fastcifar.backends import check_flip_support, get_backend
from fastcifar.engine.config import TrainConfig
from fastcifar.engine.evaluate import TTA_LEVELS
from fastcifar.engine.schedule import SCHEDULES
from fastcifar.errors import MissingExtraError, UserError
from fastcifar.extras import has_module


def check_config(c: TrainConfig) -> None:
    """One UserError line for the first value that cannot work."""
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise UserError(message)

    get_backend(c.backend)
    need(math.isfinite(c.epochs) and c.epochs > 0, "--epochs must be a positive number")
    need(c.batch_size >= 1, "--batch-size must be at least 1")
    need(
        c.batch_size % c.world_size == 0,
        f"--batch-size {c.batch_size} is the global batch and must divide evenly "
        f"over {c.world_size} processes",
    )
    need(c.eval_batch_size >= 1, "--eval-batch-size must be at least 1")
    need(math.isfinite(c.base_lr) and c.base_lr > 0, "--lr must be a positive number")
    need(c.lr_scaling in ("linear", "none"), "--lr-scaling must be linear or none")
    need(c.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}")
    need(0 <= c.warmup_epochs < c.epochs, "--warmup-epochs must be in [0, epochs)")
    need(all(0 < m < c.epochs for m in c.milestones), "milestones must lie inside the run")
    need(list(c.milestones) == sorted(c.milestones), "--milestones must be in increasing order")
    need(math.isfinite(c.gamma) and 0 < c.gamma, "--gamma must be a positive number")
    need(c.schedule != "triangle" or c.warmup_epochs == 0,
         "the triangle schedule rises on its own: --warmup-epochs must be 0 with it")
    start, peak_at, end = c.triangle
    need(start >= 0 and end >= 0 and 0 <= peak_at < 1,
         "triangle must be (start >= 0, peak_at in [0, 1), end >= 0)")
    need(0 <= c.min_lr <= c.peak_lr, "--min-lr must be in [0, lr]")
    need(0 <= c.momentum < 1, "--momentum must be in [0, 1)")
    need(not c.nesterov or c.momentum > 0, "Nesterov needs a momentum above 0")
    need(c.weight_decay >= 0, "--wd must be non-negative")
    need(math.isfinite(c.bn_lr_scale) and c.bn_lr_scale > 0, "bn_lr_scale must be positive")
    need(c.whiten_bias_epochs is None or c.whiten_bias_epochs >= 0,
         "whiten_bias_epochs must be non-negative (or None: never frozen)")
    need(0 <= c.label_smoothing < 1, "--label-smoothing must be in [0, 1)")
    need(c.mixup >= 0 and c.cutmix >= 0, "--mixup/--cutmix alphas must be non-negative")
    need(0 <= c.erase_prob <= 1, "--erase-prob must be in [0, 1]")
    need(c.cutout >= 0, "--cutout must be non-negative")
    need(0 <= c.crop_padding < 32, "crop_padding must be in [0, 31]")
    need(c.pad_mode in ("zero", "reflect"), "pad_mode must be zero or reflect")
    need(c.flip_mode in ("random", "alternating"), "flip_mode must be random or alternating")
    check_flip_support(c.backend, c.flip_mode == "alternating")
    need(c.tta in TTA_LEVELS, "--tta must be 0 (none), 1 (mirror) or 2 (mirror + translate)")
    need(0 < c.lookahead_decay < 1 and c.lookahead_every >= 1,
         "lookahead decay must be in (0, 1), every >= 1")
    check_policy(c.augment_policy, c.ra_n, c.ra_m)
    need(0 <= c.drop_path < 1, "--drop-path must be in [0, 1)")
    need(0 < c.ema_decay < 1 and c.ema_every >= 1, "EMA decay must be in (0, 1), every >= 1")
    need(c.num_workers >= 0, "--num-workers must be non-negative")
    need(c.log_every >= 1, "--log-every must be at least 1")
    need(c.target_acc is None or 0 < c.target_acc <= 1,
         "--target-acc is a fraction of the test set in (0, 1], e.g. 0.94")
    need(not c.stop_at_target or c.target_acc is not None, "--stop-at-target needs --target-acc")
    if c.tensorboard and not has_module("tensorboard"):
        raise MissingExtraError("tensorboard", "tb")
    need(
        not (c.sync_bn and c.device == "cpu" and c.world_size > 1),
        "--sync-bn needs CUDA (torch's SyncBatchNorm has no CPU kernel)",
    )
