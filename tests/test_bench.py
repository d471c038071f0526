"""fastcifar bench: the timer, the CLI end to end on tiny data, outputs, bad input."""
import json

import pytest
import torch
from click.testing import CliRunner

from fastcifar.augment import AugmentConfig
from fastcifar.bench.config import Budget, resolve_bench_config
from fastcifar.bench.loader import measure_loader
from fastcifar.bench.report import (
    append_history,
    format_table,
    merge_reports,
    read_history,
)
from fastcifar.bench.run import run_bench
from fastcifar.bench.timing import calls_for, time_repeats
from fastcifar.cli import main
from fastcifar.engine import build
from fastcifar.pipelines import create_loader

TINY = Budget(repeats=2, repeat_seconds=0.02, step_warmup=1, e2e_min_steps=1,
              augment_seconds=0.1, synthetic_train_size=64, synthetic_test_size=16,
              loader_batch_size=64, step_batch_size=8, augment_large_batch=256,
              augment_dataset_size=1024)
REQUIRED_RESULT_KEYS = {"suite", "backend", "model", "device", "dtype", "batch_size",
                        "images_per_sec", "config"}
REQUIRED_ENV_KEYS = {"torch", "device_name", "commit", "date", "cpu_count", "python"}


class FakeClock:
    """A clock that only moves when a fake workload says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def workload(clock, durations):
    """run() that takes durations[i] seconds (of fake time) on its i-th call."""
    calls = iter(durations)

    def run():
        clock.now += next(calls)

    return run


def test_timer_excludes_warmup_and_reports_the_median():
    clock = FakeClock()
    run = workload(clock, [100.0, 50.0] + [3.0, 1.0, 2.0, 10.0, 2.5])
    timing = time_repeats(run, repeats=5, warmup=2, items_per_call=8, clock=clock)
    assert timing.seconds == (3.0, 1.0, 2.0, 10.0, 2.5)  # the 100 s and 50 s calls are gone
    assert timing.median_seconds == 2.5
    assert timing.items_per_sec == pytest.approx(8 / 2.5)
    assert timing.warmup_calls == 2
    assert timing.spread == pytest.approx((10.0 - 1.0) / 2.5)


def test_timer_counts_every_call_of_a_repeat():
    clock = FakeClock()
    run = workload(clock, [9.0] + [1.0, 2.0] + [3.0, 3.0] + [1.0, 1.0])
    timing = time_repeats(run, repeats=3, warmup=1, calls_per_repeat=2, items_per_call=4,
                          clock=clock)
    assert timing.seconds == (3.0, 6.0, 2.0)
    assert timing.items_per_sec == pytest.approx(2 * 4 / 3.0)


def test_timer_sizes_repeats_from_a_probe_call():
    clock = FakeClock()
    run = workload(clock, [5.0] + [0.1] + [0.1] * 30)
    timing = time_repeats(run, repeats=3, warmup=1, repeat_seconds=1.0, clock=clock)
    assert timing.calls_per_repeat == 10  # 1.0 s / 0.1 s per call
    assert timing.warmup_calls == 2  # the probe call is not timed either
    assert timing.seconds == pytest.approx((1.0, 1.0, 1.0))
    assert calls_for(workload(clock, [0.0]), 1.0, clock=clock) >= 1


def test_cuda_event_timing_reads_back_to_back_repeats(monkeypatch):
    """The CUDA path's bookkeeping, with events that read a fake clock (no GPU needed)."""
    from fastcifar.bench import timing as timing_module

    clock = FakeClock()

    class FakeEvent:
        def __init__(self, enable_timing=False):
            assert enable_timing
            self.at = None

        def record(self):
            self.at = clock()

        def synchronize(self):
            pass

        def elapsed_time(self, end):  # milliseconds, as CUDA events report
            return (end.at - self.at) * 1e3

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    run = workload(clock, [1.0, 2.0] + [3.0, 3.0] + [0.5, 0.5])
    assert timing_module._time_with_events(run, 3, 2) == pytest.approx([3.0, 6.0, 1.0])


