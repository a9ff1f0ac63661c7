"""The command line as a user drives it: configs, linking, DDP, precision, TensorBoard."""

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from brainlit.__main__ import main
from brainlit.cli import BrainlitCLI
from tests.conftest import REPO

CONFIGS = REPO / "configs" / "camcan"


def data_args(root: Path, cache: Path) -> list[str]:
    """Point a Cam-CAN config at a tiny cohort (its TR is 2 s, not 1.97 s)."""
    return [
        "--data.root", str(root), "--data.atlas", str(root / "atlas.nii.gz"),
        "--data.cache_path", str(cache), "--data.t_r", "null", "--data.num_workers", "0",
        "--data.crop_len", "32", "--data.batch_size", "4", "--data.n_folds", "4",
        "--data.min_timepoints", "50",
    ]


def small_model(config: str) -> list[str]:
    args = ["--model.init_args.encoder", '{"d_model": 16, "depth": 1, "n_heads": 2}']
    if "finetune" in config:
        args += ["--model.init_args.moe", '{"n_experts": 4, "expert_hidden": 16, "graph_topk": 4}']
        args += ["--model.init_args.ssm", '{"layers": 1, "d_state": 4}']
    return args


def run_cli(config: str, root: Path, tmp: Path, *extra: str, subcommand: str = "fit") -> BrainlitCLI:
    args = [subcommand, "--config", str(CONFIGS / config), *data_args(root, tmp / "cache.h5")]
    args += small_model(config)
    args += ["--trainer.logger.init_args.save_dir", str(tmp / "runs"), "--trainer.default_root_dir", str(tmp)]
    args += ["--trainer.check_val_every_n_epoch", "1"] if subcommand == "fit" else []
    args += extra
    return BrainlitCLI(args=args)


def test_print_config_shows_the_resolved_configuration(tiny_bids, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(CONFIGS / "finetune_age.yaml"), "--data.root", str(tiny_bids),
              "--print_config"])
    printed = capsys.readouterr().out
    assert "class_path: brainlit.tasks.RegressionTask" in printed
    assert "targets:\n  - age" in printed
    assert "target_names" not in printed  # linked from data.targets, never typed twice
    assert "walk_steps: 3" in printed


@pytest.mark.parametrize("config", ["pretrain.yaml", "finetune_age.yaml", "finetune_fluid.yaml"])
def test_every_config_runs_fast_dev_run(config, tiny_bids, tmp_path):
    cli = run_cli(config, tiny_bids, tmp_path, "--trainer.fast_dev_run", "true")
    assert cli.model.hparams.n_rois == 16  # linked from the cache, never typed
    assert cli.trainer.state.finished


def test_pretrain_then_finetune_in_bf16_logs_every_scalar(tiny_bids, tmp_path):
    short = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
    pre = run_cli("pretrain.yaml", tiny_bids, tmp_path, *short, "--trainer.precision", "bf16-mixed")
    ckpt = pre.trainer.checkpoint_callback.last_model_path
    assert Path(ckpt).is_file()
    cli = run_cli("finetune_age.yaml", tiny_bids, tmp_path, *short, "--trainer.precision", "bf16-mixed",
                  "--model.init_args.pretrained", ckpt, "--trainer.log_every_n_steps", "1")
    pretrained = pre.model.model.encoder.state_dict()
    # the encoder started from the pretrained weights (then took one epoch of small steps)
    assert cli.model.model.encoder.state_dict().keys() == pretrained.keys()
    events = EventAccumulator(cli.trainer.log_dir)
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ["train/loss", "val/loss", "val/age/mae", "val/age/pearson"]:
        assert tag in tags
    assert any(t.startswith("lr-") for t in tags)
    assert "val/age/scatter" in events.Tags()["images"]


def _validate_metrics(root: Path, tmp: Path, devices: int) -> pd.Series:
    cmd = [sys.executable, "-m", "brainlit", "validate", "--config", str(CONFIGS / "finetune_age.yaml"),
           *data_args(root, tmp / "cache.h5"), *small_model("finetune"),
           "--trainer.accelerator", "cpu", "--trainer.devices", str(devices),
           "--trainer.strategy", "ddp" if devices > 1 else "auto", "--trainer.precision", "32-true",
           "--data.val_fraction", "0.4",  # 6 validation subjects: 3 per rank, none repeated
           "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
           "--trainer.logger.save_dir", str(tmp / f"csv{devices}")]
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True, timeout=300)
    metrics = next((tmp / f"csv{devices}").rglob("metrics.csv"))
    return pd.read_csv(metrics).iloc[-1]


def test_ddp_on_two_cpu_processes_matches_one_process(tiny_bids, tmp_path):
    single = _validate_metrics(tiny_bids, tmp_path, devices=1)
    ddp = _validate_metrics(tiny_bids, tmp_path, devices=2)
    assert ddp["val/age/mae"] == pytest.approx(single["val/age/mae"], rel=1e-4)
    assert ddp["val/age/pearson"] == pytest.approx(single["val/age/pearson"], abs=1e-4)
    assert ddp["val/loss"] == pytest.approx(single["val/loss"], rel=1e-4)


