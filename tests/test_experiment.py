"""`make reproduce-camcan QUICK=1` on a generated Cam-CAN-shaped tree, end to end."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from brainlit import load_model
from brainlit.data.cache import CacheReader
from brainlit.experiment import experiment_main
from tests.conftest import REPO

COLUMNS = ["model", "target", "repeat", "fold", "n_test", "mae", "pearson_r", "pearson_r_age_partial"]


def test_quick_reproduction_writes_results_for_all_models_and_targets(tiny_camcan, tmp_path, capsys):
    out = tmp_path / "camcan"
    args = ["--root", str(tiny_camcan), "--atlas", str(tiny_camcan / "atlas.nii.gz"),
            "--configs", str(REPO / "configs" / "camcan"), "--out", str(out), "--quick", "true",
            "--n_folds", "2"]
    experiment_main(args)
    results = pd.read_csv(out / "results.csv")
    assert list(results.columns) == COLUMNS
    assert set(results["target"]) == {"age", "fluid_intelligence"}
    models = {"brainlit", "tangent_ridge", "kernel_ridge_fc", "dfc_ridge", "mean", "classical ensemble",
              "brainlit + classical"}
    assert set(results["model"]) == models
    assert len(results) == 2 * 7 * 2  # targets x models x folds
    assert np.isfinite(results["mae"]).all()
    learned = results[results["model"] != "mean"]
    assert np.isfinite(learned["pearson_r"]).all()
    fluid = learned[learned.target == "fluid_intelligence"]
    assert np.isfinite(fluid["pearson_r_age_partial"]).all()
    assert results.loc[results.target == "age", "pearson_r_age_partial"].isna().all()

    # every model predicted the same test subjects of each fold
    predictions = pd.read_csv(out / "predictions.csv")
    subjects = predictions.groupby(["model", "target", "fold"])["subject_id"].apply(frozenset)
    assert subjects.groupby(["target", "fold"]).nunique().eq(1).all()

    report = (out / "results.md").read_text()
    assert "5.343" in report and "2.940" in report
    assert "(best classical): MAE" in report and "## LMAE reconstruction" in report
    corrupt = "sub-CC110016"
    assert corrupt in report  # listed as skipped, with its reason
    printed = capsys.readouterr().out
    assert corrupt in printed and "spatial_ridge" in printed

    # the final model of each config, fit on every labelled subject, is a folder to apply
    assert f"Model folder: {out / 'model' / 'finetune_age'}" in printed
    for config, targets in (("finetune_age", ["age"]), ("finetune_fluid", ["fluid_intelligence"])):
        card = json.loads((out / "model" / config / "brainlit_model.json").read_text())
        labelled = len(pd.read_csv(out / config / "repeat0" / "fold0" / "splits.csv"))
        assert card["targets"] == targets and card["training_cohort"]["n_subjects"] == labelled
        cv = {(row["model"], row["target"]): row["mae"] for row in card["cv_results"]}
        mean_mae = results[(results.model == "brainlit") & (results.target == targets[0])]["mae"].mean()
        assert cv[("brainlit", targets[0])] == pytest.approx(mean_mae)
    age_card = json.loads((out / "model" / "finetune_age" / "brainlit_model.json").read_text())
    assert "out-of-fold" in age_card["bias_correction"]["fit_on"] and age_card["bias_correction"]["n_subjects"] == 15
    assert age_card["training_cohort"]["age_min"] < age_card["training_cohort"]["age_max"]
    reader = CacheReader(out / "cache.h5")
    applied = load_model(out / "model" / "finetune_age").predict(
        [reader.timeseries(s).T for s in reader.subject_ids], reader.subject_ids,
        reader.phenotypes.loc[reader.subject_ids, "age"])
    assert len(applied) == 15 and np.isfinite(applied["brain_age_gap_corrected"]).all()

    # TensorBoard's first card: the best validation MAE of each fine-tuning run, never -1
    hp_metrics = {}
    for events_file in out.rglob("events.out.tfevents.*"):
        events = EventAccumulator(str(events_file))
        events.Reload()
        if "hp_metric" in events.Tags()["scalars"]:
            hp_metrics[events_file] = [e.value for e in events.Scalars("hp_metric")]
    finetune_runs = list(out.glob("finetune_*/repeat0/fold*/local/member0/logs"))
    assert len(finetune_runs) == 4 and len(hp_metrics) >= 4 + 2  # folds, and the final models
    assert all(v != -1 and v > 0 for values in hp_metrics.values() for v in values)

    # a re-run resumes: nothing is recomputed, the same table comes back
    def fold_outputs() -> dict:
        patterns = ("*/repeat*/baselines.csv", "*/repeat*/fold*/splits.csv",
                    "*/repeat*/fold*/*/member*/predictions.csv", "final/*/member*/final.ckpt")
        return {p: p.stat().st_mtime_ns for pattern in patterns for p in out.glob(pattern)}

    before = fold_outputs()
    assert len(before) == 2 * (1 + 2 + 2 + 1)  # per config: baselines, splits and predictions per fold, final
    experiment_main(args)
    assert fold_outputs() == before
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), results)


def test_per_fold_pretraining_ablation_never_shows_test_subjects_to_lmae(tiny_camcan, tmp_path):
    configs = tmp_path / "configs"
    for name in ("camcan/pretrain.yaml", "camcan/finetune_age.yaml", "quick/pretrain.yaml", "quick/finetune.yaml"):
        (configs / name).parent.mkdir(parents=True, exist_ok=True)
        (configs / name).write_text((REPO / "configs" / name).read_text())
    out = tmp_path / "ablation"
    experiment_main(["--root", str(tiny_camcan), "--atlas", str(tiny_camcan / "atlas.nii.gz"),
                     "--configs", str(configs / "camcan"), "--out", str(out), "--quick", "true",
                     "--n_folds", "2", "--pretrain", "per_fold", "--pretrain_ablation", "true",
                     "--final_model", "false"])
    results = pd.read_csv(out / "results.csv")
    brainlit = {"brainlit", "brainlit (random masking)", "brainlit (no pretraining)"}
    assert brainlit <= set(results["model"])
    for fold in (0, 1):
        splits = pd.read_csv(out / "finetune_age" / "repeat0" / f"fold{fold}" / "splits.csv")
        test = set(splits.loc[splits.split == "test", "subject_id"])
        for variant in ("local", "random"):
            logs = out / "pretrain" / variant / "finetune_age" / "repeat0" / f"fold{fold}" / "logs"
            config = yaml.safe_load((logs / "config.yaml").read_text())
            assert config["data"]["split_file"].endswith(f"fold{fold}/splits.csv")
            assert config["model"]["init_args"]["mask_strategy"] == variant
            seen = pd.read_csv(config["data"]["split_file"])
            assert not test & set(seen.loc[seen.split != "test", "subject_id"])
    report = (out / "results.md").read_text()
    assert "| local |" in report and "| random |" in report  # diagnostics of both maskings


def test_a_closed_form_readout_comes_out_as_its_own_column():
    from brainlit.experiment import _prediction_frame

    batch = {"subject_id": ["a", "b"], "true": torch.tensor([[30.0, 4.0], [60.0, 2.0]]),
             "pred": torch.tensor([[31.0, 3.0], [58.0, 2.5]]), "readout": torch.tensor([[32.0, 3.5], [57.0, 2.0]])}
    frame = _prediction_frame([batch], ["age", "fluid_intelligence"]).set_index(["target", "subject_id"])
    assert frame.loc[("age", "b")].tolist() == [60.0, 58.0, 57.0]  # y_true, y_pred, y_readout
    without = {k: v for k, v in batch.items() if k != "readout"}
    assert list(_prediction_frame([without], ["age", "fluid_intelligence"])) == ["target", "subject_id", "y_true",
                                                                                "y_pred"]
