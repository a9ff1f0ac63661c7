"""Result tables and figures."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy import stats

from brainlit.report import PAPER, format_table, paired_differences, summarize, to_markdown
from brainlit.viz import plot_brain_age, plot_expert_maps, plot_predictions, plot_reconstruction


@pytest.fixture
def results():
    rows = [
        ("brainlit", "age", k, 10, mae, r)
        for k, (mae, r) in enumerate([(1, 0.5), (2, 0.7), (3, 0.9)])
    ]
    rows += [("mean", "age", k, 10, 10.0 + k, np.nan) for k in range(3)]
    rows += [("kernel_ridge_fc", "fluid_intelligence", k, 10, 4.0, 0.4) for k in range(2)]
    return pd.DataFrame(rows, columns=["model", "target", "fold", "n_test", "mae", "pearson_r"])


def test_summarize_mean_sd_and_t_interval(results):
    summary = summarize(results).set_index(["model", "target"])
    row = summary.loc[("brainlit", "age")]
    half = stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)  # sd of (1, 2, 3) is 1
    assert (
        row.n_folds == 3 and row.mae_mean == pytest.approx(2.0) and row.mae_sd == pytest.approx(1.0)
    )
    assert (row.mae_ci_low, row.mae_ci_high) == pytest.approx((2 - half, 2 + half))
    assert row.r_mean == pytest.approx(0.7) and row.r_sd == pytest.approx(0.2)
    assert np.isnan(summary.loc[("mean", "age")].r_mean)
    constant = summary.loc[("kernel_ridge_fc", "fluid_intelligence")]
    assert constant.mae_sd == 0 and constant.mae_ci_low == pytest.approx(4.0)
    assert list(summarize(results).model) == ["brainlit", "mean", "kernel_ridge_fc"]  # by target


def test_paired_difference_against_the_best_classical_model(results):
    extra = pd.DataFrame([("tangent_ridge", "age", k, 10, 2.5 + k, 0.5) for k in range(3)],
                         columns=results.columns)
    diffs = paired_differences(pd.concat([results, extra])).set_index(["target", "model"])
    row = diffs.loc[("age", "brainlit")]
    assert row.reference == "tangent_ridge"  # mean MAE 3.5 beats the mean predictor's 11
    assert row.n == 3 and row.diff_mean == pytest.approx(-1.5)  # (1-2.5, 2-3.5, 3-4.5)
    assert row.diff_ci_low == pytest.approx(-1.5) and row.diff_ci_high == pytest.approx(-1.5)
    assert "brainlit - tangent_ridge (best classical): MAE -1.50" in format_table(pd.concat([results, extra]))


def test_what_the_network_adds_is_brainlit_minus_its_readout_fold_by_fold(results):
    readout = pd.DataFrame([("brainlit read-out", "age", k, 10, mae, 0.5) for k, mae in enumerate([1.5, 1.5, 3.5])],
                           columns=results.columns)
    diffs = paired_differences(pd.concat([results, readout])).set_index(["target", "model", "reference"])
    row = diffs.loc[("age", "brainlit", "brainlit read-out")]
    assert row.n == 3 and row.diff_mean == pytest.approx(-1 / 6)  # (1-1.5, 2-1.5, 3-3.5) / 3
    assert diffs.loc[("age", "brainlit read-out", "mean")].diff_mean == pytest.approx(-(11 - 13 / 6))
    table = format_table(pd.concat([results, readout]))
    assert "brainlit - brainlit read-out (what the network adds): MAE -0.17" in table
    assert "what the network adds" not in format_table(results)  # no read-out scored, no line


def test_what_pretraining_adds_is_the_network_minus_the_one_fine_tuned_from_scratch(results):
    networks = pd.DataFrame([(model, "age", k, 10, mae + k, 0.5) for model, mae in
                             (("brainlit network", 4.0), ("brainlit network (no pretraining)", 5.0),
                              ("brainlit network (random masking)", 4.5)) for k in range(3)], columns=results.columns)
    diffs = paired_differences(pd.concat([results, networks])).set_index(["target", "model", "reference"])
    assert diffs.loc[("age", "brainlit network", "brainlit network (no pretraining)")].diff_mean == pytest.approx(-1)
    assert "brainlit network - brainlit network (no pretraining) (what pretraining adds to the network): MAE -1.00" \
        in format_table(pd.concat([results, networks]))
    assert "what pretraining adds" not in format_table(pd.concat([results, networks.iloc[:3]]))  # no scratch, no line


def test_r_ignores_folds_too_small_to_correlate(results):
    tiny = pd.DataFrame([("brainlit", "age", 3, 2, 5.0, -1.0)], columns=results.columns)
    row = summarize(pd.concat([results, tiny])).set_index(["model", "target"]).loc[("brainlit", "age")]
    assert row.n_folds == 4 and row.r_mean == pytest.approx(0.7)


def test_markdown_has_paper_rows_and_skipped_subjects(results):
    skipped = pd.DataFrame(
        {
            "subject_id": ["sub-CC110012"],
            "file": ["/d/sub-CC110012_bold.nii.gz"],
            "reason": ["sub-CC110012 (/d/sub-CC110012_bold.nii.gz): EOFError: truncated | gzip"],
        }
    )
    text = to_markdown(results, skipped, title="demo")
    assert text.startswith("# demo")
    assert "| paper (Cam-CAN) | 5.343 | 0.928 | - |" in text
    assert f"| paper (Cam-CAN) | {PAPER['fluid_intelligence']['mae']:.3f} |" in text
    assert "| brainlit | 2.00 ± 1.00 [" in text and "| mean | 11.00 ± 1.00 [" in text
    skipped_section = text.split("## Skipped subjects")[1]
    assert "sub-CC110012" in skipped_section and "truncated \\| gzip" in skipped_section
    # the subject and file have their own columns: the reason does not repeat them
    assert "| sub-CC110012 | /d/sub-CC110012_bold.nii.gz | EOFError: truncated \\| gzip |" in skipped_section
    assert "None." in to_markdown(results).split("## Skipped subjects")[1]


def test_format_table_is_aligned(results):
    lines = format_table(results).splitlines()
    assert lines[0].split() == ["target", "model", "MAE", "r", "r", "(age-partialled)", "folds"]
    start = lines[0].index("MAE")
    body = [line for line in lines[2:] if line and " - " not in line]
    assert all(line[start - 2 : start] == "  " for line in body)
    assert any("paper (Cam-CAN)" in line and "5.343" in line for line in body)
    assert any(line.startswith("age") and "mean" in line and "n/a" in line for line in body)


def test_plot_predictions_titles_mae_and_r():
    figure = plot_predictions([1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.5, 4.0], "age")
    assert isinstance(figure, Figure) and len(figure.axes) == 1
    title = figure.axes[0].get_title()
    assert (
        "MAE 0.25" in title
        and f"r {np.corrcoef([1, 2, 3, 4], [1.5, 2, 2.5, 4])[0, 1]:.3f}" in title
    )
    other = Figure()
    ax = other.add_subplot()
    assert plot_predictions([1, 2], [2, 1], "fluid_intelligence", ax=ax) is other


def test_expert_maps_glass_brains_and_heatmap_fallback():
    rng = np.random.default_rng(0)
    weights = rng.dirichlet(np.ones(3), size=10)  # [R, E]
    coords = rng.uniform(-50, 50, (10, 3))
    figure = plot_expert_maps(weights, coords)
    assert [t.get_text() for ax in figure.axes for t in ax.texts] == [
        "expert 0",
        "expert 1",
        "expert 2",
    ]
    heatmap = plot_expert_maps(weights, None, expert_names=["a", "b", "c"])
    assert len(heatmap.axes) == 2  # image + colour bar
    assert [t.get_text() for t in heatmap.axes[0].get_xticklabels()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="roi_coords"):
        plot_expert_maps(weights, coords[:5])


def test_markdown_lists_partial_r_diagnostics_and_dropped_subjects(results):
    results = results.assign(pearson_r_age_partial=0.25)
    diagnostics = {"local": {"lmae": 0.6, "zero": 0.98, "interp": 1.7, "spatial_ridge": 0.7,
                             "lmae_vs_best_simple": 0.6 / 0.7}}
    dropped = pd.DataFrame({"subject_id": ["sub-7"], "reason": ["no value of age"]})
    text = to_markdown(results, diagnostics=diagnostics, dropped=dropped)
    fluid = text.split("## fluid_intelligence")[1]
    assert "| model | MAE | r | r (age-partialled) | folds |" in fluid
    assert "| kernel_ridge_fc | 4.00 ± 0.00 [4.00, 4.00] | 0.400 ± 0.000 [0.400, 0.400] | 0.250" in fluid
    assert "| local | 0.600 | 0.980 | 1.700 | 0.700 | 0.857 |" in text
    assert "sub-7" in text.split("## Subjects without a target value")[1]


def test_plot_reconstruction_draws_one_panel_per_roi():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(3, 40))
    hidden = np.zeros((3, 40), bool)
    hidden[:, 10:20] = True
    figure = plot_reconstruction(truth, hidden, truth + 0.1, np.zeros((3, 40)), "spatial_ridge", [4, 7, 9])
    assert [ax.get_ylabel() for ax in figure.axes] == ["ROI 4", "ROI 7", "ROI 9"]
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert labels == ["hidden", "truth", "LMAE", "spatial_ridge"]


def test_an_ablation_folder_keeps_each_configs_rows_and_what_its_network_adds(tmp_path):
    from brainlit.experiment import Experiment
    from brainlit.report import paired_differences

    configs = []
    for name, targets in (("finetune_a", ["age"]), ("finetune_b", ["age"]), ("finetune_c", ["fluid"])):
        configs.append(tmp_path / f"{name}.yaml")
        configs[-1].write_text(f"data:\n  targets: {targets}\n")
    experiment = Experiment(str(tmp_path), str(tmp_path / "out"), configs=str(tmp_path))
    assert [experiment.config_suffix(c) for c in configs] == [" (finetune_a)", " (finetune_b)", ""]
    results = pd.DataFrame({
        "model": ["brainlit (a)", "brainlit read-out (a)", "brainlit (b)", "brainlit read-out (b)", "tangent_ridge"] * 2,
        "target": "age", "repeat": 0, "fold": [0] * 5 + [1] * 5,
        "mae": [10.0, 11.0, 12.0, 11.5, 11.2, 10.0, 11.0, 12.0, 11.5, 11.2],
    })
    adds = paired_differences(results).query("reference.str.startswith('brainlit read-out')")
    assert dict(zip(adds.model, adds.diff_mean, strict=True)) == {"brainlit (a)": -1.0, "brainlit (b)": 0.5}
    shared = results[results.model != "brainlit read-out (b)"].replace({"brainlit read-out (a)": "brainlit read-out"})
    adds = paired_differences(shared).query("reference == 'brainlit read-out'")  # one read-out for both configs
    assert dict(zip(adds.model, adds.diff_mean, strict=True)) == {"brainlit (a)": -1.0, "brainlit (b)": 1.0}


def test_the_brain_age_figure_draws_intervals_that_need_not_contain_the_prediction():
    # conformal intervals are centred on the de-biased prediction: a young subject's interval
    # can lie wholly below its (regressed-to-the-mean) prediction
    frame = pd.DataFrame({"age_true": [20.0, 50.0, 80.0], "age_pred": [35.0, 50.0, 70.0],
                          "age_lower": [10.0, 40.0, 62.0], "age_upper": [30.0, 60.0, 88.0],
                          "ood_flag": [False, True, False], "used_for_adaptation": [False, False, True]})
    figure = plot_brain_age(frame)
    assert isinstance(figure, Figure) and len(figure.axes[0].collections) >= 2