def test_predict_writes_predictions_with_the_brain_age_gap(tiny_bids, tmp_path):
    short = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
    fit = run_cli("finetune_age.yaml", tiny_bids, tmp_path, *short)
    ckpt = fit.trainer.checkpoint_callback.last_model_path
    run_cli("finetune_age.yaml", tiny_bids, tmp_path, "--ckpt_path", ckpt, subcommand="predict")
    [path] = (tmp_path / "runs").rglob("predictions.csv")
    table = pd.read_csv(path)
    assert len(table) == 20 and table["subject_id"].is_unique
    assert {"split", "age_true", "age_pred", "brain_age_gap", "brain_age_gap_corrected"} <= set(table)
    assert (table["brain_age_gap"] == table["age_pred"] - table["age_true"]).all()
    train = table[table["split"] == "train"]
    slope = np.polyfit(train["age_true"], train["brain_age_gap_corrected"], 1)[0]
    assert abs(slope) < 1e-6  # the bias correction removes the age trend on the training fold


def test_cache_command_builds_the_cache_and_prints_a_summary(tiny_camcan, tmp_path, capsys):
    cache = tmp_path / "cache.h5"
    main(["cache", "--config", str(CONFIGS / "pretrain.yaml"), "--data.root", str(tiny_camcan),
          "--data.atlas", str(tiny_camcan / "atlas.nii.gz"), "--data.cache_path", str(cache)])
    printed = capsys.readouterr().out
    assert "15 subjects (15 built, 0 reused), 1 skipped" in printed
    assert "sub-CC110016" in printed and "cannot read NIfTI" in printed
    assert cache.is_file()


@pytest.mark.parametrize("command", [
    ["fit", "--config", str(CONFIGS / "finetune_age.yaml"), "--data.root", "/nope"],
    ["cache", "--data.root", "/nope"],
    ["experiment", "--root", "/nope", "--out", "{out}"],
])
def test_expected_errors_print_one_line_and_exit_2(command, tmp_path, capsys, caplog):
    argv = [arg.replace("{out}", str(tmp_path / "out")) for arg in command]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "error: data root /nope is not a folder: set --data.root to your dataset."
    assert "Traceback" not in err + caplog.text


def test_verbose_keeps_the_traceback(tmp_path, capsys, caplog):
    with pytest.raises(SystemExit):
        main(["--verbose", "cache", "--data.root", "/nope"])
    assert "error: data root /nope is not a folder" in capsys.readouterr().err
    assert "Traceback" in caplog.text and "discover_subjects" in caplog.text


def test_fit_does_not_warn_about_args_and_sys_argv(tiny_bids, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["brainlit", "fit", "--trainer.fast_dev_run", "true"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["fit", "--config", str(CONFIGS / "finetune_age.yaml"), *data_args(tiny_bids, tmp_path / "cache.h5"),
              *small_model("finetune"), "--trainer.fast_dev_run", "true",
              "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.default_root_dir", str(tmp_path)])
    messages = [str(w.message) for w in caught]
    assert messages  # warnings were recorded (e.g. about the tiny fold), just not this one
    assert not [m for m in messages if "args" in m and "sys.argv" in m], messages


def test_predict_keeps_subjects_without_targets_and_trains_on_labelled_ones_only(tiny_bids, tmp_path):
    table = pd.read_csv(tiny_bids / "participants.tsv", sep="\t")
    table.loc[table.participant_id == "sub-0001", "age"] = np.nan  # no age
    table.loc[table.participant_id == "sub-0002", "fluid_intelligence"] = np.nan  # no score
    table.loc[table.participant_id == "sub-0003", ["age", "fluid_intelligence"]] = np.nan  # neither
    phenotypes = tmp_path / "participants.tsv"
    table.to_csv(phenotypes, sep="\t", index=False)
    both = ["--data.targets", "[age, fluid_intelligence]", "--data.phenotypes_path", str(phenotypes)]
    fit = run_cli("finetune_age.yaml", tiny_bids, tmp_path, *both, "--trainer.max_epochs", "1",
                  "--trainer.limit_train_batches", "2")
    unlabelled = {"sub-0001", "sub-0002", "sub-0003"}
    assert not unlabelled & set(fit.datamodule.split_table()["subject_id"])  # never trained or scored on
    run_cli("finetune_age.yaml", tiny_bids, tmp_path, *both, "--ckpt_path",
            fit.trainer.checkpoint_callback.last_model_path, subcommand="predict")
    [path] = (tmp_path / "runs").rglob("predictions.csv")
    table = pd.read_csv(path).set_index("subject_id")
    assert len(table) == 20  # every subject with imaging
    assert table[["age_pred", "fluid_intelligence_pred"]].notna().all().all()
    assert table.loc[sorted(unlabelled), "split"].eq("unlabelled").all()
    assert table.loc["sub-0001", "age_true"] != table.loc["sub-0001", "age_true"]  # NaN: no age known
    assert table.loc["sub-0001", "fluid_intelligence_true"] == pd.read_csv(phenotypes, sep="\t").set_index(
        "participant_id").loc["sub-0001", "fluid_intelligence"]
    assert np.isnan(table.loc["sub-0002", "fluid_intelligence_true"]) and table.loc["sub-0002", "age_true"] > 0
    assert table.loc["sub-0003", ["age_true", "fluid_intelligence_true", "brain_age_gap"]].isna().all()
    assert table.drop(sorted(unlabelled))[["age_true", "fluid_intelligence_true"]].notna().all().all()
