"""The airbench race: airbench's train94 against `fastcifar train`, same GPU, same images.

One contender per process (each sets its own cuDNN state), one JSON file each, then one
report (benchmarks/race_airbench.sh runs all of it):

    python -m fastcifar.bench.race airbench --root DIR --seeds 5 --json a.json
    python -m fastcifar.bench.race fastcifar --data-dir D --model airbench94 \
        --recipe airbench94 --seeds 5 --out RUNS --json f.json
    python -m fastcifar.bench.race report a.json f.json --json race.json --markdown race.md

Timing follows airbench's rule: a warm-up run first (not counted: cuDNN autotuning, Triton
compilation), per-epoch evaluation excluded. "train" is the data-dependent init (airbench's
whitening) plus the training epochs; "+ final eval" adds the last test pass (with TTA),
which airbench's printed total_time_seconds includes. airbench times with CUDA events,
fastcifar with the host clock after a device sync.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
from pathlib import Path

import torch

from fastcifar.atomic import atomic_write
from fastcifar.bench.env import capture_env
from fastcifar.engine.loop import train
from fastcifar.engine.resolve import resolve_config
from fastcifar.extras import require_module

TRAIN_IMAGES = 50000  # both contenders train on the converted set's 50,000 images


def parse_airbench_table(text: str) -> dict:
    """{"test_acc", "train_seconds", "total_seconds"} from train94's printed table: the
    'eval' row's tta_val_acc and total_time_seconds (init + training + the TTA pass),
    and the last epoch row's total_time_seconds (init + training)."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.strip().startswith("|")]
    epochs = [row for row in rows if len(row) == 7 and row[1].isdigit()]
    final = [row for row in rows if len(row) == 7 and row[1] == "eval"]
    if not epochs or not final:
        raise ValueError("no epoch and eval rows in airbench's output")
    return {"test_acc": float(final[-1][5]), "train_seconds": float(epochs[-1][6]),
            "total_seconds": float(final[-1][6])}


def run_airbench(root: str, seeds: list[int]):
    """Yield a record per run of train94 as airbench runs it (its own loaders, reading
    ROOT/cifar10/{train,test}.pt), after its warm-up."""
    airbench = require_module("airbench", "dev")
    os.chdir(root)  # train94 reads ./cifar10
    airbench.warmup94()
    for index, seed in enumerate(seeds):
        torch.manual_seed(seed)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            airbench.train94(run=index)
        sys.stdout.write(printed.getvalue())
        yield {"seed": seed, **parse_airbench_table(printed.getvalue())}


def run_fastcifar(data_dir: str, model: str, recipe: str, seeds: list[int], out: str,
                  options: dict):
    """Yield a record per `fastcifar train` run, in this process, after a one-epoch
    warm-up run."""
    def config(seed: int, name: str, **extra):
        return resolve_config({"model": model, "dataset": "cifar10", "recipe": recipe,
                               "data_dir": data_dir, "seed": seed, "out": f"{out}/{name}",
                               "force": True, "progress": False, **options, **extra})

    train(config(10_000, "warmup", epochs=1))
    for seed in seeds:
        run = config(seed, f"seed{seed}")
        summary = train(run)
        last = json.loads(Path(run.out, "metrics.jsonl").read_text().splitlines()[-1])
        seconds = summary["init_seconds"] + summary["train_seconds"]
        torch.cuda.empty_cache()
        yield {"seed": seed, "test_acc": summary["test_acc"], "train_seconds": seconds,
               "total_seconds": seconds + last["eval_seconds"], "dtype": run.dtype,
               "graph": run.graph, "batch_size": run.batch_size, "epochs": run.epochs}


def summarize(report: dict) -> dict:
    """Mean and standard deviation (sample, n - 1) of accuracy and times over the runs."""
    runs = report["runs"]

    def stats(key):
        values = [run[key] for run in runs]
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    acc, acc_std = stats("test_acc")
    seconds, seconds_std = stats("train_seconds")
    total, _ = stats("total_seconds")
    return {"suite": "race", **report["contender"], "runs": len(runs), "test_acc": acc,
            "test_acc_std": acc_std, "train_seconds": seconds, "train_seconds_std": seconds_std,
            "seconds_with_final_eval": total}


