import contextlib
import signal
import sys
import threading

import click

from fastcifar.backends import BACKEND_NAMES, BASELINE_BACKEND
from fastcifar.engine.recipes import RECIPES


@click.command()
@click.option("--suite", default="all", show_default=True, metavar="pipeline|step|e2e|all",
              help="What to measure.")
@click.option("--backend", "backends", multiple=True, metavar="NAME",
              help=f"Loader backend (repeatable): {', '.join(BACKEND_NAMES)}. Default: every "
                   f"installed one ({BASELINE_BACKEND}, the baseline, always runs).")
@click.option("--model", "models", multiple=True, metavar="NAME",
              help="Model for the step and e2e suites (repeatable; see `fastcifar models`).")
@click.option("--config", "step_variants", multiple=True, metavar="NAME",
              help="Step configuration (repeatable): fp32-nchw, fp32-cl, bf16-cl, "
                   "fp16-cl-scaler, bf16-cl-graph, bf16-cl-compile, bf16-cl-compile-graph, "
                   "fp32-cl-compile. Default: those that matter on the device.")
@click.option("--recipe", type=click.Choice(list(RECIPES)),
              help="Recipe of the e2e runs (strong: AutoAugment, mixup, cutmix, erasing). "
                   "Default: the model's, as `fastcifar train`.")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda")
@click.option("--batch-size", type=int,
              help="Default: 512 for loaders, the model's recipe batch for step and e2e "
                   "(smaller with --quick on CPU).")
@click.option("--dataset", default="cifar10", show_default=True, metavar="D")
@click.option("--data-dir", metavar="DIR", help="Prepared data; when there is none, a "
                                                "CIFAR-format set is generated (and said so).")
@click.option("--num-workers", type=int, help="Loader worker processes. Default: min(8, CPUs).")
@click.option("--repeats", type=int, help="Timed repeats per figure (the median is reported). "
                                          "Default: 5.")
@click.option("--quick", is_flag=True, help="Small counts, resnet20 only, a few minutes on a CPU.")
@click.option("--json", "json_path", metavar="PATH", help="Write the JSON report here.")
@click.option("--plot", "plot_path", metavar="PATH", help="Draw a PNG here (needs matplotlib).")
@click.option("--record", is_flag=True, help="Append each result to the history file.")
@click.option("--history", "history_path", metavar="PATH",
              help="History file. Default: $FASTCIFAR_BENCH_HISTORY, else "
                   "benchmarks/history.jsonl.")
def bench(suite, backends, models, step_variants, recipe, device, batch_size, dataset,
          data_dir, num_workers, repeats, quick, json_path, plot_path, record, history_path):
    """Measure images/s of the loaders, the training step and both together.

    Warm-up is excluded, each figure is the median of several repeats and stands beside
    the baseline it beats, measured in the same run.

    \b
    Examples:
      fastcifar bench --quick
      fastcifar bench --suite pipeline --backend native --backend dali
      fastcifar bench --suite step --model resnext29_16x64d --config bf16-cl-graph
      fastcifar bench --suite e2e --model resnet20 --recipe strong --backend native
      fastcifar bench --record --json out/bench.json --plot out/bench.png
    """
    # Imported here, not at the top: they load torch, which `fastcifar --help` does not need.
    from fastcifar.bench.config import resolve_bench_config
    from fastcifar.bench.run import run_bench

    config = resolve_bench_config(
        suite=suite, backends=backends, models=models, step_variants=step_variants,
        recipe=recipe, device=device, batch_size=batch_size, dataset=dataset, data_dir=data_dir,
        num_workers=num_workers, repeats=repeats, quick=quick, json_path=json_path,
        plot_path=plot_path, record=record, history_path=history_path)
    with _exit_on_sigterm() as stop:
        run_bench(config, log=click.echo, command=" ".join(["fastcifar"] + sys.argv[1:]),
                  stop=stop)


@contextlib.contextmanager
def _exit_on_sigterm():
    """`timeout` (benchmarks/gpu_suite.sh) sends SIGTERM: leave through the finally blocks
    (temporary data removed; the JSON report already holds every finished row). The event
    tells run_bench to stop even if a library turned the exit into another error (a
    DataLoader whose workers got the same signal does)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def terminate(*_):
        stop.set()
        sys.exit(143)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)
