"""`make reproduce-camcan QUICK=1` on a generated Cam-CAN-shaped tree, end to end."""

import numpy as np
import pandas as pd

from brainlit.experiment import experiment_main
from tests.conftest import REPO


def test_quick_reproduction_writes_results_for_all_models_and_targets(tiny_camcan, tmp_path, capsys):
    out = tmp_path / "camcan"
    args = ["--root", str(tiny_camcan), "--atlas", str(tiny_camcan / "atlas.nii.gz"),
            "--configs", str(REPO / "configs" / "camcan"), "--out", str(out), "--quick", "true",
            "--n_folds", "2"]
    experiment_main(args)
    results = pd.read_csv(out / "results.csv")
    assert list(results.columns) == ["model", "target", "fold", "n_test", "mae", "pearson_r"]
    assert set(results["target"]) == {"age", "fluid_intelligence"}
    assert set(results["model"]) == {"brainlit", "kernel_ridge_fc", "mean"}
    assert len(results) == 2 * 3 * 2
    assert np.isfinite(results["mae"]).all()
    learned = results[results["model"] != "mean"]
    assert np.isfinite(learned["pearson_r"]).all()
    report = (out / "results.md").read_text()
    assert "5.343" in report and "2.940" in report
    corrupt = "sub-CC110016"
    assert corrupt in report  # listed as skipped, with its reason
    assert corrupt in capsys.readouterr().out

    # a re-run resumes: nothing is recomputed, the same table comes back
    before = {p: p.stat().st_mtime_ns for p in out.rglob("result.json")}
    experiment_main(args)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("result.json")} == before
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), results)
