"""``python -m brainlit``: dispatch ``cache`` and ``experiment``; everything else is LightningCLI."""

from __future__ import annotations

import logging
import sys

import torch

from brainlit.cli import BrainlitCLI, cache_command
from brainlit.experiment import experiment_main


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m brainlit`` and the ``brainlit`` script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_float32_matmul_precision("high")
    if argv and argv[0] == "cache":
        cache_command(argv[1:])
    elif argv and argv[0] == "experiment":
        experiment_main(argv[1:])
    else:
        BrainlitCLI(args=argv)


if __name__ == "__main__":
    main()
