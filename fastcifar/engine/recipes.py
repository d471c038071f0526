"""Named training recipes: documented defaults as plain data. Command-line flags override
any field; the resolved values go to RUNDIR/config.json.

paper   ResNeXt on CIFAR (Xie et al. 2017, sec. 5.1 / Table 7): SGD momentum 0.9,
        weight decay 5e-4 on every parameter, batch 128, lr 0.1, 300 epochs, lr x0.1
        at epochs 150 and 225; pad-4 crop + flip only.
strong  The strong CIFAR-100 baseline: cosine lr with 20 linear-warmup epochs down to
        1e-6 over 300 epochs, AutoAugment (CIFAR-10 policy), mixup 1.0 + cutmix 1.0,
        random erasing 0.25, wd 5e-4 except on biases and BN, zero-init of each block's
        last BN gamma, label smoothing 0.1, Nesterov, batch 128, lr 0.1.
fast    Short schedule for resnet9 / airbench94, aimed at 94% on CIFAR-10: 16 epochs,
        batch 512, lr rises linearly for 3 epochs then falls linearly to 0, label
        smoothing 0.2, Nesterov, EMA of the weights, flip test-time augmentation.
        (The target is the literature's; it has not been measured with this code.)
airbench94  airbench94's recipe exactly (the `airbench` package 0.1.8: 94.01% mean
        over 1,000 runs in 3.83 s on an A100), for the airbench94 net: 9.9 epochs at
        batch 1024, triangle lr (0.2 -> 1 at 23% of the steps -> 0.07 of the peak), lr
        11.5 and wd 0.0153 per 1024 examples in airbench's decoupled form (below),
        Nesterov 0.85, BN lr x64, label smoothing 0.2, lookahead every 5 steps,
        alternating flip, 2-pixel reflect translate, the whitening bias frozen after 3
        epochs, TTA level 2 (mirror + translate).

Shorter or longer runs (--epochs) keep the recipe's shape: milestones and warmup scale
with the number of epochs unless given (--milestones, --warmup-epochs).

lr scaling: the recipe's base_lr is quoted at its reference batch (batch_size); the
trainer's peak lr is peak_lr = base_lr x global_batch / reference_batch (linear rule,
Goyal et al. 2017) unless --lr-scaling none.

airbench's decoupled hyperparameters in fastcifar's terms. airbench sums the loss over
the batch and hands torch's SGD lr = lr_1024 / (1024 (1 + 1/(1 - momentum))) and an L2
coefficient wd = wd_1024 x batch / (1024 (1 + 1/(1 - momentum))) / lr. fastcifar's loss
is the batch mean, so the same update takes lr x batch and wd / batch:
    base_lr      = lr_1024 / (1 + 1/(1 - momentum))  at reference batch 1024  (1.5)
    weight_decay = wd_1024 / lr_1024                                          (0.00133)
and the BN group's lr x bn_lr_scale comes with its wd / bn_lr_scale, so that lr x wd,
the decay per step, is the other weights' (airbench's bias_scaler).
"""
from __future__ import annotations

from dataclasses import dataclass

from fastcifar.augment_policies import DEFAULT_RA_M, DEFAULT_RA_N
from fastcifar.errors import UserError


