"""Step: brainlit's predictions of one fold, the read-out and the networks combined
(:class:`~brainlit.stack.NetworkShare`), the combination fit on the fold's training subjects'
out-of-sample predictions alone."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd

from brainlit.baselines.run import READOUT
from brainlit.experiment.context import Experiment, targets_of, write_atomically
from brainlit.stack import NETWORK, NO_PRETRAINING

# pretraining variant -> what its models' names end with in the results; "none" fine-tunes from scratch
VARIANTS = {"local": "", "random": " (random masking)", "none": NO_PRETRAINING}


def wide(frame: pd.DataFrame, targets: list[str]) -> pd.DataFrame:
    """``subject_id x target`` table of ``y_pred`` from a long prediction table."""
    return frame.pivot_table(index="subject_id", columns="target", values="y_pred")[targets]


def combine_fold(experiment: Experiment, config: Path, fold: int, variant: str, readout_test: pd.DataFrame,
                 readout_oof: pd.DataFrame, network: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """The fold's brainlit and network-alone test predictions of one pretraining variant.

    Args:
        readout_test: The read-out's test predictions of the fold (long table).
        readout_oof: Its leave-one-out predictions of the fold's training subjects.
        network: :func:`~brainlit.experiment.network.network_predictions` of the fold.
        folder: Where ``combination.json`` (the weights and their evidence) is written.
    """
    targets = targets_of(config)
    oof = network[network["split"] == "val"]
    train = sorted(set(oof["subject_id"]) & set(readout_oof["subject_id"]))
    truth = oof.pivot_table(index="subject_id", columns="target", values="y_true")[targets]
    share = copy.deepcopy(experiment.stack.combination).fit(
        wide(readout_oof, targets).loc[train].to_numpy(), wide(oof, targets).loc[train].to_numpy(),
        truth.loc[train].to_numpy(), targets)
    write_atomically(folder / "combination.json", json.dumps(share.to_state(), indent=2))
    test = network[network["split"] == "test"]
    readout, net = wide(readout_test, targets), wide(test, targets)
    subjects = sorted(set(readout.index) & set(net.index))
    combined = pd.DataFrame(share.predict(readout.loc[subjects].to_numpy(), net.loc[subjects].to_numpy()),
                            index=subjects, columns=targets)
    suffix = VARIANTS[variant] + experiment.config_suffix(config)
    return pd.concat([_long(combined, test, "brainlit" + suffix, fold),
                      _long(net.loc[subjects], test, NETWORK + suffix, fold)], ignore_index=True)


def _long(table: pd.DataFrame, truth: pd.DataFrame, model: str, fold: int) -> pd.DataFrame:
    frame = table.rename_axis("subject_id").reset_index().melt("subject_id", var_name="target", value_name="y_pred")
    frame = frame.merge(truth[["subject_id", "target", "y_true"]], on=["subject_id", "target"])
    return frame.assign(model=model, fold=fold)


def readout_rows(classical: pd.DataFrame, fold: int) -> pd.DataFrame:
    """The read-out's test predictions of one fold, from the classical step's table."""
    return classical[(classical["model"] == READOUT) & (classical["fold"] == fold)]


def mean_weights(folders: list[Path]) -> dict[str, float]:
    """Each target's network share averaged over the folds' ``combination.json`` files."""
    states = [json.loads((f / "combination.json").read_text()) for f in folders if (f / "combination.json").exists()]
    if not states:
        return {}
    return {t: float(np.mean([s["weights"][i] for s in states])) for i, t in enumerate(states[0]["targets"])}
