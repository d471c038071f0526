import click

from fastcifar.backends import BACKEND_NAMES
from fastcifar.cli.options import run_model_options, tta_level


@click.command("eval")
@click.argument("run_dir", metavar="RUNDIR")
@click.option("--images", metavar="X.npy",
              help="Test images: uint8 [N,32,32,3] RGB (with --labels; CIFAR-10.1 layout).")
@click.option("--labels", metavar="Y.npy", help="Integer labels [N] for --images.")
@click.option("--source", metavar="PATH",
              help="A CIFAR-format python or binary archive (or folder): its test split.")
@click.option("--corruptions", metavar="DIR",
              help="CIFAR-10-C / CIFAR-100-C folder: <corruption>.npy (5 severities) + labels.npy.")
@run_model_options
@click.option("--backend", type=click.Choice(BACKEND_NAMES),
              help="Loader for the prepared test split. Default: the run's.")
@click.option("--data-dir", metavar="DIR", help="Prepared data. Default: the run's.")
@click.option("--json", "json_out", metavar="OUT",
              help="Write the full report as JSON ('-': stdout, instead of the tables).")
@click.option("--plot", "plot_out", metavar="OUT.png",
              help="Confusion matrix and reliability diagram (needs matplotlib).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr. Default: when stderr is a terminal.")
def eval_command(run_dir, images, labels, source, corruptions, tta, no_tta, device, dtype,
                 batch_size, backend, data_dir, json_out, plot_out, progress):
    """Evaluate a run's model: accuracy, loss, per-class accuracy, confusion matrix and
    calibration (ECE, 15 bins); by default on the prepared test split, where it equals the
    run's own test_acc for the same checkpoint and TTA.

    \b
    Examples:
      fastcifar eval runs/resnet20-cifar10-20261201-120000
      fastcifar eval RUNDIR --no-tta --json eval.json --plot eval.png
      fastcifar eval RUNDIR --images cifar10.1_v6_data.npy --labels cifar10.1_v6_labels.npy
      fastcifar eval RUNDIR --source ~/Downloads/cifar-10-python.tar.gz
      fastcifar eval RUNDIR --corruptions ~/data/CIFAR-10-C
    """
    # Imported here, not at the top: they load torch, which `fastcifar --help` does not need.
    from fastcifar.use.evaluation import EvalRequest, evaluate
    from fastcifar.use.plot import plot_evaluation, require_pyplot
    from fastcifar.use.report import check_output_path, format_eval, write_json

    check_output_path(json_out, "--json")  # refused now, not after the evaluation
    check_output_path(plot_out, "--plot")
    if plot_out:
        require_pyplot()
    request = EvalRequest(run_dir=run_dir, images=images, labels=labels, source=source,
                          corruptions=corruptions, tta=tta_level(tta, no_tta), device=device,
                          dtype=dtype, batch_size=batch_size, backend=backend, data_dir=data_dir,
                          progress=progress)
    report = evaluate(request)
    if json_out != "-":
        click.echo(format_eval(report))
    if json_out:
        write_json(json_out, report)
    if plot_out:
        plot_evaluation(report, plot_out)
