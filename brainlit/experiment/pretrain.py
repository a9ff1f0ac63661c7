"""Step: the encoder every network starts from, pretrained on the cohort or on a corpus, or given."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pandas as pd

from brainlit.cli import datamodule_from_args
from brainlit.data.datamodule import FMRIDataModule
from brainlit.errors import BrainlitConfigError
from brainlit.experiment.context import Experiment, clear_interrupted, write_atomically
from brainlit.experiment.folds import outer_split
from brainlit.tasks.checkpoints import encoder_card, load_encoder

log = logging.getLogger(__name__)

CORPUS_CARD = "corpus.json"  # beside lmae.ckpt: what the encoder was pretrained on


def corpus_args(experiment: Experiment) -> list[str]:
    """The ``--data.*`` options of the pretraining data: the corpus, or the cohort itself."""
    if not experiment.pretrain_root:
        return experiment.data_args
    args = ["--data.root", experiment.pretrain_root, "--data.cache_path", str(experiment.out_dir / "corpus.h5")]
    args += ["--data.atlas", experiment.atlas] if experiment.atlas else []
    return args + list(experiment.pretrain_options)


def encoder_for(experiment: Experiment, variant: str, config: Path, repeat: int, fold: int) -> Path | None:
    """The encoder a fold's networks start from under the experiment's pretraining mode
    (None: from scratch, the ``none`` variant)."""
    if experiment.encoder:
        return checked_encoder(experiment)
    if variant == "none":
        return None
    if experiment.pretrain == "cohort":
        return pretrain(experiment, variant, experiment.out_dir / "pretrain" / variant)
    folder = experiment.out_dir / "pretrain" / variant / config.stem / f"repeat{repeat}" / f"fold{fold}"
    return pretrain(experiment, variant, folder, fold_subjects(experiment, config, repeat, fold, folder))


def fold_subjects(experiment: Experiment, config: Path, repeat: int, fold: int, folder: Path) -> Path:
    """A split file of the fold's training subjects alone (every tenth validates LMAE): the
    test fold's imaging is never seen before it is tested."""
    path = folder / "splits.csv"
    if not path.exists():
        train = outer_split(experiment, config, repeat, fold).query("split == 'train'")["subject_id"].tolist()
        table = pd.DataFrame({"subject_id": train, "split": ["val" if i % 10 == 0 else "train" for i in range(len(train))]})
        write_atomically(path, table.to_csv(index=False))
    return path


def pretrain(experiment: Experiment, variant: str, folder: Path, split_file: Path | None = None) -> Path:
    """LMAE with the ``variant`` masking; returns its checkpoint (saved once, then reused)."""
    done = folder / "lmae.ckpt"
    if done.exists():
        return done
    data_args = corpus_args(experiment)
    if experiment.pretrain_root:
        check_corpus(experiment, data_args, folder)
    extra = ["--model.init_args.mask_strategy", variant]
    extra += ["--data.split_file", str(split_file)] if split_file else []
    clear_interrupted(folder / "logs")
    cli = experiment.cli(experiment.config_dir / "pretrain.yaml", folder / "logs", extra, data_args)
    log.info("Pretraining LMAE (%s masking) on %s -> %s", variant, experiment.pretrain_root or experiment.root, done)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    best = cli.trainer.checkpoint_callback.best_model_path
    cli.trainer.validate(cli.model, datamodule=cli.datamodule, ckpt_path=best or None, verbose=False)
    write_atomically(folder / "diagnostics.json", json.dumps(cli.model.diagnostics.get("val", {}), indent=2))
    write_atomically(done, copy_of=Path(best or cli.trainer.checkpoint_callback.last_model_path))
    return done


def _card(experiment: Experiment, data_args: list[str]) -> tuple[dict, FMRIDataModule]:
    """Atlas, ROI count and TR of the data ``data_args`` name, parcellated as ``pretrain.yaml`` says."""
    config = ["--config", str(experiment.config_dir / "pretrain.yaml")]
    datamodule = datamodule_from_args([*config, *data_args, "--data.targets", "[]", "--data.n_folds", "1"])
    datamodule.setup()
    card = datamodule.data_card()
    return {"atlas": card["atlas"]["sha256"] or card["atlas"]["name"], "ROIs": card["n_rois"], "TR": card["t_r"]}, datamodule


def check_corpus(experiment: Experiment, corpus: list[str], folder: Path) -> None:
    """Build the corpus cache, check it against the cohort's and record it in ``corpus.json``.

    Raises:
        BrainlitConfigError: the corpus and the cohort differ in atlas, ROI count or TR (both
            values are named).
    """
    found, datamodule = _card(experiment, corpus)
    expected, _ = _card(experiment, experiment.data_args)
    for key, value in found.items():
        other = expected[key]
        differs = abs(value / other - 1) > 0.01 if key == "TR" and value and other else value != other
        if differs:
            raise BrainlitConfigError(
                f"the pretraining corpus {experiment.pretrain_root} has {key} {value}, the cohort {experiment.root} "
                f"{other}: pretrain on a corpus parcellated with the cohort's atlas at its TR.")
    ids = datamodule.reader.subject_ids
    digest = hashlib.sha256()
    with open(datamodule.cache_path, "rb") as cache:
        for block in iter(lambda: cache.read(1 << 22), b""):
            digest.update(block)
    card = {"root": str(experiment.pretrain_root), "n_subjects": len(ids), "n_runs": len(ids),
            "cache": str(datamodule.cache_path), "cache_sha256": digest.hexdigest(),
            "layout": datamodule.layout, "labels_read": False}
    write_atomically(folder / CORPUS_CARD, json.dumps(card, indent=2))
    log.info("Pretraining corpus: %d subjects from %s (cache sha256 %s)", len(ids), experiment.pretrain_root, card["cache_sha256"][:12])


def checked_encoder(experiment: Experiment) -> Path:
    """``--encoder``, checked against the cohort: its ROI count (and atlas and TR where it records them)."""
    path = Path(experiment.encoder)
    _, weights = load_encoder(path)
    card = encoder_card(path)
    expected, _ = _card(experiment, experiment.data_args)
    found = {"ROIs": int(weights["roi_embed"].shape[0])} if "roi_embed" in weights else {}
    if card:
        found |= {"atlas": card["atlas"]["sha256"] or card["atlas"]["name"], "TR": card["t_r"]}
    for key, value in found.items():
        if value is not None and expected[key] is not None and value != expected[key] and not (
                key == "TR" and abs(value / expected[key] - 1) <= 0.01):
            raise BrainlitConfigError(f"--encoder {path} was pretrained with {key} {value}, the cohort "
                                      f"{experiment.root} has {expected[key]}: use an encoder of the cohort's atlas and TR.")
    return path


def corpus_card(experiment: Experiment) -> dict | None:
    """What the ``local`` encoder was pretrained on, for the model card (None: the cohort itself)."""
    if experiment.encoder:
        return {"encoder": str(experiment.encoder)}
    path = experiment.out_dir / "pretrain" / "local" / CORPUS_CARD
    return json.loads(path.read_text()) if path.is_file() else None
