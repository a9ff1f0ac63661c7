"""An experiment's configs checked before any work starts, and the ``--data.*`` options it takes.

``experiment`` runs for minutes to hours; a config a class rejects must fail in the first
second, as one ``error:`` line naming the file and the option, not after the pretraining.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from brainlit.cli import BrainlitCLI
from brainlit.data.datamodule import FMRIDataModule
from brainlit.errors import BrainlitConfigError

# set by the experiment for each step: a user's value would be overwritten or break the folds
EXPERIMENT_SETS = {"root": "--root", "cache_path": "--out", "fold": "--n_folds", "n_folds": "--n_folds",
                   "split_file": "--pretrain per_fold", "predict_split": "nothing (the test fold)"}
PLACEHOLDER_ROIS = 64  # the cache, which knows the real count, is not built yet


def data_options(argv: list[str], prefix: str = "--data.") -> tuple[list[str], list[str]]:
    """Split ``argv`` into the experiment's own arguments and its ``<prefix>*`` options, the
    latter returned as ``--data.*`` (``--pretrain_data.layout arrays`` -> ``--data.layout arrays``).

    Raises:
        BrainlitConfigError: an option the experiment sets itself, named with what to use.
    """
    own, data, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith(prefix):
            own.append(arg)
            i += 1
            continue
        name, _, value = arg.partition("=")
        if not value and i + 1 < len(argv):
            value, i = argv[i + 1], i + 1
        key = name.removeprefix(prefix)
        if key in EXPERIMENT_SETS:
            raise BrainlitConfigError(f"{name}: the experiment sets it for every step; use {EXPERIMENT_SETS[key]}.")
        data += [f"--data.{key}", value]
        i += 1
    return own, data


class _ParseOnly(BrainlitCLI):
    """Parses a config as the experiment will and builds its data and model classes without
    reading data: a placeholder ROI count, no encoder checkpoint, no cache."""

    def instantiate_classes(self) -> None:
        data = self.config.data.as_dict()
        try:
            FMRIDataModule(**data)
        except (ValueError, TypeError) as error:
            raise _ClassError("data", error) from error
        module, _, name = self.config.model.class_path.rpartition(".")
        init = self.config.model.init_args.as_dict()
        init["n_rois"] = init.get("n_rois") or PLACEHOLDER_ROIS
        if "pretrained" in init:
            init["pretrained"] = None  # the experiment's own encoder, written later
        if "t_r" in init:
            init["t_r"] = init["t_r"] or data.get("t_r") or 2.0
        try:
            getattr(importlib.import_module(module), name)(**init)
        except (ValueError, TypeError) as error:
            raise _ClassError(f"model ({name})", error) from error


class _ClassError(Exception):
    def __init__(self, where: str, error: Exception) -> None:
        super().__init__(f"{where}: {error}")


def check_config(config: Path, args: list[str]) -> None:
    """Parse ``config`` with ``args`` (overlays, data options) and build its classes.

    Raises:
        BrainlitConfigError: one line: the file, then the option and what is wrong with it.
    """
    try:
        _ParseOnly(args=["--config", str(config), *args], run=False, parser_kwargs={"exit_on_error": False})
    except argparse.ArgumentError as error:
        raise BrainlitConfigError(f"{config}: {one_line(str(error))}") from None
    except _ClassError as error:
        raise BrainlitConfigError(f"{config}: {error}") from None


def one_line(message: str) -> str:
    """jsonargparse's several-line message as ``Parser key "x": <the line that says why>``."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    why = [line for line in lines[1:] if "not accepted" in line or "Got value" in line or "Expected" in line]
    return " ".join(lines[:1] + (why[:1] or lines[1:2]))
