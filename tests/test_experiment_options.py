"""experiment takes --data.* options for every config and checks every config before any work."""

import pytest
import yaml

from brainlit.__main__ import main
from brainlit.errors import BrainlitDataError
from brainlit.experiment import Experiment
from brainlit.experiment.folds import outer_split
from brainlit.experiment.run import check_configs
from tests.conftest import REPO


def config_folder(tmp_path, **finetune_model):
    """A copy of configs/demo with ``finetune_model`` merged into the finetune model's init_args."""
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "pretrain.yaml").write_text((REPO / "configs/demo/pretrain.yaml").read_text())
    finetune = yaml.safe_load((REPO / "configs/demo/finetune.yaml").read_text())
    finetune["model"]["init_args"].update(finetune_model)
    (folder / "finetune.yaml").write_text(yaml.safe_dump(finetune))
    return folder


def run_experiment(tiny_camcan, tmp_path, configs, *extra):
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "--root", str(tiny_camcan), "--atlas", str(tiny_camcan / "atlas.nii.gz"),
              "--configs", str(configs), "--out", str(tmp_path / "out"), *extra])
    assert exit_info.value.code == 2
    assert not (tmp_path / "out" / "pretrain").exists()  # nothing ran
    assert not (tmp_path / "out" / "cache.h5").exists()


def test_a_config_the_model_rejects_fails_before_pretraining_in_one_line(tiny_camcan, tmp_path, capsys):
    configs = config_folder(tmp_path, encoder_lr_scale=-1.0)
    run_experiment(tiny_camcan, tmp_path, configs)
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (f"error: {configs / 'finetune.yaml'}: model (RegressionTask): encoder_lr_scale "
                                    "must be >= 0 (0 freezes the encoder), got -1.0.")
    assert "Traceback" not in err


def test_a_bad_stack_config_names_the_file(tiny_camcan, tmp_path, capsys):
    configs = config_folder(tmp_path)
    (configs / "brainlit.yaml").write_text("readout: {connectivity: partial}\ncross_fit: 2\n")
    run_experiment(tiny_camcan, tmp_path, configs)
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"error: {configs / 'brainlit.yaml'}:") and "partial" in last
    (configs / "brainlit.yaml").write_text("cross_fit: 1\n")
    run_experiment(tiny_camcan, tmp_path, configs)
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: {configs / 'brainlit.yaml'}: cross_fit must be at least 2, got 1.")


def test_a_bad_data_option_names_the_file_and_the_option(tiny_camcan, tmp_path, capsys):
    run_experiment(tiny_camcan, tmp_path, config_folder(tmp_path), "--data.layout", "nifti")
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"error: {tmp_path / 'configs' / 'pretrain.yaml'}: Parser key \"data.layout\":")
    assert "nifti" in last


def test_an_option_the_experiment_sets_says_what_to_use(tiny_camcan, tmp_path, capsys):
    run_experiment(tiny_camcan, tmp_path, config_folder(tmp_path), "--data.root=/elsewhere")
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: --data.root: the experiment sets it for every step; use --root.")


def test_data_options_reach_every_step(tiny_camcan, tmp_path, caplog):
    experiment = Experiment(str(tiny_camcan), str(tmp_path / "out"), str(config_folder(tmp_path)),
                            atlas=str(tiny_camcan / "atlas.nii.gz"),
                            data_options=["--data.min_timepoints", "111"])  # the runs have 110
    check_configs(experiment, ("local",))
    with pytest.raises(BrainlitDataError, match="only 0 subjects with imaging"):
        outer_split(experiment, tmp_path / "configs" / "finetune.yaml", repeat=0, fold=0)
    assert "run too short: 110 volumes < min_timepoints 111" in caplog.text
