"""The benchmark's own arithmetic: CPU batch sizes, peak memory, factorised-vs-joint ratios."""

import sys

import numpy as np
import pandas as pd
import pytest
import torch

from brainlit.data.simulate import GenerativeModel, simulate_roi_timeseries
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_models  # noqa: E402
from measure import PeakMemory  # noqa: E402


def test_on_a_cpu_only_the_expensive_cases_get_a_smaller_batch():
    args = bench_models.parse_args([])
    assert bench_models.cpu_batch(16, 100, 128, "factorized", args) == 16
    joint = bench_models.cpu_batch(16, 400, 128, "joint", args)
    assert 1 <= joint < 4 < bench_models.cpu_batch(16, 400, 128, "factorized", args)
    assert bench_models.cpu_batch(16, 400, 261, "joint", args) == 1
    args.cpu_gflop = 0  # the acceptance comparison: the batch asked for, however slow
    assert bench_models.cpu_batch(16, 400, 261, "joint", args) == 16
    cases = bench_models.model_cases(args, torch.device("cpu"))
    assert len(cases) == 2 * 3 * 2 * 2 and all(c["note"] == "" for c in cases)


def test_peak_memory_sees_a_step_that_allocates_256_mib():
    with PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(64 * 2**20)  # 256 MiB of float32, touched
        del block
    assert 200 < memory.mib < 400


def test_one_tiny_case_of_each_attention_gives_rows_and_a_speedup(one_thread):
    args = bench_models.parse_args(["--quick"])
    rows = [
        bench_models.run_case(
            {
                "model": "regressor",
                "attention": attention,
                "rois": 16,
                "length": 32,
                "batch": 2,
                "precision": "fp32",
                "scan": "torch",
                "note": "",
            },
            args,
            torch.device("cpu"),
        )
        for attention in ("factorized", "joint")
    ]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert all(
        r["subjects_per_s"] > 0 and r["tokens"] == 64 and r["peak_mib"] is not None for r in rows
    )
    (ratio,) = bench_models.speedups(rows)
    expected = rows[0]["subjects_per_s"] / rows[1]["subjects_per_s"]
    assert ratio["batch"] == "2 / 2" and abs(ratio["speedup"] - expected) < 1e-9


def test_a_failing_case_is_a_row_not_a_crash(one_thread):
    args = bench_models.parse_args(["--quick"])
    row = bench_models.run_case(
        {
            "model": "lmae",
            "attention": "factorized",
            "rois": 16,
            "length": 4096,
            "batch": 1,
            "precision": "fp32",
            "scan": "-",
            "note": "",
        },
        args,
        torch.device("cpu"),
    )  # 512 patches > max_patches 128
    assert row["status"] == "error" and row["note"]


def test_the_dynamics_probe_table_has_a_row_per_scan_length_and_dwell_draw():
    import dynamics_probe

    row = dynamics_probe.probe_row(n_volumes=40, n_subjects=6, drawn=False, seed=0)
    assert row["n_volumes"] == 40 and row["dwell"].startswith("log-uniform")
    assert -1.0 <= row["spearman_r"] <= 1.0 and -1.0 <= row["partial_r_age"] <= 1.0
    assert dynamics_probe.probe_row(n_volumes=40, n_subjects=6, drawn=True, seed=0)["dwell"].startswith("model")


def test_memory_budgets_read_as_people_write_them():
    import bench_memory

    assert bench_memory.parse_bytes("8GiB") == bench_memory.parse_bytes("8G") == 8 * 2**30
    assert bench_memory.parse_bytes("512MiB") == 512 * 2**20 and bench_memory.parse_bytes("1000") == 1000
    with pytest.raises(Exception, match="not a memory size"):
        bench_memory.parse_bytes("lots")


def test_the_memory_breakdown_names_where_a_training_forward_keeps_its_tensors(one_thread):
    import bench_memory

    task = bench_memory.build_task(REPO / "configs/camcan/finetune_age.yaml", 10, checkpoint=False)
    assert task.hparams.crop_len == 128 and task.model.encoder.transformer.checkpoint is False
    with bench_memory.kept_by_component(task.model) as kept:
        bench_memory.loss_of(task.train(), torch.randn(2, 10, 32))
    assert {"encoder: attention across ROIs", "encoder: MLP", "RWMOE: experts", "SSM"} <= kept.keys()
    assert kept["encoder: MLP"] > kept["head"] > 0


