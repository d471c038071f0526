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

Shorter or longer runs (--epochs) keep the recipe's shape: milestones and warmup scale
with the number of epochs unless given (--milestones, --warmup-epochs).

lr scaling: the recipe's base_lr is quoted at its reference batch (batch_size); the
trainer's peak lr is peak_lr = base_lr x global_batch / reference_batch (linear rule,
Goyal et al. 2017) unless --lr-scaling none.
"""
from __future__ import annotations

from dataclasses import dataclass

from fastcifar.augment_policies import DEFAULT_RA_M, DEFAULT_RA_N
from fastcifar.errors import UserError


@dataclass(frozen=True, kw_only=True)
class Hyperparameters:
    """What a recipe chooses; a run's TrainConfig carries the same fields (flags override)."""

    epochs: int = 300
    schedule: str = "multistep"  # "multistep" | "cosine" | "linear" (warmup, then linear decay)
    milestones: tuple[float, ...] = ()  # epochs, for multistep
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    no_decay_bias_bn: bool = False
    zero_init_residual: bool = False
    # augmentation (applied by the loader) and loss
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
    tta: bool = False


@dataclass(frozen=True, kw_only=True)
class Recipe(Hyperparameters):
    name: str
    batch_size: int  # global batch; also the reference batch of `base_lr`
    base_lr: float  # the lr at `batch_size`; runs at another batch scale it


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
            tta=True,
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