def verdict(rows: list[dict], reference: str = "airbench") -> list[str]:
    """The issue's goal per contender: accuracy within the reference's standard deviation
    (or better), time at or below the reference's."""
    base = next((row for row in rows if row["name"] == reference), None)
    if base is None:
        return []
    lines = []
    for row in rows:
        if row["name"] == reference:
            continue
        accurate = row["test_acc"] >= base["test_acc"] - base["test_acc_std"]
        fast = row["train_seconds"] <= base["train_seconds"]
        lines.append(f"{row['name']}: accuracy {'met' if accurate else 'NOT met'} "
                     f"({100 * row['test_acc']:.2f}% vs {100 * base['test_acc']:.2f}% "
                     f"+- {100 * base['test_acc_std']:.2f}), time {'met' if fast else 'NOT met'} "
                     f"({row['train_seconds']:.2f} s vs {base['train_seconds']:.2f} s)")
    return lines


def format_markdown(rows: list[dict], env: dict) -> str:
    lines = ["| contender | model / recipe | runs | test acc (mean +- std) | train s "
             "(init + epochs) | + final eval s |", "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['name']} | {row['model']} / {row['recipe']} | {row['runs']} | "
                     f"{100 * row['test_acc']:.2f}% +- {100 * row['test_acc_std']:.2f} | "
                     f"{row['train_seconds']:.3f} +- {row['train_seconds_std']:.3f} | "
                     f"{row['seconds_with_final_eval']:.3f} |")
    machine = f"{env.get('device_name', '?')}, torch {env.get('torch', '?')}, {env.get('date')}"
    return "\n".join([f"Machine: {machine}, commit {env.get('commit', '?')}", "", *lines, "",
                      *verdict(rows)]) + "\n"


def write_json(path: str, data: dict) -> None:
    with atomic_write(path) as f:
        f.write(json.dumps(data, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="airbench race (see the module docstring)")
    sub = parser.add_subparsers(dest="command", required=True)
    ab = sub.add_parser("airbench")
    ab.add_argument("--root", required=True, help="folder holding cifar10/{train,test}.pt")
    fc = sub.add_parser("fastcifar")
    fc.add_argument("--data-dir", required=True)
    fc.add_argument("--model", required=True)
    fc.add_argument("--recipe", required=True)
    fc.add_argument("--out", required=True, help="folder for the run directories")
    fc.add_argument("--compile", action="store_true")
    for contender in (ab, fc):
        contender.add_argument("--seeds", type=int, default=5)
        contender.add_argument("--json", required=True)
    rep = sub.add_parser("report")
    rep.add_argument("reports", nargs="+")
    rep.add_argument("--json", required=True)
    rep.add_argument("--markdown", required=True)
    args = parser.parse_args(argv)

    if args.command == "report":
        reports = [json.loads(Path(p).read_text()) for p in args.reports]
        reports = [report for report in reports if report["runs"]]
        if not reports:
            print("error: no contender finished a run", file=sys.stderr)
            return 1
        rows = [summarize(report) for report in reports]
        env = reports[0]["env"]
        write_json(args.json, {"env": env, "results": rows, "runs": reports})
        Path(args.markdown).write_text(format_markdown(rows, env))
        print(format_markdown(rows, env))
        return 0
    seeds = list(range(args.seeds))
    args.json = os.path.abspath(args.json)  # the airbench contender changes directory
    command = " ".join(["python -m fastcifar.bench.race", *sys.argv[1:]])
    if args.command == "airbench":
        contender = {"name": "airbench", "model": "airbench94", "recipe": "train94 (0.1.8)"}
        runs = run_airbench(args.root, seeds)
    else:
        options = {"compile": True} if args.compile else {}
        name = f"fastcifar {args.model} {args.recipe}{' compiled' if args.compile else ''}"
        contender = {"name": name, "model": args.model, "recipe": args.recipe}
        runs = run_fastcifar(args.data_dir, args.model, args.recipe, seeds, args.out, options)
    env = capture_env(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    report = {"env": env, "command": command, "contender": contender, "runs": []}
    for run in runs:  # rewritten after every run: a contender cut short keeps its runs
        report["runs"].append(run)
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
