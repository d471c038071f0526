import click

from fastcifar.augment_policies import AUGMENT_POLICIES, DEFAULT_RA_M, DEFAULT_RA_N
from fastcifar.backends import BACKEND_NAMES, DEFAULT_BACKEND
from fastcifar.cli.options import tta_level, tta_options
from fastcifar.datasets import DATASETS
from fastcifar.engine.recipes import RECIPES
from fastcifar.engine.schedule import SCHEDULES


def _flag(name, help):
    """A --x/--no-x switch that is None (recipe default) unless given."""
    return click.option(f"--{name}/--no-{name}", default=None, help=help)


def _parse_seeds(ctx, param, value):
    """`5` means seeds 0..4; `0,1,2` those seeds."""
    if value is None:
        return None
    try:
        if "," not in value:
            count = int(value)
        else:
            seeds = tuple(int(s) for s in value.split(","))  # "0,,1": int("") refuses it
    except ValueError:
        raise click.BadParameter("give a count (5: seeds 0..4) or seeds, e.g. 0,1,2") from None
    if "," not in value:
        if count < 1:
            raise click.BadParameter(f"a count of seeds must be at least 1, got {count}")
        return tuple(range(count))
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise click.BadParameter("give distinct non-negative seeds, e.g. 0,1,2")
    return seeds


def _parse_epochs(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(float(m) for m in value.split(",") if m.strip())
    except ValueError:
        raise click.BadParameter("give comma-separated epochs, e.g. 150,225") from None


@click.command()
@click.option("--model", metavar="NAME",
              help="A model from `fastcifar models` (required unless --resume).")
@click.option("--dataset", type=click.Choice(list(DATASETS)), help="Required unless --resume.")
@click.option("--data-dir", metavar="DIR",
              help="Prepared data. Default: $FASTCIFAR_DATA, else ~/.cache/fastcifar.")
@click.option("--recipe", type=click.Choice(list(RECIPES)),
              help="Named defaults (see below). Default: fast for resnet9/airbench*, else paper.")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True),
              help="Epochs; a fraction cuts the last one short (airbench94: 9.9).")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="Global batch, split over processes.")
@click.option("--lr", "base_lr", type=float,
              help="Base lr at the recipe's batch; scaled linearly with the global batch.")
@click.option("--lr-scaling", type=click.Choice(["linear", "none"]))
@click.option("--schedule", type=click.Choice(list(SCHEDULES)))
@click.option("--milestones", metavar="E1,E2,...", callback=_parse_epochs,
              help="Epochs where a multistep schedule multiplies the lr by gamma.")
@click.option("--gamma", type=float, help="Multistep lr factor.")
@click.option("--warmup-epochs", type=float)
@click.option("--min-lr", type=float)
@click.option("--momentum", type=float)
@_flag("nesterov", "Nesterov momentum.")
@click.option("--wd", "weight_decay", type=float, help="Weight decay (L2).")
@click.option("--no-decay-bias-bn/--decay-bias-bn", "no_decay_bias_bn", default=None,
              help="Exempt biases and BN parameters from weight decay.")
@click.option("--zero-init/--no-zero-init", "zero_init_residual", default=None,
              help="Zero-init the last BN gamma of each residual block.")
@click.option("--drop-path", type=float)
@_flag("sync-bn", "SyncBatchNorm across processes (CUDA).")
@click.option("--label-smoothing", type=float)
@click.option("--mixup", type=float, help="Mixup alpha (0: off).")
@click.option("--cutmix", type=float, help="CutMix alpha (0: off).")
@click.option("--cutout", type=int, help="Cutout square size in pixels (0: off).")
@click.option("--erase-prob", type=float, help="Random-erasing probability.")
@click.option("--augment-policy", type=click.Choice(AUGMENT_POLICIES),
              help="Per-image augmentation policy after crop/flip (see below).")
@click.option("--ra-n", type=int, help=f"RandAugment: ops per image (default {DEFAULT_RA_N}).")
@click.option("--ra-m", type=int,
              help=f"RandAugment: magnitude bin, 0-30 (default {DEFAULT_RA_M}).")
@_flag("autoaugment", "Alias: --augment-policy autoaugment (--no-: none).")
@_flag("ema", "Evaluate an exponential moving average of the weights.")
@click.option("--ema-decay", type=float)
@tta_options("Default: the recipe's.")
@click.option("--eval-batch-size", type=click.IntRange(min=1))
@click.option("--backend", type=click.Choice(BACKEND_NAMES),
              help=f"Data loader. Default: {DEFAULT_BACKEND}.")
@click.option("--num-workers", type=click.IntRange(min=0),
              help="Loader worker processes (ffcv/torchvision).")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), help="Default: auto.")
@click.option("--gpus", type=click.IntRange(min=1), help="Local processes, one per GPU (NCCL).")
@click.option("--nproc", type=click.IntRange(min=1),
              help="Local processes; with --device cpu over gloo.")