@dataclass(frozen=True, kw_only=True)
class Hyperparameters:
    """What a recipe chooses; a run's TrainConfig carries the same fields (flags override)."""

    epochs: float = 300  # a fraction trains the last epoch partly (9.9: 9 epochs + 90%)
    # "multistep" | "cosine" | "linear" (warmup, then linear decay) | "triangle"
    schedule: str = "multistep"
    milestones: tuple[float, ...] = ()  # epochs, for multistep
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    # triangle: (start, peak_at, end): lr start x peak at step 0, peak at peak_at x the
    # run's steps, end x peak after the last step (see schedule.py)
    triangle: tuple[float, float, float] = (0.2, 0.23, 0.07)
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    no_decay_bias_bn: bool = False
    bn_lr_scale: float = 1.0  # lr multiplier of BatchNorm parameters (their wd / it)
    whiten_bias_epochs: int | None = None  # whitening stem's bias frozen after; None: never
    zero_init_residual: bool = False
    # augmentation (applied by the loader) and loss
    crop_padding: int = 4  # translate by up to this many pixels (pad and crop)
    pad_mode: str = "zero"  # "zero" | "reflect"
    flip_mode: str = "random"  # "random" (per sample, per epoch) | "alternating" (airbench)
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    erase_prob: float = 0.0
    cutout: int = 0
    augment_policy: str = "none"  # none | autoaugment | randaugment | trivialaugment
    ra_n: int = DEFAULT_RA_N  # RandAugment: ops per image
    ra_m: int = DEFAULT_RA_M  # RandAugment: magnitude bin (of 31)
    # weight averaging and evaluation
    ema: bool = False
    ema_decay: float = 0.999
    ema_every: int = 1
    lookahead: bool = False  # airbench's lookahead (engine/lookahead.py)
    lookahead_decay: float = 0.95  # per step; applied every lookahead_every steps
    lookahead_every: int = 5
    tta: int = 0  # test-time augmentation: 0 none, 1 mirror, 2 mirror + translate


@dataclass(frozen=True, kw_only=True)
class Recipe(Hyperparameters):
    name: str
    batch_size: int  # global batch; also the reference batch of `base_lr`
    base_lr: float  # the lr at `batch_size`; runs at another batch scale it


# airbench94's lr and wd per 1024 examples and its momentum (lib_airbench94.py's hyp).
AIRBENCH_LR, AIRBENCH_WD, AIRBENCH_MOMENTUM = 11.5, 0.0153, 0.85

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            name="paper",
            epochs=300,
            batch_size=128,
            base_lr=0.1,
            schedule="multistep",
            milestones=(150.0, 225.0),
            gamma=0.1,
        ),
        Recipe(
            name="strong",
            epochs=300,
            batch_size=128,
            base_lr=0.1,
            schedule="cosine",
            warmup_epochs=20.0,
            min_lr=1e-6,
            nesterov=True,
            no_decay_bias_bn=True,
            zero_init_residual=True,
            label_smoothing=0.1,
            mixup=1.0,
            cutmix=1.0,
            erase_prob=0.25,
            augment_policy="autoaugment",
        ),
        Recipe(
            name="fast",
            epochs=16,
            batch_size=512,
            base_lr=0.4,
            schedule="linear",
            warmup_epochs=3.0,
            nesterov=True,
            no_decay_bias_bn=True,
            label_smoothing=0.2,
            ema=True,
            ema_decay=0.99,
            ema_every=5,
            tta=1,
        ),
        Recipe(
            name="airbench94",
            epochs=9.9,
            batch_size=1024,
            base_lr=AIRBENCH_LR / (1 + 1 / (1 - AIRBENCH_MOMENTUM)),
            schedule="triangle",
            triangle=(0.2, 0.23, 0.07),
            momentum=AIRBENCH_MOMENTUM,
            nesterov=True,
            weight_decay=AIRBENCH_WD / AIRBENCH_LR,
            bn_lr_scale=64.0,
            whiten_bias_epochs=3,
            crop_padding=2,
            pad_mode="reflect",
            flip_mode="alternating",
            label_smoothing=0.2,
            lookahead=True,
            lookahead_decay=0.95,
            lookahead_every=5,
            tta=2,
        ),
    )
}

# Models built for short schedules get the fast recipe unless --recipe says otherwise.
_FAST_MODEL_PREFIXES = ("resnet9", "airbench")


def default_recipe(model: str) -> str:
    return "fast" if model.startswith(_FAST_MODEL_PREFIXES) else "paper"


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise UserError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}") from None
