"""Step: the networks of one fold, cross-fitted, and their predictions.

Each of the ``cross_fit`` networks of a fold trains on the fold's training subjects but one
part of them for a fixed schedule (no checkpoint is chosen on anyone), then predicts the part
it left out and the test fold. Every training subject so gets one out-of-sample prediction
(what the combination is fit on) and every test subject ``cross_fit`` of them (averaged).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from brainlit.experiment.context import (
    Experiment,
    clear_interrupted,
    read_yaml,
    targets_of,
    write_atomically,
)
from brainlit.experiment.folds import inner_split

log = logging.getLogger(__name__)

NETWORK_FILE = "network.ckpt"  # each network's final weights, for the final model folder


def network_predictions(experiment: Experiment, config: Path, repeat: int, fold: int, variant: str,
                        encoder: Path | None, stratify_by: pd.Series) -> pd.DataFrame:
    """``target, subject_id, y_true, y_pred, split`` of one fold: ``val`` rows are the
    out-of-sample predictions of the training subjects, ``test`` rows the test fold's (means
    over the networks and members that made them).

    Args:
        encoder: The encoder every network starts from (None: from scratch).
        stratify_by: The first target, indexed by subject: the cross-fitting parts are stratified by it.
    """
    frames = []
    for part in range(experiment.stack.cross_fit):
        split_file = inner_split(experiment, config, repeat, fold, part, stratify_by)
        for member in range(experiment.ensemble):
            folder = network_dir(experiment, config, repeat, fold, variant, part, member)
            seed = (repeat * experiment.stack.cross_fit + part) * experiment.ensemble + member
            frames.append(train_network(experiment, config, folder, encoder, split_file, seed))
    keys = ["target", "subject_id", "split"]
    return pd.concat(frames).groupby(keys, sort=False, as_index=False)[["y_true", "y_pred"]].mean()


def network_dir(experiment: Experiment, config: Path, repeat: int, fold: int, variant: str, part: int,
                member: int) -> Path:
    """``<out>/<config>/repeat<r>/fold<f>/<variant>/cross_fit<k>/member<m>``."""
    return experiment.fold_dir(config, repeat, fold) / variant / f"cross_fit{part}" / f"member{member}"


def train_network(experiment: Experiment, config: Path, folder: Path, encoder: Path | None, split_file: Path,
                  seed: int) -> pd.DataFrame:
    """Train one network into ``folder`` and predict what it left out; saved and reused on a re-run.

    Args:
        seed: Added to the config's ``seed_everything``: each network of a fold trains from its own.
    """
    path = folder / "predictions.csv"
    if path.exists():
        return pd.read_csv(path)
    seed += int(read_yaml(config).get("seed_everything", 0) or 0)
    extra = ["--data.split_file", str(split_file), "--data.predict_split", "heldout", "--seed_everything", str(seed)]
    # from scratch the encoder must learn: a frozen random encoder would be no baseline
    extra += ["--model.init_args.pretrained", str(encoder)] if encoder else ["--model.init_args.encoder_lr_scale", "1.0"]
    clear_interrupted(folder / "logs")
    cli = experiment.cli(config, folder / "logs", extra)
    log.info("Network %s (%s)", folder.relative_to(experiment.out_dir), f"from {encoder}" if encoder else "from scratch")
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    cli.trainer.save_checkpoint(folder / "network.tmp", weights_only=True)
    batches = cli.trainer.predict(cli.model, datamodule=cli.datamodule)
    splits = pd.read_csv(split_file).set_index("subject_id")["split"]
    frame = prediction_frame(batches, targets_of(config))
    frame = frame.assign(split=frame["subject_id"].map(splits))
    (folder / "network.tmp").replace(folder / NETWORK_FILE)
    write_atomically(path, frame.to_csv(index=False))
    return frame


def prediction_frame(batches: list[dict], target_names: list[str]) -> pd.DataFrame:
    """Long table (target, subject_id, y_true, y_pred) of ``RegressionTask.predict_step`` outputs."""
    rows = []
    for batch in batches:
        for i, subject_id in enumerate(batch["subject_id"]):
            for j, target in enumerate(target_names):
                rows.append([target, subject_id, float(batch["true"][i, j]), float(batch["pred"][i, j])])
    return pd.DataFrame(rows, columns=["target", "subject_id", "y_true", "y_pred"])


def network_checkpoints(experiment: Experiment, config: Path, repeat: int = 0, variant: str = "local") -> list[Path]:
    """Every network of ``config``'s folds in ``repeat``: together they saw every labelled subject."""
    return [network_dir(experiment, config, repeat, fold, variant, part, member) / NETWORK_FILE
            for fold in range(experiment.n_folds_of(config)) for part in range(experiment.stack.cross_fit)
            for member in range(experiment.ensemble)]

