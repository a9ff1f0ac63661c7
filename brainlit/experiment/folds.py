"""Step: the subject-disjoint folds, outer (test) and inner (cross-fitting of the networks)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.model_selection import StratifiedKFold

from brainlit.cli import datamodule_from_args
from brainlit.experiment.context import Experiment, write_atomically


def outer_split(experiment: Experiment, config: Path, repeat: int, fold: int) -> pd.DataFrame:
    """``subject_id, split`` (``train`` or ``test``) of one outer fold; written once, then read.

    The datamodule makes the folds (seeded, stratified by the first target), so ``fit`` on the
    same config and seed sees the same test subjects. Its validation subjects are training
    subjects here: the networks are validated on their cross-fitting parts instead.
    """
    path = experiment.fold_dir(config, repeat, fold) / "splits.csv"
    if not path.exists():
        argv = ["--config", str(config), *experiment.data_args, "--data.fold", str(fold),
                "--data.n_folds", str(experiment.n_folds_of(config)),
                "--data.seed", str(experiment.seed_of(config, repeat))]
        datamodule = datamodule_from_args(argv)
        datamodule.setup()
        table = datamodule.split_table()[["subject_id", "split"]].replace({"split": {"val": "train"}})
        write_atomically(path, table.to_csv(index=False))
        dropped = datamodule.dropped.assign(config=config.stem)
        write_atomically(experiment.out_dir / config.stem / "dropped.csv", dropped.to_csv(index=False))
    return pd.read_csv(path)


def folds_of(experiment: Experiment, config: Path, repeat: int) -> dict[int, tuple[list[str], list[str]]]:
    """``{fold: (training subjects, test subjects)}`` of ``config`` in repeat ``repeat``."""
    folds = {}
    for fold in range(experiment.n_folds_of(config)):
        splits = outer_split(experiment, config, repeat, fold)
        test = splits["split"] == "test"
        folds[fold] = (splits.loc[~test, "subject_id"].tolist(), splits.loc[test, "subject_id"].tolist())
    return folds


def inner_split(experiment: Experiment, config: Path, repeat: int, fold: int, part: int,
                stratify_by: pd.Series) -> Path:
    """The split file of cross-fitting network ``part``: it trains on the fold's training
    subjects but part ``part`` of them, which it validates and predicts (``val``), and predicts
    the test fold (``test``). Parts are seeded and stratified by ``stratify_by`` (the first
    target, indexed by subject)."""
    path = experiment.fold_dir(config, repeat, fold) / f"cross_fit{part}.csv"
    if path.exists():
        return path
    splits = outer_split(experiment, config, repeat, fold)
    train = splits.loc[splits["split"] == "train", "subject_id"].tolist()
    k = experiment.stack.cross_fit
    bins = pd.qcut(stratify_by.loc[train].rank(method="first"), q=max(1, min(5, len(train) // k)), labels=False)
    parts = StratifiedKFold(k, shuffle=True, random_state=experiment.seed_of(config, repeat)).split(train, bins)
    held_out = {train[i] for i in list(parts)[part][1]}
    table = splits.assign(split=[("val" if s in held_out else "train") if split == "train" else split
                                 for s, split in zip(splits["subject_id"], splits["split"], strict=True)])
    write_atomically(path, table.to_csv(index=False))
    return path
