import click

from fastcifar.datasets import DATASETS


@click.command()
@click.option("--dataset", type=click.Choice(list(DATASETS)), default="cifar10", show_default=True)
@click.option("--source", metavar="PATH|URL",
              help="Official python or binary archive (.tar.gz), its extracted folder, or a URL. "
                   "Default: the official python archive's URL.")
@click.option("--data-dir", metavar="DIR",
              help="Where prepared datasets live. "
                   "Default: $FASTCIFAR_DATA, else ~/.cache/fastcifar.")
@click.option("--formats", default="native", show_default=True, metavar="LIST",
              help="Comma-separated shard formats: native,ffcv,dali (native is always written).")
@click.option("--force", is_flag=True,
              help="Rewrite every prepared format even if a valid manifest exists.")
@click.option("--no-checksum", is_flag=True,
              help="Accept a source whose md5 is not the official one.")
def prepare(dataset, source, data_dir, formats, force, no_checksum):
    """Turn a CIFAR archive into verified binary shards.

    Asking for a format later adds it and keeps the ones already prepared. The dataset
    folder is replaced as a whole, so prepare refuses one holding files it did not write.

    \b
    Examples:
      fastcifar prepare --dataset cifar10
      fastcifar prepare --dataset cifar100 --formats native,ffcv,dali
      fastcifar prepare --dataset cifar10 --source ~/Downloads/cifar-10-python.tar.gz
      fastcifar prepare --dataset cifar10 --source ./cifar-10-batches-py --data-dir /data
    """
    # Imported here, not at the top, like every command body (numpy: slower --help).
    from fastcifar.prepare import PrepareConfig, parse_formats
    from fastcifar.prepare import prepare as run_prepare

    config = PrepareConfig(dataset=dataset, source=source, data_dir=data_dir,
                           formats=parse_formats(formats), force=force, checksum=not no_checksum)
    result = run_prepare(config, log=click.echo)
    if result.skipped:
        return
    timings = ", ".join(f"{step} {sec:.2f}s" for step, sec in result.seconds.items())
    counts = ", ".join(f"{n} {split}" for split, n in result.counts.items())
    click.echo(f"prepared {dataset} ({counts}) in {result.folder}: {timings}; "
               f"total {sum(result.seconds.values()):.2f}s")
