"""The command line: LightningCLI for fit/validate/test/predict and the data-only ``cache`` command."""

from __future__ import annotations

import argparse
import logging
import warnings
from typing import Any

import torch
from jsonargparse import ActionConfigFile, ArgumentParser
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from brainlit.data.datamodule import FMRIDataModule
from brainlit.logs import quiet_lightning_tips
from brainlit.progress import EpochLines, wants_plain_lines
from brainlit.tasks import BrainTask

log = logging.getLogger(__name__)

TRAINER_DEFAULTS = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "runs", "name": "brainlit"},
    },
}


class BrainlitCLI(LightningCLI):
    """LightningCLI over :class:`FMRIDataModule` and any :class:`BrainTask`.

    Sizes the data knows (``n_rois``, the TR, ``crop_len``, target names) are linked into the
    model, so a config never states them twice. Logs are for people: TensorBoard gets no
    placeholder ``hp_metric`` of -1 (the task logs its best validation MAE instead), a log
    file gets one line per epoch instead of a progress bar, and Lightning's tips for its
    cloud services are left out.
    """

    def __init__(self, args: list[str] | None = None, run: bool = True,
                 parser_kwargs: dict[str, Any] | None = None) -> None:
        # the entry point hands over its own argument list; Lightning's warning is for scripts
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        # Lightning's own use of a torch API deprecated in newer torch: nothing a user can act on
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        quiet_lightning_tips()
        super().__init__(
            BrainTask,
            FMRIDataModule,
            subclass_mode_model=True,
            trainer_defaults=TRAINER_DEFAULTS,
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
            parser_kwargs=parser_kwargs or {},
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link data-derived sizes into the model."""
        parser.link_arguments("data.n_rois", "model.init_args.n_rois", apply_on="instantiate")
        parser.link_arguments("data.repetition_time", "model.init_args.t_r", apply_on="instantiate")
        parser.link_arguments("data.crop_len", "model.init_args.crop_len", apply_on="parse")
        parser.link_arguments("data.targets", "model.init_args.target_names", apply_on="parse")

    def before_instantiate_classes(self) -> None:
        """No placeholder ``hp_metric``; fp16 instead of bf16 on GPUs without bf16 support."""
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        loggers = config.trainer.get("logger")
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            if str(getattr(logger, "class_path", "")).endswith("TensorBoardLogger"):
                # Lightning writes hp_metric = -1 at the start of every run: the first card a user sees
                logger.init_args.default_hp_metric = False
        precision = str(config.trainer.get("precision"))
        if precision.startswith("bf16") and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            log.warning("This GPU has no bf16: using 16-mixed instead of %s.", precision)
            config.trainer.precision = "16-mixed"

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        """The trainer, with :class:`EpochLines` instead of a progress bar in a log file."""
        listed = config.get("callbacks") or []
        listed = listed if isinstance(listed, list) else [listed]
        has_bar = any(isinstance(c, ProgressBar) for c in [*listed, *callbacks])
        if wants_plain_lines() and config.get("enable_progress_bar", True) is not False and not has_bar:
            callbacks = [*callbacks, EpochLines()]
        return super()._instantiate_trainer(config, callbacks)


def data_parser(prog: str, description: str | None = None) -> ArgumentParser:
    """A parser of the datamodule's arguments (``--data.*``) that also reads fit configs.

    A config's model, trainer and other sections are accepted and ignored, so the same YAML
    drives ``fit`` and the data-only commands.
    """
    parser = ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_class_arguments(FMRIDataModule, "data")
    for ignored in ("model", "trainer", "seed_everything", "ckpt_path", "optimizer", "lr_scheduler"):
        parser.add_argument(f"--{ignored}", type=Any | None, default=None, help=argparse.SUPPRESS)
    return parser


def datamodule_from_args(argv: list[str], prog: str = "brainlit") -> FMRIDataModule:
    """The :class:`FMRIDataModule` a fit config and ``--data.*`` overrides describe."""
    parser = data_parser(prog)
    return parser.instantiate_classes(parser.parse_args(argv)).data


def cache_command(argv: list[str]) -> None:
    """``python -m brainlit cache``: build or update the HDF5 cache and print a summary.

    Takes the datamodule's arguments (``--data.root``, ``--data.atlas`` ...) or a fit config
    (``--config``), whose model and trainer sections are ignored.
    """
    parser = data_parser("python -m brainlit cache", cache_command.__doc__)
    datamodule = parser.instantiate_classes(parser.parse_args(argv)).data
    report = datamodule.prepare_data()
    print(report.summary())
