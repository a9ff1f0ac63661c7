"""Step: the final model of each fine-tuning config, as a model folder for ``apply``.

Nothing is trained again. The read-out (and its site harmonisation) is refit in closed form on
every labelled subject; the networks are the cross-fitted networks of the first repeat's folds
(together they saw every labelled subject); the combination, the brain-age bias correction and
the conformal calibration of the intervals are fit on the experiment's out-of-fold predictions
of every labelled subject, averaged over repeats; the out-of-distribution reference is the
read-out's features and FC edges of every labelled subject.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from brainlit.baselines.fc_ridge import fc_features
from brainlit.baselines.readout import ConnectivityRidge
from brainlit.baselines.run import READOUT
from brainlit.data.cache import CacheReader
from brainlit.data.sources import SITE
from brainlit.errors import BrainlitDataError
from brainlit.experiment.context import Experiment, targets_of
from brainlit.experiment.folds import outer_split
from brainlit.experiment.network import network_checkpoints
from brainlit.experiment.pretrain import corpus_card
from brainlit.model_folder import ModelParts, bias_correction, networks_of, write_model_folder
from brainlit.sites.conformal import ConformalIntervals
from brainlit.sites.ood import OutOfDistribution, crop_lengths
from brainlit.stack import NETWORK

log = logging.getLogger(__name__)


def write_final_models(experiment: Experiment, results: pd.DataFrame, predictions: pd.DataFrame) -> list[Path]:
    """One model folder per fine-tuning config: ``<out>/model`` (or ``<out>/model/<config>``)."""
    configs = experiment.finetune_configs
    return [write_model_folder(experiment.out_dir / "model" / (config.stem if len(configs) > 1 else ""),
                               final_parts(experiment, config, results, predictions)) for config in configs]


def final_parts(experiment: Experiment, config: Path, results: pd.DataFrame, predictions: pd.DataFrame) -> ModelParts:
    """The read-out refit on every labelled subject, the folds' networks and the combination
    fit on the out-of-fold predictions."""
    targets, suffix = targets_of(config), experiment.config_suffix(config)
    subjects = outer_split(experiment, config, 0, 0)["subject_id"].tolist()
    reader = CacheReader(experiment.cache_path)
    phenotypes = reader.phenotypes.loc[subjects]
    y, sites = phenotypes[targets], phenotypes[SITE].fillna("unknown").tolist() if SITE in phenotypes else None
    runs = [reader.timeseries(s) for s in subjects]
    ages = phenotypes["age"] if "age" in phenotypes and phenotypes["age"].notna().all() else None
    readout = copy.deepcopy(experiment.stack.readout).fit(runs, y, sites, ages)
    networks, data = networks_of(network_checkpoints(experiment, config))
    ood = ood_reference(readout, runs, sites, int(data["window"]))
    oof = out_of_fold(predictions, targets, {READOUT: "readout", NETWORK + suffix: "network", "brainlit" + suffix: "brainlit"})
    combination = copy.deepcopy(experiment.stack.combination).fit(
        oof["readout"].to_numpy(), oof["network"].to_numpy(), oof["truth"].to_numpy(), targets)
    log.info("Final model of %s: %s", config.stem, combination.describe())
    ages = y["age"] if "age" in y else reader.phenotypes.loc[subjects].get("age", pd.Series(dtype=float)).dropna()
    data = {**data, "training_cohort": {"n_subjects": len(subjects), "age_min": float(ages.min()) if len(ages) else None,
                                        "age_max": float(ages.max()) if len(ages) else None}}
    correction = None
    if "age" in targets:
        fit_on = (f"the training cohort's out-of-fold brainlit predictions ({config.stem}, {experiment.repeats} "
                  "repeat(s) of cross-validation), averaged per subject")
        correction = bias_correction(oof["truth"]["age"], oof["brainlit"]["age"], fit_on)
    card = {"bias_correction": correction, "cv_results": cv_summary(results, targets),
            "pretraining": corpus_card(experiment)}
    intervals = interval_calibration(oof["truth"], oof["brainlit"])
    return ModelParts(networks, data, readout, combination, intervals, ood, card)


def ood_reference(readout: ConnectivityRidge, runs: list[np.ndarray], sites: list[str] | None,
                  window: int) -> OutOfDistribution | None:
    """The out-of-distribution reference of the training cohort's read-out features and FC edges
    of their ``[R, T]`` runs, also calibrated for runs cut to fewer volumes, down to the model's
    ``window`` (None, with a warning, for a cohort too small to calibrate it)."""
    volumes = min(run.shape[1] for run in runs)
    cropped = {length: (readout.design([run[:, :length] for run in runs], sites),
                        fc_features([run[:, :length] for run in runs])) for length in crop_lengths(window, volumes)}
    try:
        return OutOfDistribution(min_volumes=window).fit(readout.design(runs, sites), fc_features(runs), volumes, cropped)
    except BrainlitDataError as error:
        log.warning("No out-of-distribution reference: %s", error)
        return None


def interval_calibration(truth: pd.DataFrame, predicted: pd.DataFrame, n_bins: int = 1,
                         per_bin: int = 30) -> dict[str, ConformalIntervals]:
    """Each target's conformal intervals, calibrated on brainlit's out-of-fold predictions: up to
    ``n_bins`` bins of at least ``per_bin`` subjects (none below ``per_bin`` subjects, with a warning).
    Predictions that barely rise with the target leave the de-biased centre unbounded: those
    intervals are centred on the prediction instead, with a warning."""
    intervals = {}
    for target in truth.columns:
        bins = min(n_bins, len(truth) // per_bin)
        if bins == 0:
            log.warning("No intervals for %s: %d out-of-fold predictions, fewer than %d.", target, len(truth), per_bin)
            continue
        try:
            intervals[target] = ConformalIntervals(n_bins=bins, min_per_bin=per_bin).fit(truth[target], predicted[target])
        except BrainlitDataError as error:
            log.warning("Intervals of %s centred on the prediction: %s", target, error)
            intervals[target] = ConformalIntervals(n_bins=bins, min_per_bin=per_bin, centre="prediction").fit(
                truth[target], predicted[target])
    return intervals


def out_of_fold(predictions: pd.DataFrame, targets: list[str], models: dict[str, str]) -> dict[str, pd.DataFrame]:
    """``{name: subject x target table}`` of each model's test predictions averaged over
    repeats, on the subjects every model predicted, plus ``truth``."""
    rows = predictions[predictions["model"].isin(models) & predictions["target"].isin(targets)]
    means = rows.groupby(["model", "subject_id", "target"])[["y_true", "y_pred"]].mean().reset_index()
    tables = {name: means[means["model"] == model].pivot(index="subject_id", columns="target", values="y_pred")[targets]
              for model, name in models.items()}
    subjects = sorted(set.intersection(*(set(t.dropna().index) for t in tables.values())))
    truth = means.pivot_table(index="subject_id", columns="target", values="y_true")[targets]
    return {name: table.loc[subjects] for name, table in tables.items()} | {"truth": truth.loc[subjects]}


def cv_summary(results: pd.DataFrame, targets: list[str]) -> list[dict]:
    """Mean fold scores per model and target, as stored in the model card."""
    scores = [c for c in ("mae", "pearson_r", "pearson_r_age_partial") if c in results]
    table = results[results["target"].isin(targets)].groupby(["model", "target"], sort=False)[scores].mean().reset_index()
    return table.astype(object).where(table.notna(), None).to_dict("records")