def test_timer_with_the_real_clock_measures_sleeps():
    import time

    timing = time_repeats(lambda: time.sleep(0.01), repeats=3, warmup=1)
    assert 0.009 < timing.median_seconds < 0.5


def test_timer_rejects_nonsense():
    with pytest.raises(ValueError):
        time_repeats(lambda: None, repeats=0)


def _invoke(args):
    return CliRunner().invoke(main, ["bench", *args], catch_exceptions=False)


@pytest.mark.slow
def test_pipeline_suite_writes_json_plot_and_history(prepared_data, tmp_path, monkeypatch):
    data_dir, _ = prepared_data
    history = tmp_path / "history.jsonl"
    history.write_text(json.dumps({"images_per_sec": 1.0, "date": "2026-01-01T00:00:00"}) + "\n")
    monkeypatch.setenv("FASTCIFAR_BENCH_HISTORY", str(history))
    out_json, out_png = tmp_path / "out.json", tmp_path / "out.png"
    config = resolve_bench_config(suite="pipeline", backends=("native", "torchvision"),
                                  device="cpu", data_dir=str(data_dir), num_workers=1,
                                  json_path=str(out_json), plot_path=str(out_png), record=True,
                                  timing=TINY)
    output = []
    run_bench(config, log=output.append)
    report = json.loads(out_json.read_text())
    assert REQUIRED_ENV_KEYS <= set(report["env"])
    rows = report["results"]
    assert {(r["config"], r["backend"]) for r in rows} >= {
        ("loader", "native"), ("loader", "torchvision"), ("augment-op:reference", None),
        ("augment-op:numba", None), ("augment-op:numba+autoaugment", None),
        ("augment-op:numba+randaugment", None), ("augment-op:numba+trivialaugment", None),
        ("augment-op:numba@256", None)}
    for row in rows:
        assert REQUIRED_RESULT_KEYS <= set(row)
        assert row["images_per_sec"] > 0 and row["device"] == "cpu"
        assert row["ratio"] > 0 and row["baseline"]
    by_backend = {r["backend"]: r for r in rows if r["config"] == "loader"}
    assert by_backend["torchvision"]["ratio"] == pytest.approx(1.0)
    assert by_backend["native"]["data"] == "prepared"
    numba = next(r for r in rows if r["config"] == "augment-op:numba")
    assert numba["bytes_per_sec"] > 0 and 0 < numba["bandwidth_fraction"]
    for policy in ("autoaugment", "randaugment", "trivialaugment"):  # set against numba
        row = next(r for r in rows if r["config"] == f"augment-op:numba+{policy}")
        assert row["baseline"] == "augment-op:numba" and row["augment_policy"] == policy
        assert row["ratio"] == pytest.approx(row["images_per_sec"] / numba["images_per_sec"])
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --record appended one line per result, env merged in, and kept what was there.
    lines = [json.loads(line) for line in history.read_text().splitlines()]
    assert len(lines) == 1 + len(rows)
    assert lines[0]["images_per_sec"] == 1.0
    assert all(line["commit"] == report["env"]["commit"] for line in lines[1:])
    assert any("x torchvision" in line for line in output)


def test_measure_loader_counts_batches_after_warm_up(prepared_data):
    loader = create_loader("native", "cifar10", "train", batch_size=64, train=True,
                           augment=AugmentConfig.for_dataset("cifar10", cutout=16),
                           data_dir=prepared_data[0])
    result = measure_loader(loader, epochs=2)
    assert result["batches"] == 16 and result["images"] == 16 * 64 and result["epochs"] == 2
    assert result["seconds"] > 0 and result["images_per_sec"] > 0
    assert loader.epoch == 2  # warm-up epoch 0, then epochs 1 and 2
    partial = measure_loader(loader, max_batches=3, warmup_batches=1)
    assert partial["batches"] == 3 and partial["images"] == 192


