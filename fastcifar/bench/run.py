"""run_bench: the suites in order, each measurement isolated, results written as they come.

A measurement that cannot run here (a backend not installed, a configuration the device
lacks) is listed as skipped with its reason; one that breaks is listed as failed (with
its traceback on stderr) and the next one still runs. The JSON report is rewritten after
every row, so a run cut short by a timeout keeps what it measured.
"""
from __future__ import annotations

import dataclasses
import sys
import time
import traceback

import torch

from fastcifar.backends import missing_extra
from fastcifar.bench.config import BenchConfig
from fastcifar.bench.context import Skip, SuiteContext, Task
from fastcifar.bench.data import DataProvider, formats_for
from fastcifar.bench.e2e import e2e_tasks
from fastcifar.bench.env import capture_env, load_average
from fastcifar.bench.pipeline import pipeline_tasks
from fastcifar.bench.plot import MissingPlotLibrary, draw
from fastcifar.bench.probes import datasheet_peaks
from fastcifar.bench.report import (
    append_history,
    describe,
    format_env,
    format_rate,
    format_table,
    history_lines,
    notes,
    read_history,
    write_json,
)
from fastcifar.bench.step import step_tasks
from fastcifar.bench.training import release_memory
from fastcifar.errors import UserError

SUITE_TASKS = {"pipeline": pipeline_tasks, "step": step_tasks, "e2e": e2e_tasks}


def _data_backends(config: BenchConfig) -> list[str]:
    backends = []
    if "pipeline" in config.suites:
        backends += config.pipeline_backends()
    if "e2e" in config.suites:
        backends += config.e2e_backends()
    return [b for b in dict.fromkeys(backends) if missing_extra(b) is None]


def run_bench(config: BenchConfig, *, log=print, command: str | None = None,
              stop=None) -> dict:
    """Run the suites `config` asks for; print rows as they come and the table at the
    end; write the JSON, history lines and plot it asks for. Returns the report.

    `stop` (a threading.Event, optional): once set, no further measurement starts.
    """
    device = torch.device(config.device)
    env = capture_env(device)
    env.update(quick=config.quick, command=command)
    if device.type == "cuda":
        env.update(datasheet_peaks(env["device_name"]))
    report = {"env": env, "config": dataclasses.asdict(config), "results": [], "skipped": [],
              "failed": []}
    log(format_env(env))
    budget = config.budget
    data = DataProvider(config.dataset, config.data_dir, formats_for(_data_backends(config)),
                        train_size=budget.synthetic_train_size,
                        test_size=budget.synthetic_test_size, seed=config.seed, log=log)
    ctx = SuiteContext(config=config, device=device, env=env, data=data, log=log)
    started = time.perf_counter()
    if config.json_path:
        write_json(config.json_path, report)  # a run killed early still leaves its env
    try:
        for suite in config.suites:
            log(f"== {suite} suite ==")
            for task in SUITE_TASKS[suite](ctx):
                _execute(task, report, env, log)
                if data.description:
                    env["data"] = data.description
                if config.json_path:
                    write_json(config.json_path, report)
                if stop is not None and stop.is_set():
                    log("stopped: terminated (the report holds the rows finished so far)")
                    raise SystemExit(143)
    finally:
        data.close()
    env["load_average_end"] = load_average()
    env["bench_seconds"] = round(time.perf_counter() - started, 1)
    log("")
    log(format_table(report))
    _write_outputs(config, report, log)
    return report


def _execute(task: Task, report: dict, env: dict, log) -> None:
    label = " ".join(str(v) for v in (task.suite, task.model, task.backend) if v)
    try:
        row = task.run()
    except (Skip, UserError) as exc:
        report["skipped"].append({**task.label(), "reason": str(exc)})
        log(f"  skipped {label} {task.config}: {exc}")
        return
    except Exception as exc:  # a bug or a device failure: keep going, show the traceback
        traceback.print_exc(file=sys.stderr)
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        report["failed"].append({**task.label(), "reason": reason})
        log(f"  FAILED {label} {task.config}: {reason}")
        release_memory()
        return
    row["device_name"] = env.get("device_name")
    report["results"].append(row)
    ratio = "" if row.get("ratio") is None else f", {row['ratio']:.2f}x {row['baseline']}"
    extra = notes(row)
    log(f"  {describe(row)}: {format_rate(row['images_per_sec'])} images/s{ratio}"
        + (f"; {extra}" if extra else ""))


def _write_outputs(config: BenchConfig, report: dict, log) -> None:
    if config.json_path:
        write_json(config.json_path, report)
        log(f"wrote {config.json_path}")
    history_path = config.resolved_history_path()
    if config.record:
        count = append_history(history_path, report)
        log(f"recorded {count} results in {history_path}")
    if config.plot_path:
        history = read_history(history_path)
        if not config.record:
            history += history_lines(report)  # this run, even when it is not recorded
        try:
            draw(config.plot_path, report, history)
            log(f"wrote {config.plot_path}")
        except MissingPlotLibrary as exc:
            log(str(exc))
