"""A trained model as an artefact: export, load without pickle, apply to new people."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

import brainlit
from brainlit.__main__ import main
from brainlit.baselines import ConnectivityRidge
from brainlit.brain_age import BrainAgeModel
from brainlit.data.cache import CacheReader
from brainlit.errors import BrainlitDataError
from brainlit.model_folder import ModelParts, networks_of, write_model_folder
from brainlit.stack import NetworkShare
from tests.test_cli import run_cli

BOTH = ["--data.targets", "[age, fluid_intelligence]"]


@pytest.fixture(scope="module")
def fitted(tiny_bids, tmp_path_factory):
    """A two-target network fit for two short epochs on the tiny cohort, and its checkpoint."""
    tmp = tmp_path_factory.mktemp("fit")
    cli = run_cli("finetune_age.yaml", tiny_bids, tmp, *BOTH, "--trainer.max_epochs", "2",
                  "--trainer.limit_train_batches", "2")
    return cli, cli.trainer.checkpoint_callback.last_model_path, tmp


def cohort_runs(cache) -> tuple[list[str], np.ndarray]:
    reader = CacheReader(cache)
    ids = reader.subject_ids
    return ids, np.stack([reader.timeseries(s).T for s in ids])  # [N, T, R]


def no_pickle(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("loading a model folder unpickled something")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)


def test_export_and_load_round_trip_without_pickle(fitted, tmp_path, monkeypatch, capsys):
    cli, ckpt, tmp = fitted
    oof = tmp_path / "oof.csv"
    pd.DataFrame({"age_true": [20.0, 40.0, 60.0, 80.0], "age_pred": [35.0, 45.0, 55.0, 65.0]}).to_csv(oof, index=False)
    main(["export", ckpt, str(tmp_path / "model"), "--bias_from", str(oof)])
    assert f"Model folder written to {tmp_path / 'model'}" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["brainlit_model.json", "model.safetensors"]
    card = json.loads((tmp_path / "model" / "brainlit_model.json").read_text())
    assert card["targets"] == ["age", "fluid_intelligence"] and card["data"]["n_rois"] == 16
    assert card["model"]["readout"] is None and len(card["model"]["networks"]) == 1  # the network alone
    assert card["data"]["atlas"]["name"] == "atlas.nii.gz" and len(card["data"]["atlas"]["sha256"]) == 64
    assert card["data"]["atlas"]["roi_labels"] == list(range(1, 17)) and card["data"]["t_r"] == 2.0
    assert card["bias_correction"]["slope"] == pytest.approx(-0.5) and card["bias_correction"]["n_subjects"] == 4
    fit_on = cli.datamodule.fold_subject_ids("train") + cli.datamodule.fold_subject_ids("val")
    assert card["training_cohort"]["n_subjects"] == len(fit_on) == 15  # 3 of 4 folds of 20
    assert card["brainlit_version"] == brainlit.__version__
    with monkeypatch.context() as patched:
        no_pickle(patched)
        model = brainlit.load_model(tmp_path / "model")
    ids, runs = cohort_runs(tmp / "cache.h5")
    loaded = model.predict(runs, ids)
    in_memory = BrainAgeModel(card, ModelParts([cli.model.eval()], card["data"])).predict(runs, ids)
    for column in ("age_pred", "fluid_intelligence_pred"):
        np.testing.assert_allclose(loaded[column], in_memory[column], atol=1e-5, rtol=0)
    assert loaded[["age_pred", "fluid_intelligence_pred"]].std().gt(0).all()
    assert loaded["age_true"].isna().all() and "brain_age_gap_corrected" in loaded  # no ages given


def test_a_folder_of_readout_network_and_combination_predicts_their_combination(fitted, tmp_path, monkeypatch):
    cli, ckpt, tmp = fitted
    ids, runs = cohort_runs(tmp / "cache.h5")
    y = CacheReader(tmp / "cache.h5").phenotypes.loc[ids, ["age", "fluid_intelligence"]]
    readout = ConnectivityRidge(anchor="age").fit([r.T for r in runs], y)
    networks, data = networks_of([ckpt])
    combination = NetworkShare.from_state({"shrink": False, "readout_only": [], "targets": list(y.columns),
                                           "weights": [0.25, 0.0], "n_subjects": 20})
    write_model_folder(tmp_path / "model", ModelParts(networks, data, readout, combination))
    card = json.loads((tmp_path / "model" / "brainlit_model.json").read_text())
    assert card["model"]["readout"]["connectivity"] == "both" and card["model"]["combination"]["weights"] == [0.25, 0.0]
    with monkeypatch.context() as patched:
        no_pickle(patched)
        model = brainlit.load_model(tmp_path / "model")
    predicted = model.predict(runs, ids)
    network = BrainAgeModel(card, ModelParts([cli.model.eval()], card["data"])).predict(runs, ids)
    closed_form = readout.predict([r.T for r in runs])
    expected_age = closed_form[:, 0] + 0.25 * (network["age_pred"] - closed_form[:, 0])
    np.testing.assert_allclose(predicted["age_pred"], expected_age, atol=1e-4)
    np.testing.assert_allclose(predicted["fluid_intelligence_pred"], closed_form[:, 1], atol=1e-4)  # weight 0


def test_applying_to_a_different_roi_count_or_short_runs_names_both(fitted, tmp_path):
    _, ckpt, _ = fitted
    model = brainlit.load_model(main(["export", ckpt, str(tmp_path / "m")]) or tmp_path / "m")
    with pytest.raises(BrainlitDataError, match=r"trained on 16 ROIs \(atlas atlas.nii.gz\).* 12 ROIs"):
        model.predict(np.zeros((2, 80, 12), np.float32))
    with pytest.raises(BrainlitDataError, match="its run has 20 time points, the model needs at least 32"):
        model.predict([np.zeros((20, 16), np.float32)], ["sub-short"])


def test_apply_predicts_a_cohort_without_ages_with_the_stored_correction(fitted, tiny_bids, tmp_path, capsys):
    _, ckpt, _ = fitted
    oof = tmp_path / "oof.csv"
    pd.DataFrame({"age_true": [0.0, 50.0, 100.0], "age_pred": [10.0, 50.0, 90.0]}).to_csv(oof, index=False)
    main(["export", ckpt, str(tmp_path / "model"), "--bias_from", str(oof)])
    table = pd.read_csv(tiny_bids / "participants.tsv", sep="\t")
    no_labels = tmp_path / "participants.tsv"
    table.drop(columns=["age", "fluid_intelligence"]).to_csv(no_labels, sep="\t", index=False)
    args = ["apply", "--model", str(tmp_path / "model"), "--root", str(tiny_bids),
            "--atlas", str(tiny_bids / "atlas.nii.gz")]
    main([*args, "--out", str(tmp_path / "blind.csv"), "--data.phenotypes_path", str(no_labels)])
    blind = pd.read_csv(tmp_path / "blind.csv")
    assert len(blind) == 20 and blind[["age_pred", "fluid_intelligence_pred"]].notna().all().all()
    assert blind["age_true"].isna().all() and "fluid_intelligence_true" not in blind

    main([*args, "--out", str(tmp_path / "aged.csv")])
    aged = pd.read_csv(tmp_path / "aged.csv").set_index("subject_id")
    truth = table.set_index("participant_id")
    np.testing.assert_allclose(aged["age_true"], truth.loc[aged.index, "age"])
    np.testing.assert_allclose(aged["age_pred"], blind.set_index("subject_id").loc[aged.index, "age_pred"])
    # the correction is the stored one (slope -0.2, intercept 10 from oof.csv), never refit here
    expected = aged["brain_age_gap"] - (-0.2 * aged["age_true"] + 10.0)
    np.testing.assert_allclose(aged["brain_age_gap_corrected"], expected, atol=1e-6)
    cohort = json.loads((tmp_path / "model" / "brainlit_model.json").read_text())["training_cohort"]
    outside = (aged["age_true"] < cohort["age_min"]) | (aged["age_true"] > cohort["age_max"])
    assert aged["outside_training_ages"].eq(outside).all() and 0 < outside.sum() < 20  # test-fold extremes
    printed = capsys.readouterr().out
    mae = (aged["age_pred"] - aged["age_true"]).abs().mean()
    *_, line = [line.split() for line in printed.splitlines() if line.strip().startswith("all")]
    assert line == ["all", "20", "0", f"{mae:.2f}", "n/a", "0"]  # site, subjects, controls, MAE, coverage, flagged
    assert (tmp_path / "aged.png").stat().st_size > 10_000 and f"Figure: {tmp_path / 'aged.png'}" in printed


def test_apply_refuses_another_atlas_naming_both(fitted, tiny_bids, tmp_path, capsys):
    _, ckpt, _ = fitted
    main(["export", ckpt, str(tmp_path / "model")])
    other = tmp_path / "other_atlas.nii.gz"
    other.write_bytes((tiny_bids / "atlas.nii.gz").read_bytes() + b"\0")
    with pytest.raises(SystemExit):
        main(["apply", "--model", str(tmp_path / "model"), "--root", str(tiny_bids), "--atlas", str(other),
              "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith(f"error: --atlas {other} (sha256 ") and "trained with (atlas.nii.gz, sha256 " in err


def test_apply_resamples_a_cohort_at_another_tr_only_when_asked(fitted, tmp_path, capsys):
    _, ckpt, _ = fitted
    main(["export", ckpt, str(tmp_path / "model")])
    from brainlit.data.simulate.cohort import simulate_cohort

    fast = tmp_path / "fast"  # the training cohort's 160 s at TR 0.8 s: 200 volumes, 80 at the model's 2 s
    simulate_cohort(fast, n_subjects=4, n_rois=16, n_volumes=200, t_r=0.8, seed=3)
    args = ["apply", "--model", str(tmp_path / "model"), "--root", str(fast), "--atlas", str(fast / "atlas.nii.gz")]
    with pytest.raises(SystemExit):
        main([*args, "--out", str(tmp_path / "rejected.csv")])
    err = capsys.readouterr().err
    assert "every run was skipped" in err and "TR 0.800 s differs from the cohort's 2.000 s; set data.resample_tr true" in err
    main([*args, "--out", str(tmp_path / "resampled.csv"), "--data.resample_tr", "true"])
    resampled = pd.read_csv(tmp_path / "resampled.csv")
    assert len(resampled) == 4 and resampled["age_pred"].notna().all()
    assert CacheReader(tmp_path / "resampled.cache.h5").n_timepoints(resampled["subject_id"][0]) == 80