@pytest.mark.slow
def test_step_quick_measures_every_cpu_configuration(monkeypatch):
    def configure_as_on_cuda(config, device):  # the CPU path sets nothing to restore
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = not torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = not torch.backends.cuda.matmul.allow_tf32

    monkeypatch.setattr(build, "configure_backends", configure_as_on_cuda)
    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
              torch.backends.cuda.matmul.allow_tf32)
    config = resolve_bench_config(suite="step", device="cpu", quick=True, models=("resnet20",),
                                  timing=TINY)
    report = run_bench(config, log=lambda _: None)
    configs = [r["config"] for r in report["results"]]
    assert configs == ["fp32-nchw", "fp32-cl", "bf16-cl"], report["failed"]
    for row in report["results"]:
        assert row["images_per_sec"] > 0 and row["batch_size"] == 8
        assert row["tflops"] > 0 and row["peak_tflops"] > 0
        assert row["loss_finite"]
        assert row["model"] == "resnet20" and row["backend"] is None
    assert report["results"][0]["ratio"] == pytest.approx(1.0)
    # the process-wide kernel settings each measurement changed are back as they were
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
            torch.backends.cuda.matmul.allow_tf32) == before


@pytest.mark.slow
def test_e2e_runs_the_trainer_with_a_loader(prepared_data):
    """With the strong recipe: AutoAugment, mixup/cutmix soft targets and erasing in the
    trainer's loader (`fastcifar bench --recipe strong`)."""
    data_dir, _ = prepared_data
    config = resolve_bench_config(suite="e2e", device="cpu", quick=True, models=("resnet20",),
                                  backends=("native",), recipe="strong",
                                  data_dir=str(data_dir), timing=TINY)
    report = run_bench(config, log=lambda _: None)
    assert not report["failed"]
    (row,) = report["results"]
    assert row["recipe"] == "strong"
    assert row["backend"] == "native" and row["dtype"] == "fp32"
    assert row["images_per_sec"] > 0 and row["step_alone_images_per_sec"] > 0
    assert row["baseline"] == "step alone" and row["ratio"] > 0


def test_generated_data_when_nothing_is_prepared(tmp_path):
    from fastcifar.bench.data import DataProvider
    from fastcifar.storage import load
    from fastcifar.synthetic import make_images

    logged = []
    provider = DataProvider("cifar10", str(tmp_path / "empty"), ("native",), train_size=40,
                            test_size=8, seed=3, log=logged.append)
    data = provider.get()
    assert data.synthetic and "generating" in logged[0]
    images, labels = load("cifar10", "train", data.data_dir)
    expected_images, expected_labels = make_images(10, 40, seed=3)
    assert (images == expected_images).all() and (labels == expected_labels).all()
    provider.close()
    assert not (tmp_path / "empty").exists()


