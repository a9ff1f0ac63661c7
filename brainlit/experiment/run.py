"""``python -m brainlit experiment``: the steps in order, each resumable, then the tables.

cache -> folds -> encoder (LMAE on the cohort, on a corpus, or given) -> per repeat: the
closed-form models (brainlit's read-out, the classical baselines, oracles) -> per fold: the
cross-fitted networks -> their combination with the read-out (brainlit) -> every model scored
the same way -> ``predictions.csv``, ``results.csv``, ``results.md`` -> the final model folder.
Each finished step is saved atomically and found on disk by a re-run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from brainlit.config_check import check_config
from brainlit.data.cache import CacheReader
from brainlit.ensembles import add_ensembles
from brainlit.experiment.classical import classical_predictions
from brainlit.experiment.combine import VARIANTS, combine_fold, readout_rows
from brainlit.experiment.context import Experiment, targets_of
from brainlit.experiment.final import write_final_models
from brainlit.experiment.folds import folds_of
from brainlit.experiment.network import network_predictions
from brainlit.experiment.pretrain import encoder_for
from brainlit.experiment.report import write_results
from brainlit.metrics import score_predictions

log = logging.getLogger(__name__)


def run(experiment: Experiment, variants: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Every step, skipping what is already on disk; writes and returns the fold scores."""
    start = time.perf_counter()
    variants = variants or (tuple(VARIANTS) if experiment.pretrain_ablation else ("local",))
    check_configs(experiment, variants)
    frames = [repeat_predictions(experiment, config, repeat, variants)
              for repeat in range(experiment.repeats) for config in experiment.finetune_configs]
    keys = ["model", "target", "repeat", "fold", "subject_id"]  # configs on the same folds share baselines
    predictions = add_ensembles(with_age(experiment, pd.concat(frames, ignore_index=True).drop_duplicates(keys)))
    results = score_predictions(predictions)
    with experiment.timed("report"):
        write_results(experiment, results, predictions, variants)
    if experiment.final_model:
        with experiment.timed("final model"):
            folders = write_final_models(experiment, results, predictions)
        for folder in folders:
            print(f"Model folder: {folder}  (python -m brainlit apply --model {folder} --root NEW --out FILE.csv)")
    experiment.write_timings()
    steps = ", ".join(f"{step} {seconds:.0f} s" for step, seconds in experiment.timings.items())
    log.info("Experiment finished in %.1f min (%s)", (time.perf_counter() - start) / 60, steps)
    return results


def repeat_predictions(experiment: Experiment, config: Path, repeat: int, variants: tuple[str, ...]) -> pd.DataFrame:
    """Every model's test predictions on the folds of ``config`` in ``repeat``."""
    with experiment.timed("cache and folds"):
        folds = folds_of(experiment, config, repeat)
    with experiment.timed("classical models"):
        classical, readout_oof = classical_predictions(experiment, config, repeat)
    stratify_by = CacheReader(experiment.cache_path).phenotypes[targets_of(config)[0]]
    frames = [classical]
    for fold in folds:
        for variant in variants:
            with experiment.timed("pretraining"):
                encoder = encoder_for(experiment, variant, config, repeat, fold)
            with experiment.timed("networks"):
                network = network_predictions(experiment, config, repeat, fold, variant, encoder, stratify_by)
            folder = experiment.fold_dir(config, repeat, fold) / variant
            frames.append(combine_fold(experiment, config, fold, variant, readout_rows(classical, fold),
                                       readout_oof[readout_oof["fold"] == fold], network, folder))
    return pd.concat(frames, ignore_index=True).assign(repeat=repeat)


def with_age(experiment: Experiment, predictions: pd.DataFrame) -> pd.DataFrame:
    """Add each subject's true age (for the age-partialled r), NaN where unknown."""
    phenotypes = CacheReader(experiment.cache_path).phenotypes
    age = phenotypes["age"] if "age" in phenotypes else pd.Series(dtype=float)
    columns = ["model", "target", "repeat", "fold", "subject_id", "y_true", "y_pred"]
    return predictions[columns].assign(age=predictions["subject_id"].map(age).astype(float))


def check_configs(experiment: Experiment, variants: tuple[str, ...]) -> None:
    """Parse every config with the overlays and data options and build its classes before any
    work: a rejected option is one error naming the file (:mod:`brainlit.config_check`)."""
    pretrain = [experiment.config_dir / "pretrain.yaml"] if set(variants) - {"none"} and not experiment.encoder else []
    for config in pretrain + experiment.finetune_configs:
        check_config(config, [*experiment.overlay(config), *experiment.data_args])