@click.option("--dtype", type=click.Choice(["auto", "bf16", "fp16", "fp32"]),
              help="Compute dtype. Default: bf16 on CUDA, fp32 on the CPU.")
@_flag("amp", "Mixed precision: bf16 autocast, also on the CPU (--no-amp is --dtype fp32).")
@_flag("graph", "Capture the train step in a CUDA graph (default on CUDA).")
@_flag("compile", "torch.compile the model (on CUDA also graph-captured unless --no-graph).")
@_flag("channels-last", "NHWC model and inputs (default: on).")
@click.option("--seed", type=int)
@click.option("--config", metavar="RUNDIR/config.json",
              help="Start from a saved run's settings (RUNDIR also works); flags override. "
                   "The new run's config.json records it as from_config.")
@click.option("--seeds", metavar="N|S1,S2,...", callback=_parse_seeds,
              help="One run per seed in RUNDIR/seed-<k>/ (N: seeds 0..N-1) and the "
                   "statistics over them in RUNDIR/summary.json.")
@click.option("--target-acc", type=float, metavar="ACC",
              help="Record the first epoch and the training time (evaluation excluded) "
                   "at which test_acc reached ACC (a fraction, e.g. 0.94).")
@click.option("--stop-at-target", is_flag=True, default=None,
              help="End the run (finished) at the epoch that reached --target-acc.")
@_flag("tensorboard", "Also write the metrics and the lr per step to RUNDIR/tb/ "
                      "(pip install 'fastcifar[tb]').")
@click.option("--out", metavar="RUNDIR",
              help="Run directory. Default: runs/<model>-<dataset>-<time>.")
@click.option("--resume", is_flag=True, default=None,
              help="Continue RUNDIR from its last checkpoint (a seed group: its "
                   "unfinished seeds).")
@click.option("--force", is_flag=True, default=None, help="Overwrite an existing run in RUNDIR.")
@_flag("progress", "Show a progress bar.")
@click.option("--log-every", type=click.IntRange(min=1),
              help="Steps between progress updates and the stop/divergence checks.")
def train(**options):
    """Train a model; writes config.json, metrics.jsonl, checkpoint.pt and summary.json.

    \b
    Examples:
      fastcifar train --model resnet20 --dataset cifar10 --epochs 30
      fastcifar train --model resnext29_8x64d --dataset cifar100 --recipe paper --gpus 4
      fastcifar train --model resnet9 --dataset cifar10 --recipe fast
      fastcifar train --model airbench94 --dataset cifar10 --recipe airbench94
      fastcifar train --model resnet20 --dataset cifar10 --device cpu --nproc 2
      fastcifar train --resume --out runs/resnet20-cifar10-20250101-120000
      torchrun --nproc-per-node 8 -m fastcifar train --model wrn28_10 --dataset cifar10
      fastcifar train --config runs/resnet20-cifar10-20250101-120000 --seed 1
      fastcifar train --model airbench94 --dataset cifar10 --seeds 5 --target-acc 0.94
      fastcifar train --resume --out runs/airbench94-cifar10-20250101-130000   # a seed group
      fastcifar train --model resnet20 --dataset cifar10 --tensorboard

    \b
    Recipes (flags override any value):
      paper   SGD 0.9, wd 5e-4, batch 128, lr 0.1, 300 epochs, lr x0.1 at 150/225
      strong  cosine, 20 warmup epochs, min lr 1e-6, AutoAugment, mixup+cutmix 1.0,
              erasing 0.25, label smoothing 0.1, Nesterov, no decay on bias/BN, zero-init
      fast    16 epochs, batch 512, linear warmup 3 then linear decay, label smoothing
              0.2, Nesterov, EMA, flip TTA (resnet9 / airbench94)
      airbench94  airbench94's recipe exactly: 9.9 epochs, batch 1024, triangle lr,
              Nesterov 0.85, BN lr x64, lookahead, alternating flip, reflect translate 2,
              label smoothing 0.2, TTA 2 (native backend)
    peak lr = base lr x global batch / recipe batch (stated in RUNDIR/config.json).

    \b
    SIGTERM or Ctrl-C stops every process after the same step (checked every
    --log-every steps), saves a checkpoint there and prints the --resume command;
    the exit status is 143 / 130. The resumed run ends as an uninterrupted one would.

    \b
    Augmentation policies (--augment-policy), as torchvision's v2 transforms:
      autoaugment     AutoAugment's CIFAR-10 policy (the strong recipe's)
      randaugment     RandAugment: --ra-n ops per image at magnitude bin --ra-m
      trivialaugment  TrivialAugmentWide: one op at a random magnitude
    """
    # Imported here, not at the top: they load torch, which `fastcifar --help` does not need.
    from fastcifar.experiments.launch import train_from_options

    options["tta"] = tta_level(options["tta"], options.pop("no_tta"))
    train_from_options(options)
