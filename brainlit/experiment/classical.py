"""Step: the closed-form models on each repeat's folds: brainlit's read-out, the classical
baselines and, on a simulated cohort, the oracle rows. No network is involved."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from brainlit.baselines.oracle import oracle_inputs
from brainlit.baselines.run import predict_baselines, readout_folds
from brainlit.data.cache import CacheReader
from brainlit.data.simulate.cohort import LATENTS
from brainlit.experiment.context import Experiment, targets_of, write_atomically
from brainlit.experiment.folds import folds_of

log = logging.getLogger(__name__)


def classical_predictions(experiment: Experiment, config: Path, repeat: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The test predictions of every closed-form model on the folds of ``config`` in ``repeat``,
    and the read-out's leave-one-out predictions of each fold's training subjects.

    Both are saved (``classical.csv``, ``readout_oof.csv``) and read back on a re-run.
    """
    folder = experiment.fold_dir(config, repeat)
    test_path, oof_path = folder / "classical.csv", folder / "readout_oof.csv"
    if test_path.exists() and oof_path.exists():
        return pd.read_csv(test_path), pd.read_csv(oof_path)
    folds = folds_of(experiment, config, repeat)
    reader = CacheReader(experiment.cache_path)
    subjects = sorted({s for train, test in folds.values() for s in train + test})
    series = {s: reader.timeseries(s) for s in subjects}
    phenotypes = reader.phenotypes.loc[subjects]
    y = phenotypes[targets_of(config)]
    baselines = predict_baselines(series, y, folds)
    covariates = phenotypes[[c for c in ("site", "age") if c in phenotypes]]
    readout, oof = readout_folds(series, y, folds, experiment.stack.readout, latents_of(experiment, subjects), covariates)
    test = pd.concat([readout, baselines], ignore_index=True)
    write_atomically(oof_path, oof.to_csv(index=False))
    write_atomically(test_path, test.to_csv(index=False))
    return test, oof


def latents_of(experiment: Experiment, subjects: list[str]) -> pd.DataFrame | None:
    """A simulated cohort's true latent parameters, for the oracle rows; None for any other cohort."""
    path = Path(experiment.root) / LATENTS
    if not path.exists():
        return None
    table = pd.read_csv(path, sep="\t").set_index("participant_id")
    if not oracle_inputs(table) or not set(subjects) <= set(table.index):
        return None
    return table.loc[subjects]
