"""The command line as a user meets it: help, one-line errors, the models table."""
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from fastcifar.cli import main
from fastcifar.cli.options import tta_level, tta_options


@pytest.mark.parametrize("args, message", [
    (["prepare", "--dataset", "cifar11"], "Invalid value for '--dataset'"),
    (["train", "--model", "resnet20", "--dataset", "cifar10", "--milestones", "a,b"],
     "Invalid value for '--milestones'"),
    (["nope"], "No such command 'nope'"),
    (["train", "--model", "resnet21", "--dataset", "cifar10"], "unknown model 'resnet21'"),
    (["train", "--model", "resnet20", "--dataset", "cifar10", "--autoaugment",
      "--augment-policy", "randaugment"], "--autoaugment contradicts --augment-policy"),
    (["train", "--model", "resnet20", "--dataset", "cifar10", "--augment-policy",
      "randaugment", "--ra-m", "40"], "--ra-m (RandAugment's magnitude bin) must be"),
    (["train", "--model", "resnet20", "--dataset", "cifar10", "--augment-policy", "rand"],
     "Invalid value for '--augment-policy'"),
])
def test_bad_input_is_one_line_on_stderr(args, message):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_every_command_has_help_with_examples():
    runner = CliRunner()
    for command in ("prepare", "train", "bench", "models", "runs", "eval", "predict",
                    "export"):
        result = runner.invoke(main, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert "Examples:" in result.output and f"fastcifar {command}" in result.output


def test_models_table_lists_the_registry():
    result = CliRunner().invoke(main, ["models", "resnext29_*"])
    assert result.exit_code == 0
    rows = {line.split()[0]: line.split()[1:] for line in result.output.splitlines()[1:-1]}
    assert float(rows["resnext29_16x64d"][0]) == pytest.approx(68.1, abs=0.1)
    assert float(rows["resnext29_16x64d"][1]) == pytest.approx(21.4, abs=0.1)
    assert float(rows["resnext29_8x64d"][0]) == pytest.approx(34.4, abs=0.1)


def test_models_pattern_matching_nothing_is_an_error_with_close_names():
    result = CliRunner().invoke(main, ["models", "resnext29_16x64"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no model matches")
    assert "resnext29_16x64d" in lines[0]


def test_python_dash_m_runs():
    out = subprocess.run([sys.executable, "-m", "fastcifar", "--version"], capture_output=True,
                         text=True, check=True)
    assert "0.1.0" in out.stdout


@pytest.mark.parametrize("args, level", [([], None), (["--tta"], 1), (["--tta", "2"], 2),
                                         (["--tta", "0"], 0), (["--no-tta"], 0)])
def test_tta_options_give_a_level(args, level):
    """--tta alone is level 1 (the mirror), --no-tta level 0, as before levels existed."""
    @click.command()
    @tta_options("")
    def command(tta, no_tta):
        click.echo(repr(tta_level(tta, no_tta)))

    result = CliRunner().invoke(command, args)
    assert result.exit_code == 0 and result.output.strip() == repr(level)
    assert CliRunner().invoke(command, ["--tta", "2", "--no-tta"]).exit_code != 0