def test_the_dynamics_reach_table_reads_the_readout_probes_scan_and_true_dwell_on_the_same_folds():
    import dynamics_reach

    model = GenerativeModel(dynamics="switching", **dynamics_reach.model_overrides(["dwell_sd=0.8"]))
    cohort = simulate_roi_timeseries(30, 32, 60, seed=0, model=model)
    rows = {r["features"]: r for r in dynamics_reach.reach_rows(cohort, n_folds=3, repeats=1)}
    assert list(rows) == list(dynamics_reach.MODELS)
    assert all(np.isfinite(r[t]) for r in rows.values() for t in dynamics_reach.TARGETS)
    assert rows[dynamics_reach.TRUE]["log_dwell"] < 1e-6 < rows[dynamics_reach.READOUT]["log_dwell"]  # the target itself
    assert rows[dynamics_reach.SCAN]["log_dwell"] < rows[dynamics_reach.READOUT]["log_dwell"]  # the count shows the speed
    mean, low, high = rows[dynamics_reach.TRUE]["log_dwell vs read-out"]
    assert low < mean < high and mean == pytest.approx(-rows[dynamics_reach.READOUT]["log_dwell"])


def test_the_capability_toy_hides_the_speed_from_static_statistics_but_not_from_windowed_fc(tmp_path):
    import dynamics_capability as toy

    from brainlit.data.simulate.probe import switching_course

    rng = np.random.default_rng(0)
    (fast, n_fast), (slow, n_slow) = (toy.subject_run(rng, dwell, 16, 4000, noise=0.0) for dwell in (2.0, 200.0))
    assert n_fast > 10 * n_slow > 0  # the state changes the scan ceiling reads
    for run in (fast, slow):  # every ROI is the same AR(1) process, whatever the speed
        lag1 = [np.corrcoef(roi[1:], roi[:-1])[0, 1] for roi in run]
        np.testing.assert_allclose(np.mean(lag1), 0.8, atol=0.01)
    modules = np.arange(16) % 2
    course = {name: switching_course(run, modules, window=20).std() for name, run in (("fast", fast), ("slow", slow))}
    assert course["slow"] > 1.3 * course["fast"]  # windowed between-network coupling swings with slow switching
    runs, latents = toy.simulate(6, 4, 40, (3.0, 40.0), seed=1)
    toy.write_cohort(tmp_path, runs, latents)
    assert np.load(tmp_path / "sub-0006.npy").shape == (40, 4)
    written = pd.read_csv(tmp_path / "simulation/latents.tsv", sep="\t")
    assert list(written.columns) == ["participant_id", "dynamics_log_mean_dwell", "state_switches"]


def test_the_new_site_table_measures_each_row_against_three_references():
    import argparse

    import new_site

    def row(mae: float) -> dict:
        return {"n": 80, "mae": mae, "coverage": 0.9, "coverage young": 0.9, "coverage middle": 0.9,
                "coverage old": 0.9, "flagged": 0.05}
    rows = {"no adaptation": row(12.0), "ComBat from 20 controls": row(11.5),
            "the same people at training site 0 (reference)": row(11.0), new_site.SCANNER_ROW: row(11.75)}
    table = new_site.render(rows, 12.5, argparse.Namespace(seed=81, sites=3, site_seed=None, held_out_tr=0.8))
    combat = next(line for line in table.splitlines() if line.startswith("| ComBat"))
    # no excess over CV (12.0 < 12.5): "-"; half the paired excess; twice the excess over the scanner's own model
    assert "| - | 50% | 200% |" in combat
    assert table.startswith("# Brain age at a held-out site (seed 81, 3 sites, held-out TR 0.8 s)")


def test_the_label_efficiency_probe_scores_each_encoder_on_the_experiment_s_own_folds():
    from label_efficiency import READOUT, probe_rows

    rng = np.random.default_rng(0)
    ids = [f"sub-{i:02d}" for i in range(40)]
    age = rng.uniform(20, 80, 40)
    phenotypes = pd.DataFrame({"age": age}, index=pd.Index(ids, name="participant_id"))
    informative = np.column_stack([age + rng.normal(0, 2, 40), rng.normal(size=(40, 5))])
    folds = pd.DataFrame({"model": READOUT, "target": "age", "repeat": 0, "fold": np.arange(40) % 4,
                          "subject_id": ids})
    rows = probe_rows({"aged": informative, "noise": rng.normal(size=(40, 6))}, phenotypes,
                      pd.concat([folds, folds.assign(model="brainlit")]))
    assert len(rows) == 8 and set(rows.n_test) == {10}
    means = rows.groupby("model")["mae"].mean()
    assert means["aged"] < 4 < 10 < means["noise"]
