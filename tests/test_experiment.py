"""`make reproduce-camcan QUICK=1` on a generated Cam-CAN-shaped tree, end to end."""

import json

import numpy as np
import pandas as pd
import pytest
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
    models = {"brainlit", "brainlit read-out", "brainlit network", "tangent_ridge", "kernel_ridge_fc", "coskew_ridge",
              "dfc_ridge", "mean", "classical ensemble", "brainlit + classical"}
    assert set(results["model"]) == models
    assert len(results) == 2 * 10 * 2  # targets x models x folds
    assert np.isfinite(results["mae"]).all()
    # on 8 training subjects the stacked read-out may weigh both of its ridges at zero: a
    # constant prediction (the training mean) has no r
    learned = results[~results["model"].isin(["mean", "brainlit read-out", "brainlit"])]
    assert np.isfinite(learned["pearson_r"]).all()
    fluid = learned[learned.target == "fluid_intelligence"]
    assert np.isfinite(fluid["pearson_r_age_partial"]).all()
    assert results.loc[results.target == "age", "pearson_r_age_partial"].isna().all()

    # every model predicted the same test subjects of each fold
    predictions = pd.read_csv(out / "predictions.csv")
    subjects = predictions.groupby(["model", "target", "fold"])["subject_id"].apply(frozenset)
    assert subjects.groupby(["target", "fold"]).nunique().eq(1).all()
    # brainlit is its read-out plus the fold's weight times the network's difference from it
    wide = predictions.query("target == 'age' and fold == 0").pivot(index="subject_id", columns="model", values="y_pred")
    [weight] = json.loads((out / "finetune_age/repeat0/fold0/local/combination.json").read_text())["weights"]
    expected = wide["brainlit read-out"] + weight * (wide["brainlit network"] - wide["brainlit read-out"])
    np.testing.assert_allclose(wide["brainlit"], expected, atol=1e-6)
    # each network predicted the training subjects it left out: the evidence the weight was fit on
    held_out = pd.concat(pd.read_csv(p) for p in (out / "finetune_age/repeat0/fold0/local").glob("cross_fit*/member0/predictions.csv"))
    splits = pd.read_csv(out / "finetune_age/repeat0/fold0/splits.csv")
    train = set(splits.loc[splits.split == "train", "subject_id"])
    assert sorted(held_out.query("split == 'val'")["subject_id"]) == sorted(train)  # each exactly once

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
    finetune_runs = list(out.glob("finetune_*/repeat0/fold*/local/cross_fit*/member0/logs"))
    assert len(finetune_runs) == 8 and len(hp_metrics) >= 8  # configs x folds x cross-fitting parts
    assert all(v != -1 and v > 0 for values in hp_metrics.values() for v in values)

    # a re-run resumes: nothing is recomputed, the same table comes back
    def fold_outputs() -> dict:
        patterns = ("*/repeat*/classical.csv", "*/repeat*/fold*/splits.csv",
                    "*/repeat*/fold*/local/cross_fit*/member*/predictions.csv", "pretrain/local/lmae.ckpt")
        return {p: p.stat().st_mtime_ns for pattern in patterns for p in out.glob(pattern)}

    before = fold_outputs()
    assert len(before) == 2 * (1 + 2 + 2 * 2) + 1  # per config: classical, splits and networks per fold; LMAE
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
    variants = ("", " (random masking)", " (no pretraining)")
    assert {f"{model}{variant}" for model in ("brainlit", "brainlit network") for variant in variants} \
        <= set(results["model"])
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
