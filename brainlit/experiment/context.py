"""The run context every step of an experiment reads: where things are, and how to write them safely."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from argparse import ArgumentError
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from jsonargparse import ArgumentParser

from brainlit.baselines.readout import ConnectivityRidge
from brainlit.cli import BrainlitCLI
from brainlit.config_check import one_line
from brainlit.errors import BrainlitConfigError, BrainlitOutputError
from brainlit.stack import NetworkShare

log = logging.getLogger(__name__)

STACK_FILE = "brainlit.yaml"  # beside the task configs: the read-out, the combination, cross_fit


def write_atomically(path: Path, text: str | None = None, copy_of: Path | None = None) -> None:
    """Write ``text`` (or a copy of the file ``copy_of``) to ``path``: whole or not at all.

    Raises:
        BrainlitOutputError: the folder is read-only or the disk full (no ``.tmp`` is left).
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if copy_of is not None:
            shutil.copyfile(copy_of, tmp)
        else:
            tmp.write_text(text)
        tmp.replace(path)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise BrainlitOutputError(
            f"cannot write {path} ({error.strerror or error}): make the folder writable and free "
            "some space, or choose another --out. Finished steps are kept and reused."
        ) from error


def clear_interrupted(logs: Path) -> None:
    """Remove what an interrupted attempt at a step left (TensorBoard events, checkpoints)."""
    if logs.exists():
        log.info("Removing %s, left by an interrupted run: the step starts again", logs)
        shutil.rmtree(logs)


def read_yaml(path: Path) -> dict:
    """A YAML file as a dict (empty for an empty file)."""
    return yaml.safe_load(path.read_text()) or {}


def targets_of(config: Path) -> list[str]:
    """The targets a fine-tuning config regresses (its ``data.targets``)."""
    targets = read_yaml(config).get("data", {}).get("targets", [])
    if not targets:
        raise BrainlitConfigError(f"{config}: a fine-tuning config must name its data.targets")
    return list(targets)


@dataclass
class StackConfig:
    """``<configs>/brainlit.yaml``: what brainlit combines and how (defaults where absent).

    Attributes:
        readout: The closed-form read-out.
        combination: How much of the network's difference from the read-out is kept.
        cross_fit: Networks per fold, each trained without one part of the fold's training
            subjects and predicting it, so the combination is fit on out-of-sample
            predictions of every training subject; the test fold gets their mean.
    """

    readout: ConnectivityRidge = field(default_factory=ConnectivityRidge)
    combination: NetworkShare = field(default_factory=NetworkShare)
    cross_fit: int = 2

    @classmethod
    def load(cls, configs: Path) -> StackConfig:
        """Read ``configs/brainlit.yaml`` (each block maps to its class's arguments)."""
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(ConnectivityRidge, "readout")
        parser.add_class_arguments(NetworkShare, "combination")
        parser.add_argument("--cross_fit", type=int, default=2)
        path = configs / STACK_FILE
        try:
            values = parser.parse_object(read_yaml(path)) if path.is_file() else parser.get_defaults()
            stack = cls(ConnectivityRidge(**values.readout.as_dict()), NetworkShare(**values.combination.as_dict()),
                        values.cross_fit)
        except (ArgumentError, ValueError, TypeError) as error:
            raise BrainlitConfigError(f"{path}: {one_line(str(error))}") from None
        if stack.cross_fit < 2:
            raise BrainlitConfigError(f"{path}: cross_fit must be at least 2, got {stack.cross_fit}.")
        return stack


