"""Equal-weight averages of models' test predictions on identical folds.

Two averages go into every experiment's results:

- ``classical ensemble``: tangent ridge and kernel ridge on FC. Averaging two models whose
  errors are not identical lowers MAE, so a classical side of one model at a time would be a
  weaker bar than a user who compares can build in two lines; it counts as a classical model.
- ``brainlit + classical``: brainlit with the same two. Against the classical ensemble it
  answers whether brainlit's predictions carry anything the FC models miss: if its errors
  were the FC models' errors plus noise, adding it would not help.

The weights are equal (1 / members), not fit: weights fit on the test folds would favour the
ensembles, and fitting them on training folds needs out-of-fold predictions of brainlit on its
own training subjects (a nested cross-validation per fold).
"""

from __future__ import annotations

import pandas as pd

CLASSICAL_ENSEMBLE = "classical ensemble"
ENSEMBLES = {
    CLASSICAL_ENSEMBLE: ("tangent_ridge", "kernel_ridge_fc"),
    "brainlit + classical": ("brainlit", "tangent_ridge", "kernel_ridge_fc"),
}
KEYS = ["target", "repeat", "fold", "subject_id"]


def add_ensembles(
    predictions: pd.DataFrame, ensembles: dict[str, tuple[str, ...]] = ENSEMBLES
) -> pd.DataFrame:
    """``predictions`` with one more model per ensemble whose members are all present.

    Args:
        predictions: Long table with columns model, target, repeat, fold, subject_id, y_true,
            y_pred (and optionally age), one row per model and test subject.
        ensembles: ``{name: member model names}``.

    Returns:
        The input rows and, per ensemble, one row per (target, repeat, fold, subject) that every
        member predicted: ``y_pred`` is the members' mean. An ensemble with a member missing
        from the whole table is left out.
    """
    frames = [predictions]
    for name, members in ensembles.items():
        rows = predictions[predictions["model"].isin(members)]
        if set(members) - set(rows["model"]):
            continue
        extra = [c for c in predictions.columns if c not in (*KEYS, "model", "y_pred")]
        grouped = rows.groupby(KEYS, sort=False)
        mean = grouped.agg(n=("model", "nunique"), y_pred=("y_pred", "mean"), **{c: (c, "first") for c in extra})
        mean = mean[mean.pop("n") == len(members)].reset_index()
        frames.append(mean.assign(model=name)[predictions.columns])
    return pd.concat(frames, ignore_index=True)
