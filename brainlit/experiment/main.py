"""The ``experiment`` command line: its own options, ``--data.*`` and ``--pretrain_data.*``."""

from __future__ import annotations

from jsonargparse import ArgumentParser

from brainlit.config_check import data_options
from brainlit.experiment.context import Experiment
from brainlit.experiment.run import run

DESCRIPTION = """Cache, pretrain, cross-validate (brainlit, its read-out, its network, the classical
models and, on simulated cohorts, the oracles on identical folds), report, and write the final
model folder. Any --data.* option (`python -m brainlit cache --help`) applies to the labelled
cohort, any --pretrain_data.* option to the --pretrain_root corpus."""


def experiment_main(argv: list[str]) -> None:
    """Parse ``python -m brainlit experiment`` arguments and run it."""
    parser = ArgumentParser(prog="python -m brainlit experiment", description=DESCRIPTION)
    parser.add_class_arguments(Experiment, skip={"data_options", "pretrain_options"})
    argv, data = data_options(argv)
    argv, corpus = data_options(argv, "--pretrain_data.")
    run(Experiment(**parser.parse_args(argv).as_dict(), data_options=data, pretrain_options=corpus))