@dataclass
class Experiment:
    """One cohort through pretraining, cross-validation, the classical models and the final model.

    Args:
        root: Dataset root of the labelled cohort (BIDS, fMRIPrep, a Cam-CAN tree or arrays).
        out: Output folder: caches, logs, checkpoints, predictions, tables and the model folder.
        configs: Folder of ``pretrain.yaml``, one or more ``finetune*.yaml`` and ``brainlit.yaml``.
        atlas: Atlas image (labels or maps); null uses the datamodule's default.
        quick: Overlay ``<configs>/../quick/*.yaml``: tiny models, few epochs, same code path.
        n_folds: Override the number of cross-validation folds of the configs.
        repeats: Repeated k-fold: repeat r splits with ``data.seed + r``.
        pretrain: ``cohort``: LMAE on every subject's imaging, once (label-free);
            ``per_fold``: on each fold's training subjects only.
        pretrain_root: A corpus apart from the cohort to pretrain on instead (its labels are
            never read); it must share the cohort's atlas, ROI count and TR.
        pretrain_options: ``--data.*`` options of the corpus (``--pretrain_data.*`` on the
            command line).
        encoder: An exported encoder (``.safetensors``) or LMAE checkpoint to fine-tune from:
            no pretraining.
        pretrain_ablation: Also fine-tune after random-masking pretraining and without
            pretraining, on the same folds.
        ensemble: Networks per cross-fitting split, each from its own seed; averaged.
        data_options: Datamodule options for every config, as on the command line.
        final_model: Write the final model folder, ``<out>/model``, for ``apply``.
    """

    root: str
    out: str = "runs/camcan"
    configs: str = "configs/camcan"
    atlas: str | None = None
    quick: bool = False
    n_folds: int | None = None
    repeats: int = 1
    pretrain: Literal["cohort", "per_fold"] = "cohort"
    pretrain_root: str | None = None
    pretrain_options: list[str] = field(default_factory=list)
    encoder: str | None = None
    pretrain_ablation: bool = False
    ensemble: int = 1
    data_options: list[str] = field(default_factory=list)
    final_model: bool = True

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.ensemble < 1 or self.pretrain not in ("cohort", "per_fold"):
            raise BrainlitConfigError("need --repeats >= 1, --ensemble >= 1 and --pretrain cohort or per_fold.")
        if self.encoder and (self.pretrain_root or self.pretrain_ablation or self.pretrain == "per_fold"):
            raise BrainlitConfigError("--encoder skips pretraining: drop --pretrain_root, --pretrain_ablation "
                                      "and --pretrain per_fold, or drop --encoder.")
        self.out_dir, self.config_dir = Path(self.out), Path(self.configs)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.data_args = ["--data.root", self.root, "--data.cache_path", str(self.cache_path)]
        self.data_args += ["--data.atlas", self.atlas] if self.atlas else []
        self.data_args += list(self.data_options)
        self.stack = StackConfig.load(self.config_dir)
        self.timings: dict[str, float] = {}  # seconds spent per step in this run

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Add the wall time of the block to ``step``'s total (``timings.json`` at the end)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[step] = self.timings.get(step, 0.0) + time.perf_counter() - start

    def write_timings(self) -> None:
        """``<out>/timings.json``: seconds per step in this run (steps found on disk cost ~0)."""
        write_atomically(self.out_dir / "timings.json", json.dumps({k: round(v, 1) for k, v in self.timings.items()}, indent=2))

    @property
    def cache_path(self) -> Path:
        """The labelled cohort's HDF5 cache."""
        return self.out_dir / "cache.h5"

    @property
    def finetune_configs(self) -> list[Path]:
        """Every ``finetune*.yaml`` of the config folder, sorted."""
        configs = sorted(self.config_dir.glob("finetune*.yaml"))
        if not configs:
            raise BrainlitConfigError(f"no finetune*.yaml in {self.config_dir}: set --configs to a config folder.")
        return configs

    def overlay(self, config: Path) -> list[str]:
        """``--config <configs>/../quick/<kind>.yaml`` under ``quick``; else nothing."""
        if not self.quick:
            return []
        name = "pretrain.yaml" if config.stem == "pretrain" else "finetune.yaml"
        return ["--config", str(self.config_dir.parent / "quick" / name)]

    def cli(self, config: Path, folder: Path, extra: list[str], data_args: list[str] | None = None) -> BrainlitCLI:
        """A LightningCLI for ``config`` logging to ``folder`` (TensorBoard), not yet run."""
        logger = ["--trainer.logger.init_args.save_dir", str(folder.parent),
                  "--trainer.logger.init_args.name", "", "--trainer.logger.init_args.version", folder.name]
        args = ["--config", str(config), *self.overlay(config), *(data_args or self.data_args), *logger, *extra]
        return BrainlitCLI(args=args, run=False)

    def n_folds_of(self, config: Path) -> int:
        """The number of outer folds of ``config`` (``n_folds`` overrides it)."""
        return self.n_folds or int(read_yaml(config).get("data", {}).get("n_folds", 5))

    def seed_of(self, config: Path, repeat: int) -> int:
        """The split seed of ``config`` in repeat ``repeat``."""
        return int(read_yaml(config).get("data", {}).get("seed", 0)) + repeat

    def fold_dir(self, config: Path, repeat: int, fold: int | None = None) -> Path:
        """``<out>/<config>/repeat<r>[/fold<f>]``."""
        folder = self.out_dir / config.stem / f"repeat{repeat}"
        return folder if fold is None else folder / f"fold{fold}"

    def config_suffix(self, config: Path) -> str:
        """``" (<config stem>)"`` when another fine-tuning config regresses one of the same
        targets (an ablation folder), so that each config's rows keep a name of their own."""
        others = {t for c in self.finetune_configs if c != config for t in targets_of(c)}
        return f" ({config.stem})" if others & set(targets_of(config)) else ""