@pytest.mark.parametrize("args, message", [
    (["--suite", "everything"], "unknown suite 'everything'"),
    (["--backend", "pillow"], "unknown backend 'pillow'"),
    (["--model", "resnet21"], "unknown model 'resnet21'"),
    (["--config", "fp8"], "unknown step configuration 'fp8'"),
    (["--device", "cuda", "--config", "fp32-nchw"], None),
    (["--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_arguments_are_one_line_errors(args, message):
    if message is None:
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        message = "no CUDA GPU"
    result = CliRunner().invoke(main, ["bench", *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


def test_report_table_history_and_merge(tmp_path):
    row = {"suite": "step", "config": "fp32-cl", "model": "resnet20", "backend": None,
           "device": "cpu", "dtype": "fp32", "batch_size": 8, "images_per_sec": 1234.5,
           "ratio": 2.0, "baseline": "fp32-nchw", "tflops": 0.002, "peak_fraction": 0.1}
    report = {"env": {"date": "2026-01-01T00:00:00+0000", "commit": "abc", "extra": 1},
              "results": [row], "skipped": [{"suite": "pipeline", "config": "loader",
                                             "backend": "dali", "reason": "not installed"}]}
    table = format_table(report)
    assert "1,234" in table and "2.00x fp32-nchw" in table and "2 GFLOP/s" in table
    assert "skipped: pipeline loader dali: not installed" in table
    assert "| step | fp32-cl |" in format_table(report, markdown=True)
    path = tmp_path / "h.jsonl"
    assert append_history(path, report) == 1
    with open(path, "a") as f:
        f.write('{"torn": ')  # a line cut short by a crash is skipped when read back
    (line,) = read_history(path)
    assert line["commit"] == "abc" and "extra" not in line and line["images_per_sec"] == 1234.5
    merged = merge_reports([report, report])
    assert len(merged["results"]) == 2 and len(merged["skipped"]) == 2


def test_step_notes_set_tflops_against_the_datasheet_and_the_measured_matmul():
    from fastcifar.bench.report import notes

    row = {"tflops": 220.7, "peak_fraction": 0.328, "datasheet_fraction": 0.223}
    assert notes(row) == ("221 TFLOP/s (22.3% of datasheet dense peak, "
                          "32.8% of measured matmul)")
    assert notes({"tflops": 0.002, "peak_fraction": 0.1}) == \
        "2 GFLOP/s (10.0% of measured matmul)"


def test_datasheet_peaks_match_whole_names():
    from fastcifar.bench.probes import datasheet_peaks

    assert datasheet_peaks("NVIDIA H200")["datasheet_bf16_tflops"] == 989.0
    assert datasheet_peaks("NVIDIA A100-SXM4-80GB")["datasheet_bandwidth_gbs"] == 2039.0
    assert datasheet_peaks("NVIDIA A10")["datasheet_bf16_tflops"] == 125.0  # not an A100
    assert datasheet_peaks("Tesla T4") == {}


def test_missing_matplotlib_is_a_one_line_hint(monkeypatch, tmp_path):
    import sys

    from fastcifar.bench.plot import MissingPlotLibrary, draw

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingPlotLibrary, match=r"pip install 'fastcifar\[plot\]'") as info:
        draw(tmp_path / "x.png", {"env": {}, "results": []})
    assert "\n" not in str(info.value)


@pytest.mark.cuda
def test_cuda_step_configurations_run_and_capture():
    config = resolve_bench_config(
        suite="step", device="cuda", models=("resnet20",), timing=TINY,
        step_variants=("fp32-nchw", "bf16-cl", "fp16-cl-scaler", "bf16-cl-graph"))
    report = run_bench(config, log=print)
    assert not report["failed"], report["failed"]
    rows = {r["config"]: r for r in report["results"]}
    assert set(rows) == {"fp32-nchw", "bf16-cl", "fp16-cl-scaler", "bf16-cl-graph"}
    for row in rows.values():
        assert row["images_per_sec"] > 0 and 0 < row["peak_fraction"] < 1.5
        assert row["loss_finite"] and row["peak_memory_gib"] > 0
    assert rows["bf16-cl-graph"]["graph"] is True


@pytest.mark.cuda
def test_cuda_pipeline_and_e2e(prepared_data):
    data_dir, _ = prepared_data
    config = resolve_bench_config(suite="all", device="cuda", models=("resnet20",),
                                  backends=("native",), step_variants=("bf16-cl-graph",),
                                  data_dir=str(data_dir), timing=TINY)
    report = run_bench(config, log=print)
    assert not report["failed"], report["failed"]
    rows = {(r["suite"], r["config"], r["backend"]): r for r in report["results"]}
    triton = rows[("pipeline", "augment-op:triton", None)]
    assert 0 < triton["bandwidth_fraction"] < 1.5
    e2e = next(r for r in report["results"] if r["suite"] == "e2e")
    assert e2e["config"] == "bf16-cl-graph" and e2e["ratio"] > 0
    assert report["env"]["measured_bandwidth_gbs"] > 0
