import click

from fastcifar.use import EXPORT_FORMATS


@click.command()
@click.argument("run_dir", metavar="RUNDIR")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), required=True)
@click.option("--out", metavar="FILE", required=True, help="The file to write.")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
def export(run_dir, fmt, out, force):
    """Export a run's model (EMA weights when the run used EMA) for use without fastcifar.

    The exported model takes float32 RGB images [N, 3, 32, 32] with values in [0, 1] and
    normalises them itself; N is free. Each file is loaded back and checked against the
    model before it is given its name (tolerance, relative to the largest logit:
    torchscript 1e-5, onnx 1e-4, safetensors exact). ONNX needs pip install 'fastcifar[onnx]'.

    \b
    Examples:
      fastcifar export runs/resnet20-cifar10-20261201-120000 --format onnx --out resnet20.onnx
      fastcifar export RUNDIR --format safetensors --out resnet20.safetensors
      fastcifar export RUNDIR --format torchscript --out resnet20.pt
    """
    # Imported here, not at the top: it loads torch, which `fastcifar --help` does not need.
    from fastcifar.use.export import ExportRequest
    from fastcifar.use.export import export as run_export

    result = run_export(ExportRequest(run_dir=run_dir, format=fmt, out=out, force=force))
    click.echo(f"wrote {result['path']} ({fmt}, {result['bytes'] / 1e6:.1f} MB, "
               f"{result['model']} epoch {result['epoch']}, {result['weights']} weights); "
               f"checked on batches of {' and '.join(map(str, result['check_batches']))}: max "
               f"|difference| {result['max_abs_difference']:.3g} "
               f"(tolerance {result['relative_tolerance']:g} x max |logit| "
               f"{result['max_abs_logit']:.3g})")
