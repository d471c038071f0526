import click

from fastcifar.cli.options import run_model_options, tta_level


@click.command()
@click.argument("run_dir", metavar="RUNDIR")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True,
              help="Classes to list per image.")
@run_model_options
@click.option("--json", "json_out", metavar="OUT",
              help="Write the predictions as JSON ('-': stdout, instead of the table).")
def predict(run_dir, images, top_k, tta, no_tta, device, dtype, batch_size, json_out):
    """Classify PNG/JPEG/... image files with a run's model: the top classes and their
    probabilities. A folder stands for every image file in it. Images of any size are
    resized like torchvision's Resize(32, antialias=True) + CenterCrop(32).

    \b
    Examples:
      fastcifar predict runs/resnet20-cifar10-20261201-120000 cat.jpg dog.png
      fastcifar predict RUNDIR photos/ --top-k 5
      fastcifar predict RUNDIR photos/ --json - | jq '.predictions[0]'
    """
    # Imported here, not at the top: they load torch, which `fastcifar --help` does not need.
    from fastcifar.use.predict import PredictRequest
    from fastcifar.use.predict import predict as run_predict
    from fastcifar.use.report import check_output_path, format_predictions, write_json

    check_output_path(json_out, "--json")
    result = run_predict(PredictRequest(run_dir=run_dir, paths=tuple(images), top_k=top_k,
                                        tta=tta_level(tta, no_tta), device=device,
                                        dtype=dtype,
                                        batch_size=batch_size, progress=None))
    if json_out != "-":
        click.echo(format_predictions(result["predictions"]))
    if json_out:
        write_json(json_out, result)
