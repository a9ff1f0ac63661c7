"""Averages of models' test predictions: the classical ensemble and brainlit + classical."""

import pandas as pd
import pytest

from brainlit.ensembles import CLASSICAL_ENSEMBLE, add_ensembles
from brainlit.metrics import score_predictions
from brainlit.report import paired_differences


def _predictions(models: dict[str, list[float]], y_true: list[float]) -> pd.DataFrame:
    rows = [(model, "age", 0, 0, f"sub-{i}", y_true[i], pred, y_true[i])
            for model, preds in models.items() for i, pred in enumerate(preds)]
    return pd.DataFrame(rows, columns=["model", "target", "repeat", "fold", "subject_id", "y_true", "y_pred", "age"])


def test_an_ensemble_averages_its_members_subject_by_subject():
    predictions = _predictions(
        {"brainlit": [30, 50], "tangent_ridge": [40, 70], "kernel_ridge_fc": [50, 60]}, [40, 60]
    )
    out = add_ensembles(predictions).set_index(["model", "subject_id"])
    assert out.loc[(CLASSICAL_ENSEMBLE, "sub-0"), "y_pred"] == pytest.approx(45.0)
    assert out.loc[("brainlit + classical", "sub-1"), "y_pred"] == pytest.approx(60.0)
    assert out.loc[("brainlit + classical", "sub-1"), "y_true"] == 60 == out.loc[("brainlit + classical", "sub-1"), "age"]


def test_an_ensemble_needs_every_member_for_a_subject_and_in_the_table():
    predictions = _predictions({"tangent_ridge": [40, 70], "kernel_ridge_fc": [50, 60]}, [40, 60])
    predictions = predictions.drop(index=3)  # kernel ridge did not predict sub-1
    models = add_ensembles(predictions).groupby("model")["subject_id"].apply(list)
    assert models[CLASSICAL_ENSEMBLE] == ["sub-0"]
    assert "brainlit + classical" not in models  # no brainlit in the table at all


def test_the_classical_ensemble_is_the_bar_when_it_beats_each_classical_model():
    # the two classical models err in opposite directions: their average is exact
    y_true = [20.0, 40.0, 60.0, 80.0]
    predictions = pd.concat([
        _predictions({"brainlit": [25, 45, 55, 75], "tangent_ridge": [30, 50, 70, 90],
                      "kernel_ridge_fc": [10, 30, 50, 70]}, y_true).assign(fold=fold)
        for fold in range(2)
    ])  # fmt: skip
    diffs = paired_differences(score_predictions(add_ensembles(predictions))).set_index("model")
    assert (diffs.reference == CLASSICAL_ENSEMBLE).all()
    assert diffs.loc["brainlit", "diff_mean"] == pytest.approx(5.0)  # MAE 5 vs 0
