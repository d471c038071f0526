import click


@click.command()
@click.argument("pattern", required=False)
@click.option("--num-classes", type=int, default=10, show_default=True)
def models(pattern, num_classes):
    """List registered models with parameter count and forward GFLOPs per 32x32 image.

    \b
    Examples:
      fastcifar models
      fastcifar models 'resnext29*'
    """
    # Imported here, not at the top: the models load torch, which --help does not need.
    from fastcifar.models.counting import format_model_table
    from fastcifar.models.registry import matching_models

    click.echo(format_model_table(matching_models(pattern), num_classes=num_classes))
