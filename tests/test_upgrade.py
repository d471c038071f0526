"""Runs started by an older fastcifar resume after an upgrade (config.json schema 0,
checkpoint format 1: written by commit aecc1fc, see tests/fixtures/run_v0/make_run_v0.py)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from fastcifar.engine import loop
from fastcifar.engine.checkpoint import load_checkpoint
from fastcifar.engine.config import TrainConfig
from fastcifar.engine.migrate import (
    CHECKPOINT_FORMAT,
    CONFIG_SCHEMA_VERSION,
    migrate_checkpoint,
    migrate_config,
)
from fastcifar.engine.resolve import resolve_config
from fastcifar.errors import UserError
from tests.helpers import prepare_dataset

FIXTURE = Path(__file__).parent / "fixtures" / "run_v0"
TIMING_KEYS = {"images_per_sec", "epoch_seconds", "eval_seconds"}


def without_timing(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMING_KEYS}


def test_a_schema_0_config_reads_with_its_renamed_fields():
    saved = json.loads((FIXTURE / "config.json").read_text())
    assert "schema_version" not in saved and saved["lr"] == 0.05
    config = TrainConfig.from_json(saved)
    assert config.peak_lr == 0.05 and config.base_lr == 0.1
    assert config.to_json()["schema_version"] == CONFIG_SCHEMA_VERSION
    assert TrainConfig.from_json(config.to_json()) == config


def test_a_schema_1_config_turns_autoaugment_into_a_policy():
    """Schema 1 (commit bf3ecb0) had an `autoaugment` switch; schema 2 an augment_policy."""
    saved = TrainConfig.from_json(json.loads((FIXTURE / "config.json").read_text())).to_json()
    schema_1 = {k: v for k, v in saved.items() if k not in ("augment_policy", "ra_n", "ra_m")}
    for switch, policy in ((True, "autoaugment"), (False, "none")):
        config = TrainConfig.from_json({**schema_1, "schema_version": 1, "autoaugment": switch})
        assert (config.augment_policy, config.ra_n, config.ra_m) == (policy, 2, 9)
    with pytest.raises(UserError, match="autoaugment must be true or false"):
        TrainConfig.from_json({**schema_1, "schema_version": 1, "autoaugment": "yes"})


def test_a_format_1_checkpoint_loads_migrated():
    state = load_checkpoint(FIXTURE / "checkpoint.pt")
    assert state["format"] == CHECKPOINT_FORMAT and state["config_schema"] == 0
    assert state["epoch"] == 1 and state["step"] == 2
    # Written at an epoch boundary, as every checkpoint before format 3 was.
    assert state["batch"] == 0 and state["partial_epoch"] is None


def test_newer_or_unknown_versions_are_one_line():
    with pytest.raises(UserError, match="newer fastcifar.*upgrade"):
        migrate_config({"schema_version": CONFIG_SCHEMA_VERSION + 1})
    with pytest.raises(UserError, match="unknown schema_version"):
        migrate_config({"schema_version": "one"})
    with pytest.raises(UserError, match="newer fastcifar"):
        migrate_checkpoint({"format": CHECKPOINT_FORMAT + 1}, "x.pt")
    with pytest.raises(UserError, match="does not know: colour"):
        TrainConfig.from_json({**json.loads((FIXTURE / "config.json").read_text()),
                               "colour": "red"})


@pytest.mark.slow
def test_a_run_started_before_the_upgrade_resumes(tmp_path):
    """The fixture stopped after epoch 1 of 2; resumed here it finishes epoch 2 as the
    old code did (same machine: equal; another CPU's kernels may differ in the last bits)."""
    saved = json.loads((FIXTURE / "config.json").read_text())
    data_dir = prepare_dataset(tmp_path, 128, 64, seed=11)  # the fixture's own data
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir, ignore=shutil.ignore_patterns("*.py", "expected*"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = resolve_config({"resume": True, "out": str(run_dir), "data_dir": data_dir,
                                 "progress": False})
        assert config.peak_lr == saved["lr"] and config.seed == saved["seed"]
        summary = loop.train(config)
    finally:
        torch.set_num_threads(threads)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    first = json.loads((FIXTURE / "metrics.jsonl").read_text())
    expected = json.loads((FIXTURE / "expected_epoch2.json").read_text())
    assert records[0] == first  # the history came back from the old checkpoint as written
    assert [r["epoch"] for r in records] == [1, 2] and records[1]["step"] == expected["step"]
    got, want = without_timing(records[1]), without_timing(expected)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-3, abs=1e-4), key
    assert summary["epochs"] == 2
    # config.json stays as the run wrote it (it is migrated whenever it is read)
    assert json.loads((run_dir / "config.json").read_text()) == saved
