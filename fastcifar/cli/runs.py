import json

import click


@click.command()
@click.argument("dirs", nargs=-1, metavar="[DIR]...")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as a JSON list.")
@click.option("--plot", "plot_path", metavar="OUT.png",
              help="Draw test accuracy per epoch of the runs (at most 10, the most recent; "
                   "needs matplotlib).")
def runs(dirs, as_json, plot_path):
    """Show the runs and seed groups under DIR (default: runs/), one row each.

    Columns: name, model, dataset, recipe, epochs done/planned, seeds finished/total,
    final test_acc (mean +- std for a seed group), images/s, time (training and
    evaluation), time to --target-acc, and the state: running (a process holds the run's
    run.lock), finished (summary.json), diverged (diverged.json), stopped (anything else:
    --resume continues it).

    \b
    Examples:
      fastcifar runs
      fastcifar runs runs/sweep runs/baseline --plot accuracy.png
      fastcifar runs --json > runs.json
    """
    # Imported here, not at the top, like every command body (these do not load torch).
    from fastcifar.experiments.runs import collect_runs
    from fastcifar.experiments.runs_plot import draw_runs, select_for_plot
    from fastcifar.experiments.runs_table import format_table
    from fastcifar.use.plot import require_pyplot
    from fastcifar.use.report import check_output_path

    dirs = dirs or ("runs",)
    if plot_path:  # a missing extra or output folder: refused before the table
        require_pyplot()
        check_output_path(plot_path, "--plot")
    rows = collect_runs(dirs, warn=lambda line: click.echo(f"warning: {line}", err=True))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif rows:
        click.echo(format_table(rows))
    else:
        click.echo(f"no runs under {', '.join(dirs)}")
    if plot_path:
        chosen = select_for_plot(rows)
        draw_runs(chosen, plot_path)
        left_out = sum(1 for row in rows if row["epochs_done"]) - len(chosen)
        note = f"; {left_out} older left out: name fewer folders" if left_out else ""
        click.echo(f"plot: {plot_path} ({len(chosen)} runs{note})", err=as_json)
