"""Options several commands share."""
import click

TTA_HELP = {0: "none", 1: "mirror", 2: "mirror + 1-pixel translations"}


def tta_options(default_help: str):
    """--tta [LEVEL] (alone: 1) and --no-tta (level 0); the value is None when neither is
    given. Read it back with `tta_level(tta, no_tta)`."""
    def decorate(command):
        command = click.option("--no-tta", is_flag=True, default=None,
                               help="The same as --tta 0.")(command)
        levels = ", ".join(f"{k} {v}" for k, v in TTA_HELP.items())
        return click.option("--tta", type=click.IntRange(0, 2), is_flag=False, flag_value=1,
                            help=f"Test-time augmentation: {levels} (--tta alone: 1). "
                                 f"{default_help}")(command)
    return decorate


def tta_level(tta: int | None, no_tta: bool | None) -> int | None:
    if no_tta:
        if tta not in (None, 0):
            raise click.UsageError(f"--no-tta contradicts --tta {tta}")
        return 0
    return tta


def run_model_options(command):
    """How eval and predict run a run's model: --tta/--no-tta, --device, --dtype,
    --batch-size (each defaulting to the run's own choice)."""
    for option in reversed((
        tta_options("Default: what the run used."),
        click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto",
                     show_default=True),
        click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]),
                     help="Compute dtype. Default: the run's."),
        click.option("--batch-size", type=click.IntRange(min=1),
                     help="Default: the run's eval batch."),
    )):
        command = option(command)
    return command
