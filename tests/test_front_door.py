"""The front door: every command listed under the right name, and logs a person reads."""

import logging
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from brainlit.__main__ import COMMANDS, main
from tests.conftest import REPO
from tests.test_cli import run_cli

EVERY_COMMAND = ["fit", "validate", "test", "predict", "cache", "experiment", "export", "apply", "simulate"]


def test_help_lists_every_command_with_one_line_each_under_the_program_name():
    out = subprocess.run([sys.executable, "-m", "brainlit", "--help"], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    assert out.startswith("usage: python -m brainlit ")
    assert "__main__.py" not in out
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert listed == EVERY_COMMAND == list(COMMANDS)


def test_a_bare_call_prints_the_command_list(capsys):
    main([])
    assert "  experiment  " in capsys.readouterr().out


def test_an_unknown_command_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fitt"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: unknown command 'fitt': choose one of fit,")


@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_every_command_has_help_under_the_program_name(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out.split("\n\n")[0]
    assert usage.startswith("usage: python -m brainlit") and command in usage


def test_logs_hold_best_val_mae_as_hp_metric_one_line_per_epoch_and_no_tips(tiny_bids, tmp_path, caplog, capfd):
    with caplog.at_level(logging.INFO):
        cli = run_cli("finetune_age.yaml", tiny_bids, tmp_path, "--trainer.max_epochs", "3",
                      "--trainer.limit_train_batches", "2", "--trainer.check_val_every_n_epoch", "1")
    events = EventAccumulator(cli.trainer.log_dir)
    events.Reload()
    val_mae = [e.value for e in events.Scalars("val/age/mae")]
    assert len(val_mae) == 3
    [hp_metric] = events.Scalars("hp_metric")
    assert hp_metric.value == pytest.approx(min(val_mae)) and hp_metric.value != -1
    assert events.Scalars("hp_metric/age")[0].value == pytest.approx(min(val_mae))

    lines = [r.getMessage() for r in caplog.records if r.name == "brainlit.progress"]
    assert [line.split(" (")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "val/age/mae" in lines[-1] and "train/loss" in lines[-1]
    printed = capfd.readouterr()
    assert "\r" not in printed.out + printed.err
    assert "LitLogger" not in printed.out + printed.err + caplog.text
