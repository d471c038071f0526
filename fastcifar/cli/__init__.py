"""The `fastcifar` command: a click group whose commands live one per module here.

Commands stay thin (parse, build a frozen config, call a library function). A UserError
from anywhere below becomes one line on stderr and exit status 2; a RunStopped (a signal
stopped a training run) its line and status 143 / 130; other exceptions are bugs and
keep their traceback.
"""
import sys

import click

# The modules, not their commands: a command named like its module would hide it.
from fastcifar.cli import bench, export, models, predict, prepare, runs, train
from fastcifar.cli import eval as evaluate
from fastcifar.errors import RunStopped, UserError


class _Group(click.Group):
    def main(self, *args, **kwargs):
        """Click's usage errors as one line too (click would print usage, hint and error)."""
        kwargs.pop("standalone_mode", None)
        try:
            super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except RunStopped as exc:  # a signal stopped a run after saving: not an error
            click.echo(str(exc), err=True)
            sys.exit(exc.exit_status)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fastcifar")
def main():
    """fastcifar: CIFAR-10/100 training where the data path is never the bottleneck.

    \b
    fastcifar prepare --dataset cifar10
    fastcifar train --model resnet20 --epochs 30
    fastcifar eval runs/resnet20-cifar10-20261201-120000 --plot eval.png
    fastcifar predict runs/resnet20-cifar10-20261201-120000 cat.jpg
    fastcifar export runs/resnet20-cifar10-20261201-120000 --format onnx --out resnet20.onnx
    fastcifar bench --quick
    fastcifar runs
    """


main.add_command(prepare.prepare)
main.add_command(models.models)
main.add_command(train.train)
main.add_command(bench.bench)
main.add_command(evaluate.eval_command)
main.add_command(predict.predict)
main.add_command(export.export)
main.add_command(runs.runs)
